"""The annotation pages: label pooled passages, review synthetic queries, adjudicate and export, label answers.

Built for speed with the keyboard: one passage at a time, keys 0–3 grade it and
move on, ← and → step back and forth; Y / N label an answer. Every label is
written to the feedback store the moment it is given (several annotators may
work at once). Passages are shown as plain text, in the pool's fixed random
order, with no system names or ranks.
"""
from __future__ import annotations

import streamlit as st

from honed.app import annotate as an
from honed.retriever.display import markdown_literal

from .common import feedback_store

GRADE_KEYS = {g: str(g) for g in an.GRADES}


def annotator() -> str:
    """Who is labelling: the sidebar field, prefilled from ``?annotator=NAME`` in the URL."""
    if "annotator" not in st.session_state:
        st.session_state["annotator"] = st.query_params.get("annotator", "")
    return st.sidebar.text_input("Annotator (your name)", key="annotator").strip()


def _open(cfg: dict, title: str, caption: str):
    """The page's header; returns (annotation config, store, annotator name or "")."""
    st.title(title)
    st.caption(caption)
    return cfg["annotate"], feedback_store(cfg["feedback"]), annotator()


def _named(who: str, what: str) -> bool:
    if not who:
        st.info(f"Enter your name in the sidebar to start {what}.")
    return bool(who)


def _ensure_pools(store, a: dict) -> None:
    with st.spinner("Pooling the systems' top passages for new queries…"):
        an.ensure_pools(store, a["set"], a["data"], a["systems"], a["depth"], a.get("index_dir", "indexes"))


def render_label(cfg: dict) -> None:
    a = cfg["annotate"]
    a, store, who = _open(cfg, "Label relevance", f"eval set `{a['set']}` · pool: top-{a['depth']} of "
                          f"{', '.join(a['systems'])} (hidden) · labels stored in `{cfg['feedback']}`")
    if not _named(who, "labelling"):
        return
    _ensure_pools(store, a)
    prog = an.progress(store, a["set"], who)
    queries = {q["query_id"]: q for q in an.set_queries(store, a["set"]) if q["query_id"] in prog}
    if not queries:
        st.info("No queries to label yet: add some with `honed annotate --queries FILE` (or accept synthetic ones).")
        return
    order = list(queries)
    if st.session_state.get("ann_qid") not in queries:
        st.session_state["ann_qid"] = next((q for q in order if prog[q][0] < prog[q][1]), order[0])
    # the option labels must not change as labels come in: Streamlit would see a new widget and reset it
    qid = st.selectbox("Query", order, key="ann_qid", format_func=lambda q: f"{q} · {queries[q]['text'][:90]}")
    finished = sum(1 for q in order if prog[q][0] >= prog[q][1])
    st.caption(f"this query: {prog[qid][0]} of {prog[qid][1]} passages labelled by you · "
               f"{finished} of {len(order)} queries done")
    pool = an.get_pool(store, a["set"], qid)
    mine = {d: r for (q, d, w), r in an.latest_labels(store, a["set"]).items() if q == qid and w == who}
    pos_key = f"ann_pos-{qid}"
    if pos_key not in st.session_state:
        st.session_state[pos_key] = next((i for i, p in enumerate(pool) if p.doc_id not in mine), 0)
    i = min(st.session_state[pos_key], len(pool) - 1)
    with st.container(border=True):
        st.text(queries[qid]["text"])
    p = pool[i]
    st.subheader(f"Passage {i + 1} of {len(pool)}")
    with st.container(border=True):
        st.text(p.text)   # plain text: corpus markup is never interpreted
    given = mine.get(p.doc_id)
    st.caption(f"your label: {given['grade']} · {an.GRADES[given['grade']]}" if given else "not labelled yet")
    note_key = f"ann_note-{qid}-{p.doc_id}"
    st.text_input("Note (optional)", key=note_key, value=(given or {}).get("note") or "")
    cols = st.columns(len(an.GRADES))
    for col, (g, name) in zip(cols, an.GRADES.items()):
        col.button(f"{g} · {name}", key=f"ann_g{g}", shortcut=GRADE_KEYS[g], use_container_width=True,
                   type="primary" if given and given["grade"] == g else "secondary",
                   on_click=_grade, args=(store, a["set"], qid, p.doc_id, who, g, note_key, pos_key, i, len(pool)))
    nav = st.columns(3)
    nav[0].button("← Previous", key="ann_prev", shortcut="Left", disabled=i == 0,
                  on_click=_step, args=(pos_key, -1, len(pool)))
    nav[1].button("Next →", key="ann_next", shortcut="Right", disabled=i == len(pool) - 1,
                  on_click=_step, args=(pos_key, 1, len(pool)))
    done = sum(1 for x in pool if x.doc_id in mine)
    if done == len(pool):
        left = [q for q in order if prog[q][0] < prog[q][1] and q != qid]
        st.success(f"All {len(pool)} passages of this query are labelled."
                   + (f" {len(left)} queries left." if left else " Every query is done."))
        if left:
            nav[2].button("Next query ⏎", key="ann_nextq", shortcut="Enter", type="primary",
                          on_click=_goto_query, args=(left[0],))
    st.caption("Keys: 0 / 1 / 2 / 3 grade and move on · ← → step · Enter: next query when done")


def _grade(store, set_name, qid, doc_id, who, grade, note_key, pos_key, i, n) -> None:
    an.record_label(store, set_name, qid, doc_id, who, grade, note=st.session_state.get(note_key, ""))
    # the passage after the one graded, not "one further": a key pressed twice quickly must not skip one
    st.session_state[pos_key] = min(i + 1, n - 1)


def _step(pos_key: str, delta: int, n: int) -> None:
    st.session_state[pos_key] = max(0, min(n - 1, st.session_state.get(pos_key, 0) + delta))


def _goto_query(qid: str) -> None:
    st.session_state["ann_qid"] = qid


def render_review(cfg: dict) -> None:
    a, store, who = _open(cfg, "Review synthetic queries",
                          "Accept (A), edit then accept, or reject (X) each generated query before it becomes a "
                          "training pair or an eval query. `honed annotate export-pairs` writes the accepted ones, "
                          "leak-guarded.")
    if not _named(who, "reviewing"):
        return
    reviews = {q for (q, _, _) in an.latest_labels(store, a["set"], an.REVIEW)}
    pending = [q for q in an.set_queries(store, a["set"]) if q["source"] == "synthetic" and q["query_id"] not in reviews]
    st.metric("awaiting review", len(pending))
    if not pending:
        st.success("Nothing awaits review.")
        return
    q = pending[0]
    edit_key = f"rev_text-{q['query_id']}"
    st.text_input("Generated query (edit before accepting if needed)", value=q["text"], key=edit_key)
    with st.container(border=True):
        st.caption(f"written for passage {markdown_literal(q['positive_id'])}")
        st.text(q["positive_text"] or "")
    c1, c2 = st.columns(2)
    c1.button("Accept", key="rev_accept", shortcut="A", type="primary", on_click=_review,
              args=(store, a["set"], q, who, True, edit_key))
    c2.button("Reject", key="rev_reject", shortcut="X", on_click=_review, args=(store, a["set"], q, who, False, edit_key))


def _review(store, set_name, q, who, accept, edit_key) -> None:
    text = st.session_state.get(edit_key, q["text"]).strip()
    an.review_synthetic(store, set_name, q["query_id"], who, accept, edited_text=text if text != q["text"] else None)


def render_adjudicate(cfg: dict) -> None:
    a, store, who = _open(cfg, "Agreement, adjudication, export",
                          "Agreement between annotators, the items they disagree on, and the export of the set.")
    ag = an.agreement(store, a["set"])
    c = st.columns(4)
    c[0].metric("annotators", len(ag["annotators"]))
    c[1].metric("judged passages", ag["items"])
    c[2].metric("labelled by ≥ 2", ag["items_multiply_labelled"])
    c[3].metric("Fleiss' kappa", "—" if ag["fleiss_kappa"] is None else f"{ag['fleiss_kappa']:.3f}")
    if ag["pairs"]:
        st.dataframe([{"annotators": " / ".join(p["annotators"]), "items": p["items"],
                       "raw agreement": p["agreement"], "Cohen's kappa (0–3)": p["kappa"],
                       "kappa (grade ≥ 2)": p["kappa_binary"]} for p in ag["pairs"]], hide_index=True)
    st.subheader("Disagreements")
    dis = an.disagreements(store, a["set"])
    open_items = [d for d in dis if d["adjudicated"] is None]
    st.caption(f"{len(dis)} items with different grades, {len(open_items)} not yet adjudicated. "
               "The final grade: an adjudication, else unanimity, else the majority, else the lower grade.")
    for d in dis:
        with st.container(border=True):
            st.text(f"Query: {d['query']}")
            st.text(d["text"])
            st.caption(" · ".join(f"{markdown_literal(w)}: {g}" for w, g in sorted(d["grades"].items()))
                       + (f" · adjudicated {d['adjudicated']} by {markdown_literal(d['adjudicator'])}" if d["adjudicated"] is not None
                          else ""))
            key = f"adj-{d['query_id']}-{d['doc_id']}"
            cols = st.columns([3, 1])
            cols[0].segmented_control("Final grade", list(an.GRADES), key=key,
                                      format_func=lambda g: f"{g} · {an.GRADES[g]}")
            cols[1].button("Resolve", key=f"{key}-go", disabled=not who,
                           on_click=_adjudicate, args=(store, a["set"], d, who, key))
    if dis and not who:
        st.info("Enter your name in the sidebar to adjudicate.")
    st.subheader("Export")
    st.caption(f"A new version under `{a['out']}` (BEIR: corpus, queries, qrels/test.tsv, dataset card).")
    min_ann = st.number_input("Annotators a query needs to be exported", 1, 20, 1, key="exp_min")
    if st.button("Export qrels", key="exp_go", type="primary"):
        try:
            out = an.export_eval_set(store, a["set"], a["data"], a["out"], pool_depth=a["depth"],
                                     min_annotators=int(min_ann))
        except Exception as e:   # a HonedError is the user's to read; show it, keep the page
            st.error(str(e))
        else:
            st.success(f"exported {out}")
            st.code(f"honed eval beir --data {out} --system bm25 --system base=minilm --out reports/{out.parent.name}-"
                    f"{out.name}", language="bash")


def _adjudicate(store, set_name, d, who, key) -> None:
    grade = st.session_state.get(key)
    if grade is None:
        st.toast("Pick a final grade first")
        return
    an.record_label(store, set_name, d["query_id"], d["doc_id"], who, int(grade), kind=an.ADJUDICATION)


def render_answers(cfg: dict) -> None:
    a, store, who = _open(cfg, "Label answers (judge calibration)",
                          "Is every claim of the answer supported by the contexts? Y faithful, N not. "
                          "`honed annotate export-calibration` writes the labels as a calibration set for "
                          "`honed eval rag`.")
    items = an.answer_items(a.get("answers") or [])
    if not items:
        st.info("No answers to label: start with `honed annotate --answers reports/rag/report.json`.")
        return
    if not _named(who, "labelling"):
        return
    done = an.labelled_answers(store, a["set"], who)
    todo = [it for it in items if it["item_id"] not in done]
    st.metric("labelled by you", f"{len(items) - len(todo)} / {len(items)}")
    if not todo:
        st.success("Every answer is labelled.")
        return
    it = todo[0]
    st.text(f"Question: {it['question']}")
    for n, ctx in enumerate(it["contexts"], 1):
        with st.container(border=True):
            st.caption(f"context {n}")
            st.text(ctx)
    st.caption("Answer")
    st.text(it["answer"])
    note_key = f"ans_note-{it['item_id']}"
    st.text_input("Note (optional)", key=note_key)
    c1, c2 = st.columns(2)
    c1.button("Faithful", key="ans_yes", shortcut="Y", type="primary", on_click=_answer_label,
              args=(store, a["set"], it, who, 1, note_key))
    c2.button("Not faithful", key="ans_no", shortcut="N", on_click=_answer_label,
              args=(store, a["set"], it, who, 0, note_key))


def _answer_label(store, set_name, item, who, faithful, note_key) -> None:
    an.record_answer_label(store, set_name, item, who, faithful, note=st.session_state.get(note_key, ""))

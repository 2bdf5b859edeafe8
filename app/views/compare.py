"""The compare page: one query, baseline and candidate side by side, thumbs recorded.

Layout: query box; two columns (blinded as "System A"/"System B" in a random
order per query until the first vote, then revealed), each with the answer
streamed from the local LLM and the retrieved passages (scores, doc ids).
Every answer and passage has thumbs (``st.feedback``), written to the feedback
store at once. Document text and answers (which quote it) are shown with
``st.text``, never as HTML or Markdown, so corpus content cannot inject markup
or script.
"""
from __future__ import annotations

import uuid

import streamlit as st

from honed.app.compare import answer_stream, blind_order, open_system, retrieve, timed
from honed.app.store import FeedbackStore, Vote
from honed.retriever.display import markdown_literal
from honed.retriever.errors import HonedError

from .common import feedback_store


@st.cache_resource(show_spinner="Loading the two retrievers…")
def _systems(baseline: str, candidate: str, corpus, index_dir: str, runs_dir: str, top_k: int):
    return {"baseline": open_system("baseline", baseline, corpus, index_dir, top_k, runs_dir),
            "candidate": open_system("candidate", candidate, corpus, index_dir, top_k, runs_dir)}


@st.cache_resource(show_spinner="Loading the local LLM…")
def _llm(spec: str, max_tokens: int):
    from honed.retriever.llm.generator import make_llm

    return make_llm(spec, max_tokens=max_tokens)


def _record(store: FeedbackStore, key: str, vote: Vote) -> None:
    value = st.session_state.get(key)
    if value is None:          # thumb cleared: keep the log as it is
        return
    vote.vote = 1 if value == 1 else -1
    store.record(vote)
    st.session_state["voted"] = True


def _stream_as_text(chunks) -> str:
    """Show a token stream as it grows, as plain text (st.write_stream would render the LLM's Markdown).

    A generator that fails mid-answer (the local LLM's process crashed, a server went away) ends
    this answer with its one-line reason; the page and the other answer carry on.
    """
    box, text = st.empty(), ""
    try:
        for chunk in chunks:
            text += chunk
            box.text(text)
    except HonedError as e:
        box.text(text)
        st.error(f"The answer could not be completed: {e}")
        return text + f"\n[answer cut short: {e}]"
    box.text(text or "(no answer)")
    return text


def render(cfg: dict) -> None:
    """The compare page: `cfg` is the app's configuration (see app/ui.py)."""
    systems = _systems(cfg["baseline"], cfg["candidate"], cfg["corpus"], cfg["index_dir"], cfg["runs_dir"],
                       int(cfg["top_k"]))
    store = feedback_store(cfg["feedback"])
    sid = st.session_state.setdefault("session_id", uuid.uuid4().hex)
    ident = {side: s.ident for side, s in systems.items()}   # what the store records as the system id

    st.title("Compare retrievers")
    st.caption(f"baseline: `{systems['baseline'].spec}` · candidate: `{systems['candidate'].spec}` · "
               f"votes stored in `{store.url}`")
    with st.form("query"):
        query = st.text_input("Your question", key="query_text")
        submitted = st.form_submit_button("Compare")
    if submitted and query.strip():
        cur = {"query": query.strip(), "results": {}, "answers": {}, "qn": st.session_state.get("qn", 0) + 1}
        st.session_state["qn"] = cur["qn"]
        for side, system in systems.items():
            hits, secs = retrieve(system, cur["query"])
            cur["results"][side] = {"hits": hits, "seconds": secs}
        cur["order"] = blind_order(list(systems), seed=f"{sid}:{cur['query']}") if cfg["blind"] else list(systems)
        st.session_state["current"] = cur
        st.session_state["voted"] = False
    cur = st.session_state.get("current")
    if not cur:
        st.info("Type a question and press Compare.")
        return

    st.text(f"Results for: {cur['query']}")
    revealed = not cfg["blind"] or st.session_state.get("voted", False)
    shown = {ident[s]: [h.doc_id for h in cur["results"][s]["hits"]] for s in systems}
    cols = st.columns(2)
    answer_slots = {}
    for col, side, label in zip(cols, cur["order"], ("A", "B")):
        system = systems[side]
        res = cur["results"][side]
        base_vote = dict(session_id=sid, query=cur["query"], system=ident[side], baseline=ident["baseline"],
                         candidate=ident["candidate"], position=label, blinded=bool(cfg["blind"]), shown=shown,
                         vote=1)
        with col:
            title = f"System {label}" + (f" — {side}: {system.ident}" if revealed else "")
            st.subheader(title)
            st.caption(f"retrieved {len(res['hits'])} passages in {res['seconds'] * 1000:.0f} ms")
            answer_slots[side] = (st.empty(), base_vote)   # filled below, after both columns' passages show
            for h in res["hits"]:
                with st.container(border=True):
                    st.caption(f"#{h.rank} · doc {markdown_literal(h.doc_id)} · score {h.score:.3f}")
                    st.text(h.text)   # plain text: no HTML/Markdown from the corpus is ever interpreted
                    key = f"doc-{cur['qn']}-{side}-{h.doc_id}"
                    st.feedback("thumbs", key=key, on_change=_record,
                                args=(store, key, Vote(target="passage", doc_id=h.doc_id, doc_text=h.text,
                                                       rank=h.rank, score=h.score, **base_vote)))
    if cfg["answers"]:
        # Passages of both systems are on screen first; answers then stream in, A then B (one local LLM).
        for side in cur["order"]:
            slot, base_vote = answer_slots[side]
            with slot.container():
                if side not in cur["answers"]:
                    timing: dict = {}
                    stream = timed(answer_stream(_llm(cfg["llm"], int(cfg["max_tokens"])), cur["query"],
                                                 cur["results"][side]["hits"]), timing)
                    cur["answers"][side] = _stream_as_text(stream)
                    cur.setdefault("answer_timing", {})[side] = timing
                else:
                    st.text(cur["answers"][side])
                t = cur.get("answer_timing", {}).get(side, {})
                if t:
                    st.caption(f"answer: first words after {t['first_s']:.1f} s, complete after {t['total_s']:.1f} s")
                key = f"ans-{cur['qn']}-{side}"
                st.feedback("thumbs", key=key, on_change=_record,
                            args=(store, key, Vote(target="answer", answer=cur["answers"][side], **base_vote)))
    if not revealed:
        st.caption("Which system is which is revealed after your first vote.")

"""Why a tuned retriever disappoints: a structured diagnosis with ranked findings, each with its evidence and a command.

The order an expert follows when tuning does not pay off:

1. **data**: do the test queries look like the training queries, and like the queries users
   really send (logged in the feedback store)? Do train and test share queries, or the passages
   they look for (then part of the test gain is memory of trained passages)? Are labels
   noisy (judged passages the model ranks far down, unjudged passages it puts first)?
2. **evaluation**: which queries the tuned model wins and loses against the baseline, which
   concepts it confuses (:mod:`rag_eval.confusion`), what it does out of domain;
3. **model**: the training curve (still rising at the end: too few steps; peaked and fell:
   overfitting) and forgetting.

Every finding carries a severity (0–1, from the size of the effect and its significance), the
numbers behind it, and the command that acts on it. The report (``diagnosis.md``, ``.json``,
PNGs) lists them most severe first.

Example:
    >>> from honed.rag_eval.diagnose import diagnose
    >>> doc = diagnose("datasets/cuad-clauses", "runs/demo", out="reports/diagnose")  # doctest: +SKIP
    >>> doc["findings"][0]["title"]                                                     # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np

from honed.retriever.atomic import atomic_dir, check_writable
from honed.retriever.data.beir import doc_text
from honed.retriever.data.concepts import concept_labels, parse_concepts, queries_carry
from honed.retriever.errors import HonedError
from honed.retriever.routing import has_router

from .audit import find_leaks, load_splits, passages_trained_on
from .beir_eval import evaluate_systems, parse_system
from .confusion import compare_confusions, concept_confusions, confusion_markdown, plot_confusions
from .report import report_dict
from .significance import paired_test

AREAS = ("data", "evaluation", "model")
# each side of the trained-passage split needs this many queries for its paired test to say anything
MIN_SPLIT_QUERIES = 10


def finding(area: str, severity: float, title: str, evidence: dict, action: str, detail: str = "") -> dict:
    """One ranked finding: what is wrong, how sure (0–1), the numbers, and the command that acts on it."""
    return {"area": area, "severity": round(float(np.clip(severity, 0.0, 1.0)), 3), "title": title,
            "detail": detail, "evidence": evidence, "action": action}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def query_shift(reference: list[str], queries: list[str], ref_vecs: np.ndarray, vecs: np.ndarray) -> dict:
    """How unlike `reference` the `queries` are: length, vocabulary and embedding distance.

    ``nearest_cosine_p50``: the median, over `queries`, of the cosine to the closest reference
    query; ``centroid_cosine``: cosine between the two sets' mean embeddings (1.0: same centre).
    """
    vocab = {w for q in reference for w in _words(q)}
    toks = [w for q in queries for w in _words(q)]
    nearest = (vecs @ ref_vecs.T).max(axis=1) if len(vecs) and len(ref_vecs) else np.array([0.0])
    a, b = ref_vecs.mean(axis=0), vecs.mean(axis=0)
    return {"n": len(queries), "reference_n": len(reference),
            "words_p50": float(np.median([len(_words(q)) for q in queries])) if queries else 0.0,
            "reference_words_p50": float(np.median([len(_words(q)) for q in reference])) if reference else 0.0,
            "vocabulary_covered": round(sum(w in vocab for w in toks) / max(len(toks), 1), 4),
            "nearest_cosine_p50": round(float(np.median(nearest)), 4),
            "centroid_cosine": round(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)), 4)}


def _shift_severity(s: dict) -> float:
    # A test set paraphrasing the training queries sits at nearest ≈ 0.8+, vocabulary ≈ 0.9+;
    # real user queries far from both are what a tuned model was not taught.
    return float(np.clip((0.75 - s["nearest_cosine_p50"]) * 2 + (0.8 - s["vocabulary_covered"]), 0, 1))


def gain_by_trained_passage(seen: dict[str, bool], per_base: dict, per_tuned: dict) -> dict:
    """The tuned model's paired nDCG@10 change on the test queries whose relevant passage training saw
    (`seen`, from ``passages_trained_on``) and on the others, each with its size and confidence interval.

        >>> gain_by_trained_passage({"a": True, "b": False}, {"a": {"NDCG@10": 0.2}, "b": {"NDCG@10": 0.5}},
        ...                         {"a": {"NDCG@10": 0.9}, "b": {"NDCG@10": 0.5}})["trained_passage"]["n"]
        1
    """
    out = {}
    for side, want in (("trained_passage", True), ("other", False)):
        qs = [q for q, s in seen.items() if s is want and q in per_base and q in per_tuned]
        out[side] = {"n": len(qs)}
        if len(qs) >= 2:
            t = paired_test({q: per_base[q]["NDCG@10"] for q in qs}, {q: per_tuned[q]["NDCG@10"] for q in qs},
                            "NDCG@10").to_dict()
            out[side].update({k: round(float(t[k]), 4) for k in ("delta", "ci_low", "ci_high")},
                             p_value=float(f"{t['p_value']:.3g}"))
    return out


def trained_passage_finding(split: dict, data: str) -> dict | None:
    """A finding when the gain lives on passages training saw (at least 0.03 more nDCG@10 there than elsewhere)."""
    tp, ot = split["trained_passage"], split["other"]
    if min(tp["n"], ot["n"]) < MIN_SPLIT_QUERIES or tp["delta"] - ot["delta"] < 0.03:
        return None
    gap = tp["delta"] - ot["delta"]
    share = tp["n"] / (tp["n"] + ot["n"])
    return finding(
        "evaluation", 0.3 + min(0.5, 3 * gap),
        f"The gain is on passages training saw: nDCG@10 {tp['delta']:+.3f} on the {tp['n']} test queries whose "
        f"relevant passage was a training positive, {ot['delta']:+.3f} on the other {ot['n']}",
        {"by_trained_passage": split, "share_of_test_queries": round(share, 4)},
        f"honed data synth --corpus {data} --out pairs/corpus-queries.jsonl (then `honed finetune --pairs` it: "
        "every passage of the corpus gets training queries)",
        f"Queries were split, passages were not: {share:.0%} of the test queries look for a passage the model "
        "was trained on. The gap is memory of those passages if it vanishes in a model trained without them "
        "(on SciFact it did: +0.097 became +0.018; on cuad-clauses a copied contract's queries gained as much "
        "without it). Then a search over passages no training pair covered should expect the second number "
        f"(CI [{ot.get('ci_low', 0):+.3f}, {ot.get('ci_high', 0):+.3f}]); synthetic queries over the whole "
        "corpus you serve train on all of it.")


def label_noise_hints(ds, run: dict, depth: int = 100) -> dict:
    """Judged positives the model does not retrieve in its top `depth`, and unjudged passages it ranks
    first above every positive (likely unlabelled positives: a judgement to check, not an error)."""
    missed, first_unjudged = [], []
    positives = 0
    for q, rel in ds.qrels.items():
        pos = {d for d, g in rel.items() if g > 0}
        positives += len(pos)
        ranked = sorted(run.get(q, {}).items(), key=lambda kv: -kv[1])[:depth]
        got = {d for d, _ in ranked}
        missed += [{"query": q, "query_text": ds.queries[q], "doc": d, "doc_text": doc_text(ds.corpus[d])[:200]}
                   for d in sorted(pos - got) if d in ds.corpus]
        if ranked and ranked[0][0] not in rel:
            d = ranked[0][0]
            first_unjudged.append({"query": q, "query_text": ds.queries[q], "doc": d,
                                   "doc_text": doc_text(ds.corpus[d])[:200] if d in ds.corpus else ""})
    return {"positives": positives, "missed_at_depth": len(missed), "depth": depth,
            "missed_rate": round(len(missed) / max(positives, 1), 4), "missed_examples": missed[:5],
            "unjudged_first": len(first_unjudged), "unjudged_first_rate":
                round(len(first_unjudged) / max(len(ds.qrels), 1), 4), "unjudged_first_examples": first_unjudged[:5]}


def forgetting_side(ds, name: str, index_dir: str | os.PathLike, k: int = 10, base: str = "base",
                    tuned: str = "tuned") -> dict | None:
    """Where an out-of-domain loss lives: nDCG@10 with the queries read by one model and the passages by the other.

    A dense score is a query vector against passage vectors, so forgetting can sit in either; scoring the tuned
    model's queries against the base model's passage vectors (and the reverse) tells which. Reuses the indexes
    that :func:`~.beir_eval.evaluate_systems` built for the systems `base` and `tuned` under `index_dir`;
    None when they are missing or their vectors differ in size. Written here because no retrieval library
    scores one model's queries against another's passages.
    """
    from honed.retriever.encoder import load_encoder
    from honed.retriever.fusion import search_modes
    from honed.retriever.index import load_index

    from .beir_eval import labels_and_ids
    from .metrics import evaluate_run

    qids = list(ds.queries)
    texts = [ds.queries[q] for q in qids]
    sides = {}
    for side, system in (("base", base), ("tuned", tuned)):
        path = Path(index_dir) / f"{name}-test-{system}"
        if not (path / "manifest.json").exists():
            return None
        index = load_index(path)
        sides[side] = (index, load_encoder(index.model_dir))    # its own copy: the run may have moved since
    if sides["base"][0].manifest["dim"] != sides["tuned"][0].manifest["dim"]:
        return None
    out = {}
    for q_side, p_side in (("tuned", "base"), ("base", "tuned")):
        index, enc = sides[p_side][0], sides[q_side][1]
        hits = search_modes(index, enc.encode_queries(texts), texts, k, "dense")
        ids = dict(zip(*labels_and_ids(index)))
        run = {q: {ids[p]: s for p, s in h} for q, h in zip(qids, hits)}
        out[f"queries {q_side}, passages {p_side}"] = round(evaluate_run(ds.qrels, run, (k,)).aggregate[f"NDCG@{k}"], 4)
    return out


def dev_split_finding(run_dir: Path, data: str | os.PathLike, model: str) -> dict | None:
    """A finding when the run held out a dev split unlike its data's test split (its manifest's ``dev_vs_test``,
    :func:`honed.retriever.finetune.pairs.dev_unlike_test`): the run's own verdicts rest on that split."""
    from honed.retriever.atomic import read_json

    if not (run_dir / "honed.json").is_file():
        return None
    run = read_json(run_dir / "honed.json")
    check = (run.get("data") or {}).get("dev_vs_test")
    if not check or not check["unlike"]:
        return None
    source = (run.get("data") or {}).get("source") or data
    return finding("evaluation", 0.45, f"The run's dev split is unlike the test split of {Path(source).name}: "
                   f"{'; '.join(check['unlike'])}", {"data": str(source), **check},
                   f"honed finetune --data {source} --out {model}-dev (after adding qrels/dev.tsv there: dev queries "
                   "like the test ones, which a run uses instead)",
                   "Held out from the training queries, it decided the run's early stopping, its status and any "
                   "teacher check; on cuad-clauses such a split rose while test fell for students distilled from the "
                   "demo's run (docs/cli.md, fine-tuning). Judge the run on test, not on its dev score.")


def training_curve(run_dir: Path) -> dict | None:
    """The run's dev nDCG@10 by step (its training log), and what its shape says; None without a log."""
    from honed.retriever.finetune.tracking import training_log

    if not (run_dir / "log_history.json").is_file():
        return None
    log = training_log(run_dir)
    if not log["dev_ndcg"]:
        return None
    steps, vals = zip(*log["dev_ndcg"])
    best = int(np.argmax(vals))
    return {"steps": list(steps), "dev_ndcg@10": [round(v, 4) for v in vals], "base_dev_ndcg@10": log["base_dev_ndcg"],
            "best_step": steps[best], "best": round(vals[best], 4), "last": round(vals[-1], 4),
            "still_rising": len(vals) >= 2 and best == len(vals) - 1 and vals[-1] - vals[-2] > 0.005,
            "fell_after_best": round(vals[best] - vals[-1], 4), "data": log["params"].get("data"),
            "lr": log["params"].get("lr"), "max_steps": log["params"].get("max_steps")}


def diagnose(data: str | os.PathLike, model: str, baseline: str = "minilm", out: str | os.PathLike = "reports/diagnose",
             concepts: str = "auto", also: list[str] | tuple = (), ood: list[str] | tuple = (),
             logged_queries: list[str] | None = None, index_dir: str | os.PathLike = "indexes",
             force: bool = False) -> dict:
    """Diagnose `model` (a run folder or any model) against `baseline` on `data` (train + test splits);
    `also` are more in-domain test sets (such as a QA set of the same domain), `ood` out-of-domain ones,
    `logged_queries` the queries users sent (from the feedback store). Writes diagnosis.md/.json + PNGs."""
    from honed.retriever.encoder import load_encoder, split_backend

    t0 = time.perf_counter()
    parse_concepts(concepts)                # a malformed rule fails now, not after the evaluation
    check_writable(out, "diagnosis", force)
    splits = load_splits(data)
    if "test" not in splits:
        raise HonedError(f"{data}: honed diagnose needs a test split (qrels/test.tsv)")
    systems = [parse_system(f"base={baseline}"), parse_system(f"tuned={model}")]
    results = evaluate_systems([str(data), *map(str, also)], systems, split="test", index_dir=index_dir,
                               ood=list(ood))
    doc = report_dict(results, baseline="base")
    enc = load_encoder(baseline)
    findings: list[dict] = []
    evidence: dict = {"data": str(data), "model": model, "baseline": baseline}

    # 1. data ------------------------------------------------------------------------------------
    test = splits["test"]
    train = splits.get("train")
    test_q = list(test.queries.values())
    test_vecs = enc.encode_queries(test_q)
    if train is not None:
        train_q = list(train.queries.values())
        train_vecs = enc.encode_queries(train_q)
        leaks = find_leaks(train.queries, test.queries, train_vecs, test_vecs)
        evidence["leakage"] = {k: leaks[k] for k in ("n_test_queries_leaked", "threshold")}
        if leaks["n_test_queries_leaked"]:
            n = leaks["n_test_queries_leaked"]
            findings.append(finding("data", 0.5 + 0.5 * min(1.0, n / max(len(test_q), 1) * 5),
                                    f"{n} test queries also appear (or nearly) in training",
                                    {"examples": (leaks["exact"] + leaks["near"])[:3]},
                                    f"honed data audit {data}",
                                    "Scores on these queries measure memory, not retrieval."))
        shift = query_shift(train_q, test_q, train_vecs, test_vecs)
        evidence["test_vs_train_queries"] = shift
        if _shift_severity(shift) > 0.2:
            findings.append(finding("data", _shift_severity(shift), "The test queries do not look like the training queries",
                                    shift, f"honed data synth --corpus {data} --out pairs/synthetic.jsonl (queries of the kind tested)"))
    lq = list(dict.fromkeys(q for q in logged_queries or [] if q.strip()))
    if lq:
        lv = enc.encode_queries(lq)
        shift = query_shift(test_q, lq, test_vecs, lv)
        evidence["logged_vs_test_queries"] = shift
        sev = _shift_severity(shift)
        findings.append(finding(
            "data", sev, "Users' queries do not look like the test queries" if sev > 0.2
            else "Users' queries look like the test queries", shift,
            f"honed annotate --set logged --data {data} --system tuned={model} --from-log (judge logged queries "
            "into a test set that matches use)",
            f"{len(lq)} distinct logged queries compared with {len(test_q)} test queries."))

    # 2. evaluation -----------------------------------------------------------------------------
    # each set's test split read once, for its losses, label-noise hints and confusions
    test_sets = {res.name: test if res.path == str(data) else load_splits(res.path, ("test",))["test"]
                 for res in results}
    by_dataset = {}
    for res in results:
        d = doc["datasets"][res.name]
        ds = test_sets[res.name]
        sig = d["significance"]["tuned"]["NDCG@10"]
        per_base, per_tuned = d["systems"]["base"]["per_query"], d["systems"]["tuned"]["per_query"]
        deltas = sorted(((per_tuned[q]["NDCG@10"] - per_base[q]["NDCG@10"], q) for q in per_base if q in per_tuned))
        losses = [{"query": q, "query_text": ds.queries[q], "base": round(per_base[q]["NDCG@10"], 4),
                   "tuned": round(per_tuned[q]["NDCG@10"], 4), "delta": round(dlt, 4)}
                  for dlt, q in deltas[:5] if dlt < 0]
        entry = {"role": res.role, "n_queries": res.n_queries, "ndcg@10": {
            "base": d["systems"]["base"]["metrics"]["NDCG@10"], "tuned": d["systems"]["tuned"]["metrics"]["NDCG@10"]},
            "paired": sig, "worst_losses": losses}
        lost = sig["delta"] < 0 and (sig["p_value"] < 0.05 or sig["ci_high"] < 0)
        if res.role == "out-of-domain":
            if sig["delta"] < -0.01:
                routed = has_router(split_backend(model)[0])
                sides = forgetting_side(ds, res.name, index_dir)
                entry["forgetting_side"] = sides
                findings.append(finding(
                    "model", (0.85 if lost else 0.45) + min(0.15, -sig["delta"]),
                    f"The tuned model forgets out of domain: {res.name} nDCG@10 {sig['delta']:+.3f}",
                    {"dataset": res.name, **{k: sig[k] for k in ("delta", "ci_low", "ci_high", "p_value", "n")},
                     **({"ndcg@10_by_side": sides} if sides else {})},
                    f"honed finetune --data {data} --out {model}-routed" if not routed else
                    f"honed merge {model} --out {model}-merged --data {data} --ood {res.path}",
                    ("Merging the tuned weights back toward the base model trades a little in-domain gain for "
                     "what it forgot; a larger slice makes the check firmer." if not lost else
                     "Significant: the gain in domain is paid for here.")
                    + (" " + _side_detail(sides, entry["ndcg@10"]) if sides else "")
                    + ("" if routed else " This run has no domain router (made before honed kept one, or with "
                       "--no-router): a run of `honed finetune` keeps one, and its indexes keep the base model's "
                       "vectors for passages unlike the training corpus (docs/diagnose.md, domain routing).")))
        else:
            noise = label_noise_hints(ds, res.systems["tuned"].run)
            entry["label_noise"] = noise
            if train is not None and res.path == str(data):
                entry["by_trained_passage"] = gain_by_trained_passage(passages_trained_on(train, ds), per_base,
                                                                      per_tuned)
                f = trained_passage_finding(entry["by_trained_passage"], str(data))
                if f:
                    findings.append(f)
            if lost:
                findings.append(finding(
                    "evaluation", 0.9 + min(0.1, -sig["delta"]),
                    f"The tuned model loses to the base model on {res.name} (nDCG@10 {sig['delta']:+.3f}, "
                    f"p {sig['p_value']:.2g})", {"dataset": res.name, "paired": sig, "worst_losses": losses},
                    f"honed diagnose --data {res.path} --model {model} --concepts doc:FIELD",
                    "Read the confusions below: which concept wins over the right one."))
            if noise["unjudged_first_rate"] >= 0.3:
                findings.append(finding(
                    "data", 0.2 + 0.4 * noise["unjudged_first_rate"],
                    f"{noise['unjudged_first_rate']:.0%} of {res.name}'s queries get an unjudged passage first",
                    {k: noise[k] for k in ("unjudged_first", "unjudged_first_rate", "unjudged_first_examples")},
                    f"honed annotate --data {res.path} --system tuned={model} (judge the pooled top passages)",
                    "Either the model is wrong or the judgements are incomplete: unjudged counts as irrelevant."))
        by_dataset[res.name] = entry
    evidence["datasets"] = by_dataset

    # confusions on the main set and on every `also` set, each with its own labels
    confusion = {}
    plots = []
    for res in results:
        if res.role != "in-domain":
            continue
        ds = test_sets[res.name]
        how = concepts if res.path == str(data) else _labels_for(ds)
        try:
            labels = concept_labels(ds, how, encoder=enc)
        except HonedError as e:
            if res.path == str(data):
                raise
            evidence.setdefault("skipped", []).append(f"confusions on {res.name}: {e}")
            continue
        by_sys = {s: concept_confusions(ds, res.systems[s].run, labels, res.systems[s].metrics.per_query)
                  for s in ("base", "tuned")}
        cmp = compare_confusions(by_sys, "base")
        confusion[res.name] = {"source": labels.source, "systems": by_sys, "compare": cmp}
        b, t = by_sys["base"]["confused_rate"], by_sys["tuned"]["confused_rate"]
        if b is not None and t is not None and t - b >= 0.05:
            top = cmp["grown"]["tuned"][:3]
            findings.append(finding(
                "evaluation", 0.5 + min(0.45, 2 * (t - b)) + (0.05 if res.path != str(data) else 0.0),
                f"On {res.name} the tuned model confuses {_what(labels.source)} more than the base model: "
                f"{t:.0%} of queries vs {b:.0%}", {"dataset": res.name, "concepts": labels.source,
                                                    "confused_rate": {"base": b, "tuned": t}, "pairs_grown": top},
                _confusion_action(labels.source, res.path, str(data), model), _confusion_detail(labels.source, top)))
        elif by_sys["tuned"]["pairs"]:      # no worse than the base: what the tuned model still confuses most
            r = by_sys["tuned"]["pairs"][0]
            findings.append(finding(
                "evaluation", 0.1 + 0.3 * r["rate"], f"Still confused on {res.name} ({t:.0%} of queries, base {b:.0%}): "
                f"{r['concept']} → {r['confused_with']} in {r['queries']} of its {r['of']} queries",
                {"dataset": res.name, "pair": {k: v for k, v in r.items() if k != "examples"},
                 "example": r["examples"][:1]},
                f"honed finetune --data {data} --negatives confusable"))

    f = dev_split_finding(Path(model), data, model)
    if f:
        findings.append(f)

    # 3. model ----------------------------------------------------------------------------------
    curve = training_curve(Path(model)) if Path(model).is_dir() else None
    evidence["training_curve"] = curve
    if curve:
        if curve["still_rising"]:
            findings.append(finding(
                "model", 0.35, f"Training stopped while dev nDCG@10 was still rising ({curve['last']:.3f} at step "
                f"{curve['steps'][-1]})", curve, f"honed finetune --data {curve['data'] or data} --max-steps "
                f"{2 * curve['steps'][-1]} (or --time-budget)"))
        elif curve["fell_after_best"] >= 0.01:
            findings.append(finding(
                "model", 0.4 + min(0.4, 4 * curve["fell_after_best"]),
                f"Overfitting: dev nDCG@10 peaked at step {curve['best_step']} ({curve['best']:.3f}) and fell to "
                f"{curve['last']:.3f}", curve, f"honed finetune --data {curve['data'] or data} --max-steps "
                f"{curve['best_step']} (or a lower --lr)"))

    order = {a: i for i, a in enumerate(AREAS)}
    findings.sort(key=lambda f: (-f["severity"], order[f["area"]], f["title"]))
    result = {"schema": 1, "kind": "diagnosis", "data": str(data), "model": model, "baseline": baseline,
              "seconds": None, "findings": findings, "evidence": evidence,
              "confusion": {k: {"source": v["source"], "compare": v["compare"],
                                "per_concept": {s: v["systems"][s]["per_concept"] for s in v["systems"]},
                                "confused_rate": {s: v["systems"][s]["confused_rate"] for s in v["systems"]}}
                            for k, v in confusion.items()}}
    out = Path(out)
    with atomic_dir(out, kind="diagnosis", force=force) as tmp:
        for name, v in confusion.items():
            fname = f"confusion-{name}.png"
            plot_confusions(v["systems"], tmp / fname)
            plots.append(fname)
        if curve:
            _plot_curve(curve, tmp / "training-curve.png")
            plots.append("training-curve.png")
        result["plots"] = plots
        result["seconds"] = round(time.perf_counter() - t0, 1)
        (tmp / "diagnosis.json").write_text(json.dumps(result, indent=1, default=float) + "\n", encoding="utf-8")
        (tmp / "diagnosis.md").write_text(diagnosis_markdown(result, confusion), encoding="utf-8")
    return result


def _side_detail(sides: dict, ndcg: dict) -> str:
    """One sentence: which side of the dense score the out-of-domain loss sits in."""
    lost = ndcg["base"] - ndcg["tuned"]
    q_only = ndcg["base"] - sides["queries tuned, passages base"]      # loss with only the queries tuned
    p_only = ndcg["base"] - sides["queries base, passages tuned"]      # loss with only the passages tuned
    where = ("how it reads this domain's passages" if p_only > 2 * max(q_only, 0.0) else
             "how it reads this domain's queries" if q_only > 2 * max(p_only, 0.0) else "both sides")
    return (f"The tuned model's queries against the base model's passage vectors score "
            f"{sides['queries tuned, passages base']:.3f}, the base model's queries against its passage vectors "
            f"{sides['queries base, passages tuned']:.3f} (base {ndcg['base']:.3f}, tuned {ndcg['tuned']:.3f}, "
            f"lost {lost:.3f}): the loss is in {where}.")


def _labels_for(ds) -> str:
    """Concepts for an extra in-domain set: its queries' categories, else the passages' `contract`
    (one document per question, as in a QA set), else clusters."""
    if queries_carry(ds, "category"):
        return "query:category"
    for field in ("contract", "document", "source"):
        if any((doc.get("metadata") or {}).get(field) for doc in ds.corpus.values()):
            return f"doc:{field}"
    return "clusters"


def _confusion_action(source: str, path: str, data: str, model: str) -> str:
    """Confused clause types: aim the negatives at them. Confused *documents* (which contract a passage is
    from): questions about one document teach the model that the document matters."""
    if source.startswith("passage metadata"):
        return (f"honed data synth --corpus {path} --out pairs/{Path(path).name}-questions.jsonl, then "
                f"honed finetune --data {data} --pairs pairs/{Path(path).name}-questions.jsonl")
    return f"honed finetune --data {data} --negatives confusable (negatives from the confused concepts)"


def _what(source: str) -> str:
    m = re.search(r"metadata '([^']+)'", source)
    return f"which {m.group(1)} a passage belongs to" if m else "concepts"


def _confusion_detail(source: str, top: list[dict]) -> str:
    if not top:
        return ""
    ex = top[0]["examples"][0] if top[0]["examples"] else None
    said = (f" For example \"{ex['query_text']}\" ({top[0]['concept']}) gets a passage of {top[0]['confused_with']} "
            f"at rank {ex['rank']}.") if ex else ""
    return f"Concepts: {source}.{said}"


def _plot_curve(curve: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(curve["steps"], curve["dev_ndcg@10"], marker="o", color="#2f6fde", label="tuned (dev)")
    if curve["base_dev_ndcg@10"] is not None:
        ax.axhline(curve["base_dev_ndcg@10"], color="#9aa5b1", ls="--", label="base (dev)")
    ax.set_xlabel("training step")
    ax.set_ylabel("dev nDCG@10")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def diagnosis_markdown(doc: dict, confusion: dict) -> str:
    from honed.retriever.display import markdown_literal as lit

    lines = [f"# Diagnosis: `{lit(doc['model'])}` vs `{lit(doc['baseline'])}` on {lit(doc['data'])}", "",
             f"{len(doc['findings'])} findings, most severe first ({doc['seconds']} s).", ""]
    for i, f in enumerate(doc["findings"], 1):
        lines += [f"## {i}. {lit(f['title'])}", "",
                  f"*{f['area']}, severity {f['severity']:.2f}.* {lit(f['detail'])}".rstrip(), "",
                  f"Act: `{f['action']}`", "", "<details><summary>evidence</summary>", "", "```json",
                  json.dumps(f["evidence"], indent=1, default=float)[:3000], "```", "</details>", ""]
    for name, v in confusion.items():
        lines += [f"## Confusions on {lit(name)}", "", f"![confusions](confusion-{name}.png)", "",
                  confusion_markdown(v["compare"], v["systems"], v["source"])]
    if "training-curve.png" in doc.get("plots", []):
        lines += ["## Training curve", "", "![training curve](training-curve.png)", ""]
    return "\n".join(lines)


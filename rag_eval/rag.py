"""End-to-end RAG evaluation: LlamaIndex query engine over HonedRetriever, scored with ragas.

For each system (a dense model with an index over the dataset's test corpus)
and each of `n` test queries: retrieve with :class:`~retriever.HonedRetriever`,
answer with the local LLM through ``RetrieverQueryEngine``, then score with
ragas' own metric classes:

- ``Faithfulness`` and ``AnswerRelevancy`` (collections API; the judge is the
  local GGUF model with JSON-schema decoding, or an OpenAI-compatible URL),
- ``IDBasedContextPrecision`` / ``IDBasedContextRecall`` with the qrels as reference ids.

A judge sanity check runs with every evaluation: each faithful (answer,
its own contexts) is paired with the same answer against another query's
contexts; a trustworthy judge scores the first higher. NaN rates are reported.

Example:
    >>> from honed.rag_eval.rag import evaluate_rag
    >>> doc = evaluate_rag("datasets/cuad-clauses", {"base": "minilm"}, n=5, out="reports/rag")  # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from honed.retriever.atomic import atomic_dir, check_writable
from honed.retriever.data.beir import load_beir
from honed.retriever.errors import HonedError

from .cache import JsonCache

# Claim-aware, and no exact-string escape hatch. BEIR sets such as SciFact ask with *claims*; with a
# question-only prompt ending in 'If no passage answers it, reply exactly: Not found in the passages.'
# the 0.5B generator gave that reply to every SciFact claim (answer relevancy 0 by construction).
QA_TEMPLATE = (
    "Read these passages.\n\n{context_str}\n\n"
    "Request: {query_str}\n"
    "If the request is a question, give the best answer the passages support. If it is a statement, "
    "say whether the passages support or contradict it and why. Use one or two sentences and quote "
    "the passages. If they say nothing about it, say what they do say instead."
)
ANSWER_MAX_TOKENS = 64   # decode-bound (~13 tokens/s here): one or two sentences fit
METRICS = ("faithfulness", "answer_relevancy", "context_precision_ids", "context_recall_ids")
JUDGE_TRUST_MIN = 0.7


def _nanmean(xs) -> float | None:
    v = [x for x in xs if x is not None and not math.isnan(x)]
    return float(np.mean(v)) if v else None


def _score(coro_fn, *args, **kwargs) -> tuple[float, str | None]:
    """Run one async ragas metric; a judge failure becomes NaN with its reason, never a crash."""
    try:
        res = asyncio.run(coro_fn(*args, **kwargs))
        v = float(getattr(res, "value", res))
        # ragas returns NaN without raising when the judge finds nothing to score (e.g. no statements)
        return v, ("NaN from the metric: the judge extracted nothing to score" if math.isnan(v) else None)
    except Exception as e:  # ragas raises many types (validation, parsing, value errors)
        return float("nan"), f"{type(e).__name__}: {str(e)[:120]}"


def make_judge(judge, cache: JsonCache):
    """``qwen`` (or another GGUF ref) → local judge; ``URL#model`` → OpenAI-compatible; an object → itself."""
    if not isinstance(judge, str):
        return judge
    if judge.startswith("http://") or judge.startswith("https://"):
        from .llm import openai_judge

        url, _, model = judge.partition("#")
        return openai_judge(url, model or "default")
    from .llm import LocalJudge

    return LocalJudge(judge, cache=cache)


def evaluate_rag(data: str | os.PathLike, systems: dict[str, str], n: int = 20, out: str | os.PathLike | None = None,
                 llm: str = "qwen", judge="qwen", top_k: int = 3, index_dir: str | os.PathLike = "indexes",
                 cache_path: str | os.PathLike | None = None, sanity_pairs: int = 5,
                 embed_model: str = "minilm", force: bool = False) -> dict:
    """Run and score the RAG pipeline for each system; write report.json/report.md/plot when `out` is set."""
    if out:
        check_writable(out, "rag-report", force)
    from llama_index.core import PromptTemplate
    from llama_index.core.query_engine import RetrieverQueryEngine
    from ragas.embeddings import HuggingFaceEmbeddings
    from ragas.metrics import IDBasedContextPrecision, IDBasedContextRecall
    from ragas.metrics.collections import AnswerRelevancy, Faithfulness
    from ragas.dataset_schema import SingleTurnSample
    from rich.progress import track

    from honed.retriever.honed_retriever import HonedRetriever
    from honed.retriever.models import resolve_model

    from .beir_eval import cached_index, subsample_queries
    from .llm import LocalLLM

    if n < 1:
        raise HonedError(f"--n must be ≥ 1, got {n}")
    ds = subsample_queries(load_beir(data, "test"), n)
    cache = JsonCache(cache_path)
    gen = LocalLLM(llm, max_tokens=ANSWER_MAX_TOKENS, cache=cache)
    jd = make_judge(judge, cache)
    faith = Faithfulness(llm=jd)
    relevancy = AnswerRelevancy(llm=jd, embeddings=HuggingFaceEmbeddings(model=str(resolve_model(embed_model))),
                                strictness=1)
    prec, rec = IDBasedContextPrecision(), IDBasedContextRecall()

    doc = {"schema": "honed.rag-report/1", "kind": "rag", "dataset": str(data), "n": len(ds.queries), "top_k": top_k,
           "llm": llm, "judge": judge if isinstance(judge, str) else type(judge).__name__, "systems": {},
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    for name, model in systems.items():
        slug = f"{Path(data).resolve().name}-test-{name}"
        index, enc = cached_index(ds, model, Path(index_dir) / slug)
        r = HonedRetriever(index, enc, similarity_top_k=top_k)
        engine = RetrieverQueryEngine.from_args(r, llm=gen, text_qa_template=PromptTemplate(QA_TEMPLATE))
        samples, t0 = [], time.perf_counter()
        for qid in track(list(ds.queries), description=f"RAG {name}"):
            q = ds.queries[qid]
            t_answer = time.perf_counter()
            resp = engine.query(q)
            t_judge = time.perf_counter()
            ctx = [n_.node.get_content() for n_ in resp.source_nodes]
            ids = [n_.node.node_id for n_ in resp.source_nodes]
            answer = str(resp).strip() or "(no answer)"
            s = {"query_id": qid, "query": q, "answer": answer, "context_ids": ids, "errors": {}}
            for metric, (fn, args) in {
                "faithfulness": (faith.ascore, dict(user_input=q, response=answer, retrieved_contexts=ctx)),
                "answer_relevancy": (relevancy.ascore, dict(user_input=q, response=answer)),
            }.items():
                s[metric], err = _score(fn, **args)
                if err:
                    s["errors"][metric] = err
            ref = [d for d, g in ds.qrels[qid].items() if g > 0]
            sample = SingleTurnSample(retrieved_context_ids=ids, reference_context_ids=ref)
            s["context_precision_ids"], _ = _score(prec.single_turn_ascore, sample)
            s["context_recall_ids"], _ = _score(rec.single_turn_ascore, sample)
            s["seconds"] = {"answer": round(t_judge - t_answer, 2), "judge": round(time.perf_counter() - t_judge, 2)}
            s["_contexts"] = ctx
            samples.append(s)
        secs = time.perf_counter() - t0
        t_sanity = time.perf_counter()
        sanity = judge_sanity(faith, samples, sanity_pairs)
        sanity["seconds"] = round(time.perf_counter() - t_sanity, 2)
        for s in samples:
            s.pop("_contexts")
        doc["systems"][name] = {
            "model": model, "samples": samples, "seconds_per_sample": round(secs / max(len(samples), 1), 2),
            # where a sample's time goes: generating the answer vs the judge's calls (sanity check not included)
            "seconds_per_sample_split": {k: round(float(np.mean([x["seconds"][k] for x in samples])), 2)
                                         for k in ("answer", "judge")},
            "metrics": {m: _nanmean(s[m] for s in samples) for m in METRICS},
            "nan_rate": {m: round(sum(1 for s in samples if math.isnan(s[m])) / len(samples), 4) for m in METRICS},
            "judge_sanity": sanity,
        }
    doc["cache"] = {"path": str(cache.path), "hits": cache.hits, "misses": cache.misses}
    if getattr(jd, "seconds", None):
        doc["judge_seconds"] = {k: round(v, 1) for k, v in jd.seconds.items()}
    doc["judge_trustworthy"] = all(v["judge_sanity"]["accuracy"] is not None
                                   and v["judge_sanity"]["accuracy"] >= JUDGE_TRUST_MIN for v in doc["systems"].values())
    if out:
        write_rag_report(doc, out, force)
    return doc


def judge_sanity(faith, samples: list[dict], pairs: int) -> dict:
    """How often the judge scores an answer higher against its own contexts than against another query's."""
    # an answer needs its own faithfulness score; the contexts swapped in may come from any other sample
    scored = [i for i, s in enumerate(samples) if not math.isnan(s["faithfulness"])][:pairs]
    wins, ties, details = 0, 0, []
    for i in scored:
        s, other = samples[i], samples[(i + 1) % len(samples)]
        if other["query_id"] == s["query_id"]:
            break
        swapped, _ = _score(faith.ascore, user_input=s["query"], response=s["answer"],
                            retrieved_contexts=other["_contexts"])
        good = s["faithfulness"]
        if not math.isnan(swapped) and good > swapped:
            wins += 1
        elif not math.isnan(swapped) and good == swapped:
            ties += 1
        details.append({"query_id": s["query_id"], "faithful": good, "swapped_context": swapped})
    n = len(details)
    acc = (wins + 0.5 * ties) / n if n else None
    return {"pairs": n, "accuracy": acc, "trustworthy": acc is not None and acc >= JUDGE_TRUST_MIN,
            "details": details}


def write_rag_report(doc: dict, out: str | os.PathLike, force: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    names = list(doc["systems"])
    with atomic_dir(out, kind="rag-report", force=force) as tmp:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        width = 0.8 / max(len(names), 1)
        for i, nme in enumerate(names):
            vals = [doc["systems"][nme]["metrics"][m] or 0 for m in METRICS]
            ax.bar(np.arange(len(METRICS)) + i * width, vals, width, label=nme)
        ax.set_xticks(np.arange(len(METRICS)) + width * (len(names) - 1) / 2, METRICS, fontsize=8)
        ax.set_ylim(0, 1)
        ax.legend()
        ax.set_title(f"RAG metrics ({doc['n']} queries, judge {doc['judge']})")
        fig.tight_layout()
        fig.savefig(tmp / "rag-metrics.png", dpi=110)
        plt.close(fig)
        (tmp / "report.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
        L = [f"# RAG evaluation: {doc['dataset']}", "",
             f"{doc['n']} test queries, top-{doc['top_k']} contexts, generator `{doc['llm']}`, judge `{doc['judge']}`.", ""]
        if not doc["judge_trustworthy"]:
            L += [f"> **Judge flagged as untrustworthy**: it ranked faithful answers above swapped-context ones "
                  f"less than {JUDGE_TRUST_MIN:.0%} of the time. Treat faithfulness/relevancy as noise.", ""]
        L += ["| system | " + " | ".join(METRICS) + " | NaN rate (faith/relev) | judge sanity | s/sample (answer + judge) |",
              "|---|" + "---:|" * len(METRICS) + "---|---|---:|"]
        for nme, s in doc["systems"].items():
            fmt = lambda v: f"{v:.3f}" if v is not None else "—"
            js = s["judge_sanity"]
            L.append(f"| {nme} | " + " | ".join(fmt(s["metrics"][m]) for m in METRICS)
                     + f" | {s['nan_rate']['faithfulness']:.0%} / {s['nan_rate']['answer_relevancy']:.0%} "
                     f"| {fmt(js['accuracy'])} over {js['pairs']} pairs | {s['seconds_per_sample']} "
                     f"({s['seconds_per_sample_split']['answer']} + {s['seconds_per_sample_split']['judge']}) |")
        L += ["", "![metrics](rag-metrics.png)", "", f"Cache: {doc['cache']['hits']} hits, {doc['cache']['misses']} misses."]
        if doc.get("judge_seconds"):
            L += ["", "Judge time by call (uncached calls, sanity check included): "
                  + ", ".join(f"{k} {v} s" for k, v in doc["judge_seconds"].items()) + "."]
        L.append("")
        (tmp / "report.md").write_text("\n".join(L))
    return out / "report.md"

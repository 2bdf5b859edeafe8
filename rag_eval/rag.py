"""End-to-end RAG evaluation: does the tuned retriever make answers better than the baseline's?

For each system (a dense model with an index over the dataset's test corpus)
and each of `n` test queries: retrieve with :class:`~retriever.HonedRetriever`,
answer through ``RetrieverQueryEngine`` with the prompt for the request's kind
(question, statement or topic; :mod:`retriever.prompts`) and any generator
(:func:`~retriever.generator.make_llm`), then score with ragas' metric classes:

- judged: ``Faithfulness``, ``AnswerRelevancy`` and, with a reference answer,
  ``AnswerCorrectness`` (the judge: the local GGUF model with JSON-schema decoding,
  or an OpenAI-compatible URL);
- judge-free: ``SemanticSimilarity`` and ``RougeScore`` (ROUGE-L) against the
  reference answer, decision accuracy against a labelled yes/no (:mod:`rag_eval.reference`),
  ``IDBasedContextPrecision`` / ``IDBasedContextRecall`` with the qrels as reference ids.

The headline is the paired comparison: every system against the first, query by
query (deltas, wins/ties/losses, Wilcoxon p per metric). A judge sanity check runs
with every evaluation: each (answer, its own contexts) is paired with the same
answer against another query's contexts; a trustworthy judge scores the first
higher. NaN rates are reported.

Example:
    >>> from honed.rag_eval.rag import evaluate_rag
    >>> doc = evaluate_rag("datasets/cuad-qa", {"base": "minilm", "tuned": "runs/demo"}, n=5)  # doctest: +SKIP
    >>> doc["comparison"]["tuned"]["tests"]["rouge_l"]["p_value"]                             # doctest: +SKIP
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from honed.retriever.atomic import check_writable
from honed.retriever.data.beir import load_beir
from honed.retriever.errors import HonedError

from .cache import JsonCache
from .rag_metrics import JUDGE_TRUST_MIN, JUDGED, METRICS, UNJUDGED, metric_order, nanmean, score  # noqa: F401

ANSWER_MAX_TOKENS = 64   # decode-bound (~13 tokens/s here): one or two sentences fit
def local_llm_build(gen, judge) -> dict | None:
    """The llama.cpp build (CPU features compiled in, extra buffers on or off) when a local GGUF model runs."""
    from honed.retriever.llm.generator import LocalLLM
    from honed.retriever.llm.process import llm_process

    from .judge import LocalJudge

    return llm_process().call("info") if isinstance(gen, LocalLLM) or isinstance(judge, LocalJudge) else None


def make_judge(judge, cache: JsonCache):
    """``qwen`` (or another GGUF ref) → local judge; ``URL#model`` → OpenAI-compatible; an object → itself."""
    from honed.retriever.llm.generator import is_url_spec

    if not isinstance(judge, str):
        return judge
    if is_url_spec(judge):
        from .judge import openai_judge

        url, _, model = judge.partition("#")
        return openai_judge(url, model or "default")
    from .judge import LocalJudge

    return LocalJudge(judge, cache=cache)


def evaluate_rag(data: str | os.PathLike, systems: dict[str, str], n: int | None = 20, out: str | os.PathLike | None = None,
                 llm="qwen", judge="qwen", top_k: int = 3, index_dir: str | os.PathLike = "indexes",
                 cache_path: str | os.PathLike | None = None, sanity_pairs: int = 5,
                 embed_model: str = "minilm", calibration: str | os.PathLike | None = None,
                 calibration_n: int | None = None, force: bool = False) -> dict:
    """Run and score the RAG pipeline for each system on `n` test queries (None: all); write
    report.json/report.md/plots when `out` is set.

    `llm` and `judge` each take a GGUF reference, ``URL#model`` of an OpenAI-compatible
    server, or an object (a LlamaIndex LLM; a ragas judge); ``judge="none"`` scores only what needs no
    judge (reference similarity, ROUGE-L, yes/no accuracy, context ids): minutes instead of an hour on a
    CPU. The first system is the baseline every other one is compared with, query by query
    (``doc["comparison"]``).
    With `calibration` (a labelled set, :mod:`rag_eval.calibration`), the judge's agreement
    with human faithfulness labels goes to ``doc["judge_calibration"]``.
    """
    if out:
        check_writable(out, "rag-report", force)
    from ragas.embeddings import HuggingFaceEmbeddings
    from ragas.metrics import IDBasedContextPrecision, IDBasedContextRecall
    from ragas.metrics.collections import AnswerCorrectness, AnswerRelevancy, Faithfulness, RougeScore, \
        SemanticSimilarity

    from honed.retriever.device import cpu_name
    from honed.retriever.llm.generator import describe_llm, make_llm
    from honed.retriever.models import resolve_model

    from .beir_eval import subsample_queries
    from .reference import reference_answer, reference_decision

    if n is not None and n < 1:
        raise HonedError(f"--n must be ≥ 1, got {n}")
    if not systems:
        raise HonedError("no --system to evaluate")
    judged = not (isinstance(judge, str) and judge.lower() == "none")
    if not judged and calibration is not None:
        raise HonedError("--calibration checks the judge against human labels: it needs a --judge, not none")
    ds = subsample_queries(load_beir(data, "test"), n)
    if calibration is not None:   # a bad calibration file fails now, not after the answers
        from .calibration import read_calibration

        cal_items = read_calibration(calibration, calibration_n)
    where = ds.path / "queries.jsonl"
    refs = {q: reference_answer(ds.query_metadata.get(q)) for q in ds.queries}
    decisions = {q: reference_decision(ds.query_metadata.get(q), f"{where}: query {q}") for q in ds.queries}
    cache = JsonCache(cache_path)
    gen = make_llm(llm, max_tokens=ANSWER_MAX_TOKENS, cache=cache)
    emb = HuggingFaceEmbeddings(model=str(resolve_model(embed_model)))
    jd, with_judge = None, dict.fromkeys(("faith", "relevancy", "correctness"))
    if judged:
        jd = make_judge(judge, cache)
        with_judge = dict(faith=Faithfulness(llm=jd), relevancy=AnswerRelevancy(llm=jd, embeddings=emb, strictness=1),
                          # factuality only: the similarity half is reported on its own as semantic_similarity
                          correctness=AnswerCorrectness(llm=jd, weights=[1.0, 0.0]))
    scorers = Scorers(**with_judge, similarity=SemanticSimilarity(embeddings=emb), rouge=RougeScore(rouge_type="rougeL"),
                      precision=IDBasedContextPrecision(), recall=IDBasedContextRecall())

    doc = {"schema": "honed.rag-report/2", "kind": "rag", "dataset": str(data), "n": len(ds.queries), "top_k": top_k,
           "llm": describe_llm(gen), "judge": judge if isinstance(judge, str) else type(judge).__name__,
           "embedder": embed_model, "baseline": next(iter(systems)),
           "with_reference": sum(1 for r in refs.values() if r), "with_decision": sum(1 for d in decisions.values() if d),
           "systems": {}, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": cpu_name(), "llama_cpp": local_llm_build(gen, jd)}
    for name, model in systems.items():
        answer_fn = rag_pipeline(ds, model, Path(index_dir) / f"{Path(data).resolve().name}-test-{name}", gen, top_k)
        samples, t0 = [], time.perf_counter()
        for qid in sample_progress(list(ds.queries), f"RAG {name}"):
            s = run_sample(answer_fn, scorers, qid, ds.queries[qid], ds.qrels[qid], refs[qid], decisions[qid])
            samples.append(s)
        secs = time.perf_counter() - t0
        t_sanity = time.perf_counter()
        sanity = judge_sanity(scorers.faith, samples, sanity_pairs) if judged else dict(NO_JUDGE_SANITY)
        sanity["seconds"] = round(time.perf_counter() - t_sanity, 2)
        for s in samples:   # kept: the answer-labelling view shows them (judge calibration)
            s["contexts"] = s.pop("_contexts")
        names = [m for m in JUDGED + UNJUDGED if any(m in s for s in samples)]
        doc["systems"][name] = {
            "model": model, "samples": samples, "seconds_per_sample": round(secs / max(len(samples), 1), 2),
            # where a sample's time goes: the answer, the judge's calls, the judge-free metrics (sanity check not in)
            "seconds_per_sample_split": {k: round(float(np.mean([x["seconds"][k] for x in samples])), 2)
                                         for k in ("answer", "judge", "unjudged")},
            "metrics": {m: nanmean(s.get(m) for s in samples) for m in names},
            "nan_rate": {m: round(sum(1 for s in samples if m in s and math.isnan(s[m]))
                                  / max(1, sum(1 for s in samples if m in s)), 4) for m in names},
            "judge_sanity": sanity,
        }
    if calibration is not None:
        from .calibration import judge_agreement

        t0 = time.perf_counter()
        cal = judge_agreement(scorers.faith, cal_items,
                              progress=lambda xs: sample_progress(xs, "judge calibration"))
        doc["judge_calibration"] = {"path": str(calibration), **cal, "seconds": round(time.perf_counter() - t0, 1)}
    doc["cache"] = {"path": str(cache.path), "hits": cache.hits, "misses": cache.misses}
    if getattr(jd, "seconds", None):
        doc["judge_seconds"] = {k: round(v, 1) for k, v in jd.seconds.items()}
    doc["judge_trustworthy"] = all(v["judge_sanity"]["accuracy"] is not None
                                   and v["judge_sanity"]["accuracy"] >= JUDGE_TRUST_MIN for v in doc["systems"].values())
    doc["comparison"] = compare_systems(doc)
    doc["constant_metrics"] = constant_metrics(doc)
    if out:
        from .rag_report import write_rag_report

        write_rag_report(doc, out, force)
    return doc


# what a judge-free evaluation reports where the judge's sanity check would be
NO_JUDGE_SANITY = {"pairs": 0, "accuracy": None, "trustworthy": False, "details": [], "seconds": 0.0}


@dataclass
class Scorers:
    """The ragas metric objects one evaluation scores every sample with (the judged three None without a judge)."""

    faith: object | None
    relevancy: object | None
    correctness: object | None
    similarity: object
    rouge: object
    precision: object
    recall: object


def rag_pipeline(ds, model: str, index_path: Path, llm, top_k: int):
    """``query → (answer, contexts, context ids)``: HonedRetriever + RetrieverQueryEngine, prompt by request kind."""
    from llama_index.core import PromptTemplate
    from llama_index.core.query_engine import RetrieverQueryEngine

    from honed.retriever.honed_retriever import HonedRetriever
    from honed.retriever.prompts import TEMPLATES, request_kind

    from .beir_eval import cached_index

    index, enc = cached_index(ds, model, index_path)
    r = HonedRetriever(index, enc, similarity_top_k=top_k)
    engines = {kind: RetrieverQueryEngine.from_args(r, llm=llm, text_qa_template=PromptTemplate(t))
               for kind, t in TEMPLATES.items()}

    def answer(query: str):
        resp = engines[request_kind(query)].query(query)
        return (str(resp).strip() or "(no answer)", [x.node.get_content() for x in resp.source_nodes],
                [x.node.node_id for x in resp.source_nodes])

    return answer


def run_sample(answer_fn, sc: Scorers, qid: str, query: str, qrels: dict[str, int], reference: str | None,
               decision: str | None) -> dict:
    """Answer one query and score it: judged metrics, reference metrics, context ids; timings split."""
    from ragas.dataset_schema import SingleTurnSample

    from honed.retriever.prompts import request_kind

    from .reference import answer_decision

    t_answer = time.perf_counter()
    answer, ctx, ids = answer_fn(query)
    t_judge = time.perf_counter()
    s = {"query_id": qid, "query": query, "kind": request_kind(query), "answer": answer, "context_ids": ids,
         "errors": {}}
    judged = {"faithfulness": (sc.faith, dict(user_input=query, response=answer, retrieved_contexts=ctx)),
              "answer_relevancy": (sc.relevancy, dict(user_input=query, response=answer))}
    if reference:
        s["reference"] = reference
        judged["answer_correctness"] = (sc.correctness, dict(user_input=query, response=answer, reference=reference))
    judged = {m: (scorer.ascore, args) for m, (scorer, args) in judged.items() if scorer is not None}
    for metric, (fn, args) in judged.items():
        s[metric], err = score(fn, **args)
        if err:
            s["errors"][metric] = err
    t_unjudged = time.perf_counter()
    if reference:
        s["semantic_similarity"], _ = score(sc.similarity.ascore, reference=reference, response=answer)
        s["rouge_l"], _ = score(sc.rouge.ascore, reference=reference, response=answer)
    if decision:
        s["decision"], s["answer_decision"] = decision, answer_decision(answer)
        s["decision_accuracy"] = float(s["answer_decision"] == decision)
    sample = SingleTurnSample(retrieved_context_ids=ids, reference_context_ids=[d for d, g in qrels.items() if g > 0])
    s["context_precision_ids"], _ = score(sc.precision.single_turn_ascore, sample)
    s["context_recall_ids"], _ = score(sc.recall.single_turn_ascore, sample)
    t_end = time.perf_counter()
    s["seconds"] = {"answer": round(t_judge - t_answer, 2), "judge": round(t_unjudged - t_judge, 2),
                    "unjudged": round(t_end - t_unjudged, 2)}
    s["_contexts"] = ctx
    return s


def constant_metrics(doc: dict, min_samples: int = 5) -> list[str]:
    """Metrics with one value for every sample of every system: they cannot tell answers apart.

    The packaged 0.5B judge put every statement of every answer in "true positive", so answer
    correctness read 1.0 for right and wrong answers alike; a report says so instead of
    presenting the 1.0 as a score.
    """
    out = []
    for m in {m for s in doc["systems"].values() for m in s["metrics"]}:
        vals = [round(x[m], 6) for s in doc["systems"].values() for x in s["samples"]
                if m in x and not math.isnan(x[m])]
        if len(vals) >= min_samples and len(set(vals)) == 1:
            out.append(m)
    return sorted(out)


def compare_systems(doc: dict) -> dict:
    """Every system against the baseline, per query: deltas, wins/ties/losses, Wilcoxon p, per metric.

    A query whose metric is NaN for either system is left out of that metric's test (``n`` says how many remain).
    """
    from .significance import paired_test

    base = doc["baseline"]
    per = {name: {s["query_id"]: s for s in sd["samples"]} for name, sd in doc["systems"].items()}
    out = {}
    for name in doc["systems"]:
        if name == base:
            continue
        tests, deltas = {}, {}
        for m in doc["systems"][name]["metrics"]:
            a = {q: s[m] for q, s in per[base].items() if m in s and not math.isnan(s[m])}
            b = {q: s[m] for q, s in per[name].items() if m in s and not math.isnan(s[m])}
            if set(a) & set(b):
                tests[m] = paired_test(a, b, metric=m).to_dict()
                deltas[m] = {q: round(b[q] - a[q], 4) for q in sorted(set(a) & set(b))}
        out[name] = {"baseline": base, "tests": tests, "per_query_delta": deltas}
    return out


def sample_progress(items: list, description: str):
    """Iterate with a per-sample progress bar and ETA; outside a terminal, one line per sample (logs, CI)."""
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    if sys.stderr.isatty():
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("ETA"), TimeRemainingColumn(), transient=False) as bar:
            yield from bar.track(items, description=description)
        return
    t0 = time.perf_counter()
    for i, item in enumerate(items, 1):
        yield item
        spent = time.perf_counter() - t0
        print(f"{description}: {i}/{len(items)} samples, {spent / i:.1f} s/sample, "
              f"ETA {spent / i * (len(items) - i):.0f} s", file=sys.stderr, flush=True)


def judge_sanity(faith, samples: list[dict], pairs: int) -> dict:
    """How often the judge scores an answer higher against its own contexts than against another query's."""
    # an answer needs its own faithfulness score; the contexts swapped in may come from any other sample
    scored = [i for i, s in enumerate(samples) if not math.isnan(s["faithfulness"])][:pairs]
    wins, ties, details = 0, 0, []
    for i in scored:
        s, other = samples[i], samples[(i + 1) % len(samples)]
        if other["query_id"] == s["query_id"]:
            break
        swapped, _ = score(faith.ascore, user_input=s["query"], response=s["answer"],
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

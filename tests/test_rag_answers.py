"""Answers a user can trust the evaluation of: prompts by request kind, any generator, reference metrics, paired test.

Fast tests check the parts that need no LLM. Slow ones (``make test-full``) run the real
packaged Qwen GGUF: greedy answers to real questions and statements, the llama.cpp
OpenAI-compatible server as ``--llm``, and the paired comparison of two real retrievers
on the shipped cuad-qa set.
"""
from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from honed.rag_eval.reference import answer_decision, reference_answer, reference_decision
from honed.retriever.data.beir import load_beir, read_corpus
from honed.retriever.errors import DataError, HonedError
from honed.retriever.prompts import TEMPLATES, request_kind

REPO = Path(__file__).resolve().parents[1]
CUAD_QA = REPO / "datasets" / "cuad-qa"
REQUESTS = [json.loads(line) for line in (REPO / "tests" / "fixtures" / "requests.jsonl").read_text().splitlines()]


def test_request_kinds_of_real_requests():
    assert {r["text"]: request_kind(r["text"]) for r in REQUESTS} == {r["text"]: r["kind"] for r in REQUESTS}
    # every shipped question is a question, never a statement or a search phrase
    ds = load_beir(CUAD_QA, "test")
    kinds = {q: request_kind(t) for q, t in ds.queries.items()}
    assert set(kinds.values()) <= {"yes-no", "question"}
    assert {q for q, k in kinds.items() if k == "yes-no"} == {q for q, m in ds.query_metadata.items() if "decision" in m}


def test_each_kind_has_its_own_prompt_and_only_yes_no_asks_for_yes_or_no():
    assert set(TEMPLATES) == {"yes-no", "question", "statement", "topic"}
    for kind, t in TEMPLATES.items():
        assert "{context_str}" in t and "{query_str}" in t
        assert ("Yes or No" in t) == (kind == "yes-no"), kind
        assert ("support" in t) == (kind == "statement"), kind


def test_shipped_qa_set_carries_references_and_its_corpus_is_rebuilt_identically(tmp_path):
    ds = load_beir(CUAD_QA, "test")
    assert len(ds.queries) == 29 and all(reference_answer(ds.query_metadata[q]) for q in ds.queries)
    assert sum(1 for q in ds.queries if reference_decision(ds.query_metadata[q])) == 9
    # the corpus is every passage of the judged contracts, byte-identical to cuad-clauses' own
    source = read_corpus(REPO / "datasets" / "cuad-clauses" / "test" / "corpus.jsonl")
    assert all(ds.corpus[d] == source[d] for d in ds.corpus)
    judged = {source[d]["metadata"]["contract"] for rel in ds.qrels.values() for d in rel}
    assert set(ds.corpus) == {d for d, doc in source.items() if doc["metadata"]["contract"] in judged}


def test_reference_fields_and_decisions():
    assert reference_answer({"long_answer": " A. "}) == "A."
    assert reference_answer({"answer": "", "reference": "R"}) == "R"
    assert reference_answer(None) is None and reference_decision({}) is None
    assert reference_decision({"final_decision": "Maybe"}) == "maybe"
    with pytest.raises(DataError, match=r"q\.jsonl: query 7: 'decision' must be one of yes, no, maybe"):
        reference_decision({"decision": "perhaps"}, "q.jsonl: query 7")
    assert answer_decision("Yes, it is capped.") == "yes" and answer_decision("**No** — never.") == "no"
    assert answer_decision("Yesterday the parties met.") is None and answer_decision("") is None


def test_query_metadata_must_be_an_object(tmp_path):
    d = tmp_path / "ds"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (d / "queries.jsonl").write_text('{"_id": "q1", "text": "y?"}\n{"_id": "q2", "text": "z?", "metadata": "yes"}\n')
    (d / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    with pytest.raises(DataError, match=r"queries\.jsonl:2: query \"metadata\" must be a JSON object"):
        load_beir(d, "test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_openai_server_is_one_line_error():
    from honed.retriever.llm.generator import make_llm

    llm = make_llm(f"http://127.0.0.1:{_free_port()}/v1#qwen", max_tokens=8)
    with pytest.raises(HonedError, match=r"^--llm http://127\.0\.0\.1:\d+/v1#qwen: APIConnectionError"):
        llm.complete("hi")


# ---- slow: the real local LLM ---------------------------------------------------------------------------------

def _passage(r: dict) -> str:
    root = CUAD_QA if r["source"] == "cuad-qa" else REPO / "tests" / "fixtures" / "scifact-slice"
    doc = read_corpus(root / "corpus.jsonl")[r["doc"]]
    return f"{doc.get('title', '')}\n{doc['text']}".strip()


@pytest.mark.slow
@pytest.mark.llm
def test_real_model_answers_each_request_in_its_own_frame():
    """The 0.5B generator framed every question as a claim ("The passage does not support the claim that …").

    Greedy decoding, so the answers are fixed for this model and prompt: yes/no questions open
    with Yes or No, other questions with neither, and nothing but a statement is answered in
    terms of a claim. Whether the Yes is right is not asserted: this 0.5B model answers Yes to
    nearly every yes/no question (decision accuracy, a RAG metric, is where that shows).
    """
    pytest.importorskip("llama_cpp")
    from llama_index.core import PromptTemplate

    from honed.retriever.llm.generator import make_llm
    from honed.retriever.prompts import answer_template

    llm = make_llm("qwen", max_tokens=64)
    answers = {r["text"]: llm.complete(PromptTemplate(answer_template(r["text"])).format(
        context_str=_passage(r), query_str=r["text"])).text for r in REQUESTS}
    for r in REQUESTS:
        a = answers[r["text"]]
        assert a.strip(), r["text"]
        if r["kind"] != "statement":
            assert "claim" not in a.lower() and "the statement" not in a.lower(), (r["text"], a)
        if r["kind"] == "yes-no":
            assert answer_decision(a) in ("yes", "no"), (r["text"], a)
        elif r["kind"] == "question":
            assert answer_decision(a) is None, (r["text"], a)
        elif r["kind"] == "statement":
            assert "support" in a.lower() or "contradict" in a.lower(), (r["text"], a)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """llama-cpp-python's own OpenAI-compatible server with the packaged GGUF, on 127.0.0.1."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server] (`make test` installs it)")
    import urllib.request

    from honed.retriever.models import resolve_model

    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_model("qwen")),
                                 "--model_alias", "qwen", "--host", "127.0.0.1", "--port", str(port),
                                 "--n_ctx", "4096", "--n_threads", "2"], stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("llama.cpp server did not start in 120 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.llm
def test_llm_url_generates_through_an_openai_compatible_server(llama_server, tmp_path):
    """``--llm URL#model``: answers come from the server (streaming too), and the report names it. Judge-free
    (``--judge none``): the real judge is scored, and calibrated, in the paired comparison below."""
    from honed.retriever.llm.generator import make_llm

    llm = make_llm(f"{llama_server}#qwen", max_tokens=24)
    text = llm.complete("Reply with one word: the colour of the sky on a clear day.").text
    streamed = "".join(c.delta for c in llm.stream_complete("Reply with one word: the colour of grass."))
    assert text.strip() and streamed.strip()

    import os

    out = tmp_path / "report"
    qa = _qa_slice(tmp_path / "qa", ["dgt-law"])      # one contract's passages: the answer is the point here
    run = subprocess.run([sys.executable, "-m", "honed.app.cli", "eval", "rag", "--data", str(qa),
                          "--system", "base=minilm", "--n", "1", "--llm", f"{llama_server}#qwen", "--out", str(out),
                          "--judge", "none", "--index-dir", str(tmp_path / "idx")],
                         cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "HONED_CACHE_DIR": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "report:" in run.stdout and "no judge (--judge none)" in run.stdout, run.stdout
    doc = json.loads((out / "report.json").read_text())
    assert doc["llm"] == f"{llama_server}#qwen" and doc["judge"] == "none" and "judge_calibration" not in doc
    s = doc["systems"]["base"]["samples"][0]
    assert s["answer"] and s["answer"] != "(no answer)" and s["seconds"]["answer"] > 0
    assert 0.0 < s["semantic_similarity"] <= 1.0 and "faithfulness" not in s
    assert f"generator `{llama_server}#qwen`" in (out / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.llm
def test_synthetic_queries_from_an_openai_compatible_server(llama_server, minilm):
    """``honed data synth|adapt --llm URL#model``: the query writer is the server, its JSON parses."""
    from honed.retriever.data import load_beir
    from honed.retriever.finetune.synthetic import generate_pairs

    corpus = load_beir(REPO / "tests" / "fixtures" / "scifact-slice", "test").corpus
    docs = {d: corpus[d]["text"] for d in sorted(corpus)[:3]}
    pairs, stats = generate_pairs(docs, per_doc=2, llm=f"{llama_server}#qwen", encoder=minilm, show_progress=False)
    assert stats["docs"] == 3 and stats["unparseable"] == 0 and stats["candidates"] >= 3, stats
    assert all(p.source == "synthetic" and p.positive_id in docs for p in pairs)


def _qa_slice(root: Path, keep_q: list[str]) -> Path:
    """The shipped QA set cut to `keep_q` and the passages of their contracts (metadata kept)."""
    from honed.retriever.data import write_beir

    ds = load_beir(CUAD_QA, "test")
    contracts = {ds.corpus[d]["metadata"]["contract"] for q in keep_q for d in ds.qrels[q]}
    corpus = {d: doc for d, doc in ds.corpus.items() if doc["metadata"]["contract"] in contracts}
    write_beir(root, corpus, {q: ds.queries[q] for q in keep_q}, {"test": {q: ds.qrels[q] for q in keep_q}})
    rows = [json.loads(line) for line in (root / "queries.jsonl").read_text().splitlines()]
    (root / "queries.jsonl").write_text("".join(
        json.dumps({**r, "metadata": ds.query_metadata[r["_id"]]}) + "\n" for r in rows))
    return root


@pytest.mark.slow
@pytest.mark.llm
def test_paired_comparison_of_two_real_retrievers_on_the_shipped_qa_set(tmp_path):
    """Two retrievers (MiniLM, mpnet) through the same questions: every ragas metric from the real local judge,
    per-metric paired tests, plots, decisions, the judge's agreement with (two of) the shipped human labels, and a
    rerun answered from the LLM cache alone."""
    pytest.importorskip("llama_cpp")
    from honed.rag_eval.rag import METRICS, evaluate_rag

    # two contracts' passages, one question of each kind (open, yes/no) and one passage of context per answer
    # (top_k=1: the judge reads every context in each of its calls) keep the LLM's work short
    root = _qa_slice(tmp_path / "qa", ["dgt-law", "tripath-compete"])
    kw = dict(n=2, top_k=1, index_dir=tmp_path / "idx", cache_path=tmp_path / "cache.sqlite", sanity_pairs=1,
              calibration=REPO / "datasets" / "judge-calibration", calibration_n=2)   # the CLI's default set
    doc = evaluate_rag(root, {"minilm": "minilm", "mpnet": "mpnet"}, out=tmp_path / "report", **kw)
    cal = doc["judge_calibration"]
    assert cal["n"] == 2 and sum(cal["confusion"].values()) == 2 and 0.0 <= cal["accuracy"] <= 1.0
    assert [r["human"] for r in cal["items"]] == [1, 0]     # the first n of the balanced set: one of each label
    assert all(r["judge"] is None or r["judge"] == int(r["judge_score"] >= 0.5) for r in cal["items"])
    assert doc["machine"] and "AVX2 = 1" in doc["llama_cpp"]["system_info"]   # the local judge's build, recorded
    assert doc["baseline"] == "minilm" and doc["with_reference"] == 2 and doc["with_decision"] == 1
    for name in ("minilm", "mpnet"):
        s = doc["systems"][name]
        assert len(s["samples"]) == 2 and all(x["answer"] for x in s["samples"])
        for metric in METRICS:
            assert all(math.isnan(x[metric]) or 0.0 <= x[metric] <= 1.0 for x in s["samples"]), metric
        assert s["nan_rate"]["faithfulness"] < 1.0, "the schema-constrained judge must produce scores"
        assert s["metrics"]["context_recall_ids"] is not None
        assert s["judge_sanity"]["pairs"] == 1, [(x["answer"], x["faithfulness"], x["errors"]) for x in s["samples"]]
        m = s["metrics"]
        for key in ("semantic_similarity", "rouge_l", "answer_correctness", "decision_accuracy", "faithfulness"):
            assert key in m, (name, key)
        assert 0.0 < m["semantic_similarity"] <= 1.0 and 0.0 < m["rouge_l"] <= 1.0
        assert set(doc["systems"][name]["seconds_per_sample_split"]) == {"answer", "judge", "unjudged"}
        for s in doc["systems"][name]["samples"]:
            assert s["kind"] == request_kind(s["query"])
            if "decision" in s:
                assert s["decision_accuracy"] == float(s["answer_decision"] == s["decision"])
    tests = doc["comparison"]["mpnet"]["tests"]
    for key in ("semantic_similarity", "rouge_l", "faithfulness", "answer_relevancy", "context_recall_ids"):
        t = tests[key]
        assert 0.0 <= t["p_value"] <= 1.0 and t["wins"] + t["ties"] + t["losses"] == t["n"] <= 2
        per_q = doc["comparison"]["mpnet"]["per_query_delta"][key]
        assert math.isclose(sum(per_q.values()) / len(per_q), t["delta"], abs_tol=1e-3)
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Paired comparison against `minilm`" in md and "| mpnet vs minilm |" in md and "## Judge calibration" in md
    assert (tmp_path / "report" / "rag-paired.png").stat().st_size > 0
    rep = json.loads((tmp_path / "report" / "report.json").read_text())
    assert rep["kind"] == "rag" and (tmp_path / "report" / "rag-metrics.png").exists()
    assert doc["cache"]["misses"] > 0
    again = evaluate_rag(root, {"minilm": "minilm", "mpnet": "mpnet"}, **kw)     # everything from the cache
    assert again["cache"]["misses"] == 0
    for name in ("minilm", "mpnet"):
        assert [x["answer"] for x in again["systems"][name]["samples"]] == \
            [x["answer"] for x in doc["systems"][name]["samples"]]


def test_judge_answer_with_a_raw_newline_in_a_string_is_parsed_not_nan(tmp_path):
    """llama-cpp-python's JSON grammar lets a raw newline into a string; strict JSON parsing made that a NaN.

    The answer comes from the judge's real cache (what a previous run stored), so no model runs here.
    """
    pytest.importorskip("llama_cpp")
    from ragas.metrics.collections.faithfulness.util import NLIStatementOutput

    from honed.rag_eval.cache import JsonCache
    from honed.rag_eval.judge import LocalJudge, constrain_schema

    cache = JsonCache(tmp_path / "c.sqlite")
    judge = LocalJudge(cache=cache)
    schema = constrain_schema(NLIStatementOutput.model_json_schema())
    raw = '{"statements": [{"statement": "Yes, Martin is\nthe exclusive provider", "reason": "r", "verdict": 1}]}'
    cache.put(("judge", "qwen", "the prompt", schema), raw)
    out = judge.generate("the prompt", NLIStatementOutput)
    assert out.statements[0].statement == "Yes, Martin is\nthe exclusive provider" and judge.calls == 0

"""ragas through the real local LLM (Qwen GGUF): NaN accounting, the judge schema, the sampler (the metrics on real
samples and the judge's calibration through `honed eval rag`: test_rag_answers)."""
from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by `make test`; see Makefile")

from ragas.llms.base import InstructorBaseRagasLLM  # noqa: E402

from honed.rag_eval.rag import evaluate_rag  # noqa: E402
from honed.retriever.data import write_beir  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.llm]   # the local LLM generates and judges: make test-full


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory, scifact_slice):
    root = tmp_path_factory.mktemp("rag") / "sf"
    write_beir(root, scifact_slice.corpus, scifact_slice.queries, {"test": scifact_slice.qrels})
    return root


class JunkJudge(InstructorBaseRagasLLM):
    """A judge that answers with junk: a fake on purpose, to test NaN accounting (a real model
    cannot be made to misbehave on demand)."""

    def generate(self, prompt, response_model):
        return response_model.model_validate_json("certainly! here is my verdict")

    async def agenerate(self, prompt, response_model):
        return self.generate(prompt, response_model)


def test_junk_judge_is_counted_as_nan_not_a_crash(slice_dir, tmp_path):
    """Also: the generator and the judge may be objects (any LlamaIndex LLM; any ragas judge)."""
    from honed.retriever.llm.generator import LocalLLM

    doc = evaluate_rag(slice_dir, {"base": "minilm"}, n=1, llm=LocalLLM("qwen", max_tokens=64), judge=JunkJudge(),
                       index_dir=tmp_path / "idx", cache_path=tmp_path / "cache.sqlite", sanity_pairs=1)
    assert doc["llm"] == "qwen" and doc["judge"] == "JunkJudge"
    s = doc["systems"]["base"]
    assert s["nan_rate"]["faithfulness"] == 1.0 and s["nan_rate"]["answer_relevancy"] == 1.0
    assert "ValidationError" in s["samples"][0]["errors"]["faithfulness"]
    assert not doc["judge_trustworthy"]


def test_local_judge_schema_keeps_noncommittal_answers_scorable(tmp_path):
    """The 0.5B judge returned no statements for non-committal answers (faithfulness NaN); the
    decoding schema now requires one, and caps the verdict reasons that made judging slow."""
    import asyncio

    from ragas.metrics.collections import Faithfulness

    from honed.rag_eval.cache import JsonCache
    from honed.rag_eval.judge import LocalJudge

    judge = LocalJudge(cache=JsonCache(tmp_path / "c.sqlite"))
    faith = Faithfulness(llm=judge)
    claim = "Rapamycin decreases the concentration of triacylglycerols in fruit flies."
    answer = ("The passage does not support the request. The passage does not provide any information "
              "about how rapamycin decreases the concentration of triacylglycerols.")
    statements = asyncio.run(faith._create_statements(claim, answer))
    assert len(statements) >= 1 and all(s.strip() for s in statements)
    verdicts = asyncio.run(faith._create_verdicts(statements, "Rapamycin extends lifespan in Drosophila."))
    assert len(verdicts.statements) >= 1
    assert all(len(v.reason) <= 160 and v.verdict in (0, 1) for v in verdicts.statements)


@pytest.mark.isolated   # llama.cpp in the test process: a native crash fails this test only
def test_greedy_grammar_sampler_gives_the_full_vocabulary_result():
    """The argmax-first grammar check decodes the same JSON as llama-cpp-python's own sampler."""
    from llama_cpp import Llama
    from ragas.metrics.collections.faithfulness.util import NLIStatementOutput

    from honed.rag_eval.judge import constrain_schema
    from honed.retriever.llm.llama import GreedyGrammarSampler, load_llama
    from honed.retriever.models import resolve_model

    fast = load_llama("qwen", slot="test-fast")
    reference = Llama(model_path=str(resolve_model("qwen")), n_ctx=1024, n_threads=2, verbose=False, seed=0)
    schema = constrain_schema(NLIStatementOutput.model_json_schema())
    msgs = [{"role": "user", "content": "Context: water boils at 100 C at sea level.\n"
                                        "Judge: 'water boils at 100 C', 'ice is hot'."}]
    try:
        outs = [llm.create_chat_completion(messages=msgs, temperature=0.0, max_tokens=160,
                                           response_format={"type": "json_object", "schema": schema})
                ["choices"][0]["message"]["content"] for llm in (reference, fast)]
    finally:
        reference.close()
    assert isinstance(fast._sampler, GreedyGrammarSampler)
    assert outs[0] == outs[1]
    assert NLIStatementOutput.model_validate_json(outs[1]).statements



@pytest.mark.isolated
def test_extra_buffers_off_loads_without_them_and_answers_the_same():
    """The AMX guard's switch really reaches llama.cpp (use_extra_bufts), and costs no correctness."""
    from honed.retriever.llm.llama import build_has_amx, llama_build_info, load_llama

    msgs = [{"role": "user", "content": "Name the capital of France in one word."}]
    outs = {}
    for extra in (True, False):
        llama = load_llama("qwen", n_ctx=512, slot=f"bufts-{extra}", extra_buffers=extra)
        assert llama.model_params.use_extra_bufts is extra
        outs[extra] = llama.create_chat_completion(messages=msgs, temperature=0.0, max_tokens=8)[
            "choices"][0]["message"]["content"]
    assert outs[True] == outs[False] and "Paris" in outs[True]
    info = llama_build_info()
    assert not build_has_amx() and not info["amx_compiled"]       # the Makefile's portable build has no AMX code
    assert "AVX2 = 1" in info["system_info"] and info["cpu"]


def test_without_a_judge_only_the_judge_free_metrics_are_scored(slice_dir, tmp_path):
    from honed.retriever.errors import HonedError
    from honed.retriever.llm.generator import LocalLLM

    with pytest.raises(HonedError, match="--calibration .* needs a --judge"):
        evaluate_rag(slice_dir, {"base": "minilm"}, n=1, judge="none", calibration=tmp_path / "labels")
    doc = evaluate_rag(slice_dir, {"base": "minilm"}, n=1, llm=LocalLLM("qwen", max_tokens=64), judge="none",
                       out=tmp_path / "rep", index_dir=tmp_path / "idx", cache_path=tmp_path / "cache.sqlite")
    s = doc["systems"]["base"]
    assert doc["judge"] == "none" and s["samples"][0]["answer"] and not s["samples"][0]["errors"]
    assert set(s["metrics"]) == {"context_precision_ids", "context_recall_ids"}, s["metrics"]
    assert s["judge_sanity"]["pairs"] == 0 and s["seconds_per_sample_split"]["judge"] < 1
    assert "No judge" in (tmp_path / "rep" / "report.md").read_text()

"""A real (tiny) fine-tune of the packaged MiniLM on a real SciFact slice, end to end."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from honed.retriever.data import load_beir
from honed.retriever.errors import HonedError
from honed.retriever.finetune import Pair, write_pairs
from honed.retriever.finetune import FinetuneConfig, finetune

from conftest import TINY, TUNED_RUN

pytestmark = pytest.mark.slow   # real fine-tuning runs: make test-full


def test_end_to_end_run_is_a_model_folder_tracked_in_mlflow(tiny_data, tuned_run, tmp_path):
    """The session's run (conftest's TUNED_RUN: a roomy time budget): a model folder, its plan, MLflow, an index,
    an evaluation."""
    import mlflow
    from sentence_transformers import SentenceTransformer

    out, cfg = tuned_run, TUNED_RUN
    man = json.loads((out / "honed.json").read_text())
    assert man["status"] in ("ok", "failed") and bool(man["reason"]) == (man["status"] == "failed")
    assert man["data"]["train_examples"] > man["data"]["train_pairs"] * 0.5
    assert man["eval"]["base_dev_ndcg@10"] > 0
    # its held-out dev split compared with the folder's test split (the warning's numbers: test_audit.py)
    vs = man["data"]["dev_vs_test"]
    assert (vs["dev_queries"], vs["test_queries"]) == (man["data"]["dev_queries"], 20) and "unlike" in vs

    # the budget's plan: one epoch fits, so every example is kept and the plan's steps are the epoch's
    b = man["budget"]
    assert b["budget_s"] == 1800 and 0 < b["spent_before_training_s"] < 1800 and b["step_s_estimate"] > 0
    assert b["examples"] == man["data"]["train_examples"] and not b["stopped_at_deadline"]
    assert man["timing"]["steps"] == b["max_steps"] == -(-b["examples"] // cfg["batch_size"])
    assert b["eval_steps"] == max(1, b["max_steps"] // 5) and b["step_s_measured"] > 0
    assert man["data"]["mining"]["random_fallback_rate"] < 0.10
    from honed.retriever.device import precision, resolve_device
    assert man["timing"]["device"] == resolve_device() and man["timing"]["precision"] == precision(resolve_device())
    assert (out / "training.png").read_bytes()[:4] == b"\x89PNG"
    m = SentenceTransformer(str(out), device="cpu")
    assert m.encode(["x"]).shape == (1, 384)
    assert not (out.parent / ".tiny.work").exists(), "work folder is removed after success"

    # MLflow: query the run back from the SQLite store
    mlflow.set_tracking_uri(f"sqlite:///{out.parent / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["honed"], output_format="list")
    run = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags and r.data.tags.get("honed.kind") != "eval")
    assert run.data.params["honed.loss"] == "mnrl"
    assert run.data.params["honed.data_fingerprint"] == man["data"]["fingerprint"]
    assert run.data.metrics["final_dev_ndcg_at_10"] == pytest.approx(man["eval"]["dev_ndcg@10"])
    client = mlflow.tracking.MlflowClient()
    assert len(client.get_metric_history(run.info.run_id, "loss")) >= 2          # per-step loss
    assert len(client.get_metric_history(run.info.run_id, "eval_dev_cosine_ndcg_10")) >= 2  # MLflow maps @ to _
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/honed.json", "model/README.md", "model/model.safetensors"} <= arts

    # the run folder drops straight into the index builder and the retriever
    from honed.retriever import HonedRetriever, build_index

    ds = load_beir(tiny_data, "test")
    build_index(str(out), ds.corpus, tmp_path / "idx", show_progress=False)
    assert len(HonedRetriever.from_dir(tmp_path / "idx", similarity_top_k=3).retrieve("cancer")) == 3
    # the run keeps its held-out dev split as a BEIR folder (for choices made after training, such as the fusion)
    dev = load_beir(out / "dev-split", "dev")
    assert len(dev.queries) == man["data"]["dev_queries"] and len(dev.corpus) == man["data"]["dev_corpus"]
    trained = set(load_beir(tiny_data, "train").queries.values()) - set(dev.queries.values())
    assert dev.queries and all(d in dev.corpus for rel in dev.qrels.values() for d in rel) and trained

    # an evaluation of the tuned model is logged as its own MLflow run, linked to the training run
    from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    from honed.rag_eval.report import log_report_to_mlflow, write_beir_report

    res = evaluate_systems([str(tiny_data)], [parse_system(f"tuned={out}")], index_dir=tmp_path / "eval-idx")
    paths = write_beir_report(res, tmp_path / "report")
    eval_id = log_report_to_mlflow(json.loads(paths.json.read_text()), tmp_path / "report", runs_dir=out.parent)
    ev = client.get_run(eval_id)
    assert ev.data.tags["honed.linked_model_runs"] == run.info.run_id
    assert ev.data.tags["mlflow.parentRunId"] == run.info.run_id
    assert "tiny.tuned.NDCG_at_10" in ev.data.metrics


def _scores(enc, query: str, texts: list[str]):
    return enc.encode_documents(texts) @ enc.encode_queries([query])[0]


def test_mined_negatives_respect_the_false_negative_guard(tiny_data, minilm):
    from honed.retriever.data.beir import doc_text
    from honed.retriever.finetune.mining import mine_negatives
    from honed.retriever.finetune.pairs import pairs_from_qrels

    train = load_beir(tiny_data, "train")
    pairs = pairs_from_qrels(train)[:30]
    corpus = {d: doc_text(doc) for d, doc in train.corpus.items()}
    margin = 0.1
    stats: dict = {}
    triples = mine_negatives(pairs, corpus, minilm, num_negatives=2, relative_margin=margin, stats=stats)
    assert len(triples) == 2 * len(pairs) and stats["pairs"] == len(pairs)
    positives = {}
    for p in pairs:
        positives.setdefault(p.query, []).append(p.positive)
    for t in triples:
        assert t.negatives[0] not in positives[t.query]
        median = float(np.median(_scores(minilm, t.query, positives[t.query])))
        assert float(_scores(minilm, t.query, t.negatives)[0]) <= (1 - margin) * median + 1e-4


def test_queries_with_many_positives_still_get_hard_negatives(minilm, tmp_path):
    """cuad-clauses trains with a median of 24 positives per query. Guarded against each pair's own
    positive (sentence-transformers' per-pair relative_margin), the pairs of weak positives find no
    candidate in the top 50 at all; the per-query median guard gives nearly every pair a hard negative."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from honed.retriever.data.beir import doc_text
    from honed.retriever.finetune.mining import mine_negatives
    from honed.retriever.finetune.pairs import pairs_from_qrels

    train = load_beir(Path(__file__).resolve().parents[1] / "datasets" / "cuad-clauses", "train")
    many = sorted((q for q, rel in train.qrels.items() if sum(g > 0 for g in rel.values()) >= 20))[:4]
    pairs = [p for p in pairs_from_qrels(train) if p.query_id in many]
    pos_ids = {p.positive_id for p in pairs}
    others = sorted(d for d in train.corpus if d not in pos_ids)[::8][:50]
    corpus = {d: doc_text(train.corpus[d]) for d in sorted(pos_ids) + others}
    assert len(pairs) >= 80

    per_pair = mine_hard_negatives(Dataset.from_dict({"anchor": [p.query for p in pairs],
                                                      "positive": [p.positive for p in pairs]}),
                                   minilm.model, corpus=list(corpus.values()), range_max=50, relative_margin=0.05,
                                   num_negatives=1, output_format="triplet", verbose=False)
    per_pair_missing = 1 - len(per_pair) / len(pairs)

    stats: dict = {}
    cache = str(tmp_path / "mining-cache")
    triples = mine_negatives(pairs, corpus, minilm, num_negatives=1, relative_margin=0.05, stats=stats,
                             cache_folder=cache)
    assert stats["positives_per_query_median"] >= 20
    assert per_pair_missing > 0.3, per_pair_missing             # the failure this guard fixes is real here
    assert stats["random_fallback_rate"] < 0.10, stats
    positives = {}
    for p in pairs:
        positives.setdefault(p.query, []).append(p.positive)
    negs = {}
    for t in triples:
        assert t.negatives[0] not in positives[t.query]
        negs.setdefault(t.query, set()).add(t.negatives[0])
    # a query's pairs take turns in its pool: not one negative repeated for all of them
    assert all(len(v) > 1 for v in negs.values())
    for q in positives:
        median = float(np.median(_scores(minilm, q, positives[q])))
        assert max(_scores(minilm, q, sorted(negs[q]))) <= 0.95 * median + 1e-4

    # confusable negatives (same embeddings, from the cache): the clause types the base model confuses
    # with the query's come first in each pool, still under the guard
    from honed.retriever.data.concepts import concept_labels

    labels = concept_labels(train)
    concepts = ({train.queries[q]: c for q, c in labels.query.items()},
                {doc_text(train.corpus[d]): cs for d, cs in labels.docs.items()})
    plain = {**stats}
    stats = {}
    confusable = mine_negatives(pairs, corpus, minilm, num_negatives=1, relative_margin=0.05, stats=stats,
                                cache_folder=cache, concepts=concepts)
    c = stats["confusable"]
    assert c["labelled_queries"] == len(labels.query) and c["top_confused"] and c["top_confused"][0]["rate"] > 0
    from honed.retriever.finetune.mining import confusable_stats
    confused = {}
    for row in c["top_confused"]:
        confused.setdefault(row["concept"], {})[row["confused_with"]] = row["rate"]
    share = {name: confusable_stats(t, concepts, confused)["negatives_of_confused_concepts"]
             for name, t in (("hard", triples), ("confusable", confusable))}
    assert share["confusable"] > share["hard"], share
    assert stats["random_fallback_rate"] <= plain["random_fallback_rate"] + 0.01
    for t in confusable:
        assert t.negatives[0] not in positives[t.query]


def test_eval_queries_in_training_data_are_refused(tiny_data, tmp_path):
    test = load_beir(tiny_data, "test")
    q = next(iter(test.queries.values()))
    leaked = tmp_path / "leaked.jsonl"
    write_pairs(leaked, [Pair(q.upper() + "?", "some passage", source="feedback")])
    with pytest.raises(HonedError, match="1 eval \\(dev/test\\) queries also appear in the training pairs"):
        finetune(FinetuneConfig(data=str(tiny_data), pairs=[str(leaked)], out=str(tmp_path / "r"), **TINY))
    assert not (tmp_path / "r").exists() and not (tmp_path / ".r.work").exists()    # a refusal leaves nothing


def test_worse_model_is_marked_failed(tiny_data, tmp_path):
    # a learning rate 1000× too high wrecks the embedder within a few steps
    res = finetune(FinetuneConfig(data=str(tiny_data), out=str(tmp_path / "bad"), lr=0.05, track=False,
                                  num_negatives=0, **{**TINY, "max_steps": 6}))
    assert res.status == "failed" and "below the base model" in res.reason
    assert res.dev_ndcg < res.base_dev_ndcg
    assert json.loads((tmp_path / "bad" / "honed.json").read_text())["status"] == "failed"


def test_resume_after_kill(tiny_data, tmp_path):
    out = tmp_path / "runs" / "resumable"
    work = tmp_path / "runs" / ".resumable.work" / "checkpoints"
    args = [sys.executable, "-m", "honed.app.cli", "finetune", "--data", str(tiny_data), "--out", str(out),
            "--max-steps", "4", "--batch-size", "8", "--eval-steps", "2", "--max-mine-docs", "150",
            "--dev-max-docs", "60", "--patience", "9", "--no-track", "--num-negatives", "0", "--max-seq-length", "128"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).resolve().parents[1])
    deadline = time.time() + 400
    while time.time() < deadline and not (work / "checkpoint-2" / "trainer_state.json").exists():
        time.sleep(0.1)     # a complete checkpoint (its state is written last), two steps before the end
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(work.glob("checkpoint-*")), "no checkpoint written before the kill"
    assert not out.exists()
    res = finetune(FinetuneConfig(data=str(tiny_data), out=str(out), resume=True, track=False, num_negatives=0,
                                  **{**TINY, "max_steps": 4, "patience": 9}))
    assert res.manifest["timing"]["resumed_from"].startswith("checkpoint-")
    assert res.manifest["timing"]["steps"] == 4


def test_merge_weight_is_chosen_on_an_out_of_domain_set(tiny_data, tuned_run, tmp_path):
    """A SciFact-tuned run merged back toward MiniLM, the weight chosen on cuad-qa (contracts)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from honed.retriever.finetune.merge import WEIGHTS, choose_merge_weight, merge_models
    from honed.retriever.models import resolve_model

    run = tuned_run
    ood = Path(__file__).resolve().parents[1] / "datasets" / "cuad-qa"
    assert WEIGHTS[0] == 1.0 and WEIGHTS[-1] == 0.0 and list(WEIGHTS) == sorted(WEIGHTS, reverse=True)
    choice = choose_merge_weight(str(run), "minilm", tiny_data, ood, weights=(0.0, 1.0, 0.5), max_docs=300)
    assert [r["weight"] for r in choice["rows"]] == [1.0, 0.5, 0.0]      # three weights keep the test short
    base_row = next(r for r in choice["rows"] if r["weight"] == 0.0)
    assert base_row["ood"] == choice["base_ood_ndcg@10"]
    chosen = next(r for r in choice["rows"] if r["weight"] == choice["chosen_weight"])
    assert chosen["ood"] >= choice["base_ood_ndcg@10"]
    assert all(r["ood"] < choice["base_ood_ndcg@10"] for r in choice["rows"] if r["weight"] > chosen["weight"])

    out = merge_models(str(run), "minilm", 0.5, tmp_path / "merged", choice=choice)
    assert (out / "merge.png").stat().st_size > 0
    assert json.loads((out / "honed.json").read_text())["merge"]["choice"]["chosen_weight"] == choice["chosen_weight"]
    t, b, m = (SentenceTransformer(str(p), device="cpu").state_dict() for p in (run, resolve_model("minilm"), out))
    for k in t:
        if torch.is_floating_point(t[k]):
            assert torch.allclose(m[k], 0.5 * t[k] + 0.5 * b[k], atol=1e-6), k

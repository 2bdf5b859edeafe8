"""The domain reranker: trained as a product, exported to ONNX, packaged inside an artifact, and served as the
second stage through the retriever, a LlamaIndex postprocessor, the CLI, the HTTP service and `honed eval beir`.

Real parts: `train_reranker` fine-tunes the packaged MiniLM as a cross-encoder (a few steps on the tiny SciFact
set: these tests check the plumbing and the parity of every path with the model's own scores; whether reranking
*helps* is measured by benchmarks/bench_rerank.py on cuad-clauses), a real ONNX export, FAISS, SQLite and a real
`honed serve` process.
"""
from __future__ import annotations

import json
import shutil

import httpx
import numpy as np
import pytest

from honed.retriever.artifact import package_artifact
from honed.retriever.errors import HonedError
from honed.retriever.index import load_index, search
from honed.retriever.reranker import artifact_reranker, load_reranker

from conftest import Server
from test_cli import run

pytestmark = pytest.mark.slow    # a cross-encoder trained and exported once (~1.5 min), shared by the module

TOP_N = 20


def mixed_top(reranker_scores, first_scores, ids, weight, k):
    """The top `k` ids and scores by w · minmax(reranker) + (1 − w) · minmax(first stage), computed here
    without honed's mixing code (weight None: the reranker's scores alone)."""
    ce, fs = np.asarray(reranker_scores, dtype=np.float64), np.asarray(first_scores, dtype=np.float64)
    mix = ce if weight is None else weight * (ce - ce.min()) / np.ptp(ce) + (1 - weight) * (fs - fs.min()) / np.ptp(fs)
    order = np.argsort(-mix, kind="stable")[:k]
    return [ids[i] for i in order], [float(mix[i]) for i in order]


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory, tiny_data):
    """A reranker trained for 6 steps and exported (fp32 + the avx2 int8 model, gated on tiny_data's test split)."""
    from honed.retriever.export.reranker_onnx import export_reranker_onnx
    from honed.retriever.finetune.reranker import train_reranker

    out = tmp_path_factory.mktemp("rr") / "reranker"
    card = train_reranker(str(tiny_data), out, max_steps=6, batch_size=8, max_length=128, num_negatives=1,
                          max_mine_docs=150)
    man = export_reranker_onnx(out, data=str(tiny_data), target_cpu="avx2", max_ndcg_drop=1.0)
    return out, card, man


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory, slice_index, reranker_dir):
    """The slice's artifact with a BM25 index and the reranker packaged in, copied to another folder (as a user
    receives it)."""
    art = package_artifact(slice_index, tmp_path_factory.mktemp("ts") / "art", bm25=True, reranker=reranker_dir[0])
    moved = tmp_path_factory.mktemp("elsewhere") / "received"
    shutil.copytree(art, moved)
    return moved


def test_training_writes_a_cross_encoder_with_its_card_and_an_onnx_export_equal_to_torch(reranker_dir):
    out, card, man = reranker_dir
    assert (out / "honed.json").is_file() and not (out / "checkpoints").exists()
    assert card["kind"] == "reranker" and card["recipe"]["max_steps"] == 6 and card["triples"] > 0
    assert 0.0 <= card["dev"]["rerank_ndcg@10"] <= 1.0 and 0.0 <= card["dev"]["first_stage_ndcg@10"] <= 1.0
    # every weight of the reranker against the first stage, scored on the same dev candidates: weight 0 is the
    # first stage's own order, 1 the reranker's alone; a reranker no weight of which beats its first stage is
    # marked failed (kept, said why)
    mix = card["dev"]["mix"]
    rows = {r["weight"]: r["ndcg@10"] for r in mix["rows"]}
    assert sorted(rows) == [i / 10 for i in range(11)] and mix["ndcg@10"] == max(rows.values())
    assert rows[0.0] == pytest.approx(card["dev"]["first_stage_ndcg@10"], abs=1e-3)
    # (sentence-transformers averages tied scores' gains, pytrec_eval orders ties by id: after 6 steps the
    # reranker's sigmoid scores tie in float32 often enough to move the third decimal)
    assert rows[1.0] == pytest.approx(card["dev"]["rerank_ndcg@10"], abs=5e-3)
    assert (card["status"] == "failed") == (mix["weight"] == 0.0) == (max(rows.values()) == rows[0.0])
    assert card["triples_dropped_for_dev"] >= 0
    assert man["fused_ops"].get("Attention") == 6                     # ORT's BERT fusion ran on the classifier
    assert man["parity"]["fp32"]["max_abs_diff"] < 1e-4                 # the graph computes what torch does
    assert man["parity"]["int8-avx2"]["spearman"] > 0.8                 # int8 keeps the order, roughly
    assert set(man["parity"]["torch"]) == {"ndcg@10"} and man["int8"]["avx2"]["passed"]
    ce, ort = load_reranker(out, "torch"), load_reranker(out, "fp32")
    q, ps = "vitamin D and fractures", ["Vitamin D did not reduce fractures.", "Zebrafish regenerate hearts."]
    assert ort.backend == "onnx-fp32" and ce.backend == "torch"
    np.testing.assert_allclose(ort.score(q, ps), ce.score(q, ps), atol=1e-4)
    assert ((ort.score(q, ps) > 0) & (ort.score(q, ps) < 1)).all()     # the folder's sigmoid, applied outside

    from honed.retriever.finetune.teacher import trained_teacher      # distillation's teacher, used as trained

    # one dev query whose first stage ranked the relevant passage second: the teacher is the two stages mixed
    sample = {"query": q, "positive": ps[:1], "documents": ps[::-1], "scores": [0.6, 0.4]}
    teacher, metrics = trained_teacher(out, [sample])
    assert teacher.max_length == card["max_length"] == 128        # pairs cut where training cut them
    assert metrics["trained_here"] is False and metrics["first_stage_dev_ndcg@10"] < 1.0
    np.testing.assert_allclose(teacher.predict([(q, p) for p in ps]), ce.score(q, ps), atol=1e-5)
    # the mix it distils is the best weight on dev, and weaker only when no weight beats the first stage's order
    assert metrics["dev_ndcg@10"] == max(r["ndcg@10"] for r in metrics["mix_rows"])
    assert metrics["weaker_than_base"] == (metrics["mix_weight"] == 0.0)


def test_retriever_reranks_the_first_stage_from_a_copied_artifact(two_stage, scifact_slice, reranker_dir):
    from honed import HonedRetriever

    r = HonedRetriever.from_dir(two_stage, similarity_top_k=5, rerank_top_n=TOP_N)
    idx, ce = r.index, r._reranker
    assert ce.backend.startswith("onnx-") and str(two_stage) in ce.path    # its own copy, torch-free
    q = scifact_slice.queries[sorted(scifact_slice.queries)[0]]
    first = search(idx, r.encoder.encode_queries([q]), TOP_N)[0]
    docs = idx.docs_at([label for label, _ in first])
    from honed.retriever.data.beir import doc_text

    # the artifact mixes at the weight the reranker's training chose on dev (its card)
    assert idx.rerank["weight"] == reranker_dir[1]["dev"]["mix"]["weight"]
    want = mixed_top(ce.score(q, [doc_text(d) for d in docs]), [s for _, s in first], [d["id"] for d in docs],
                     idx.rerank["weight"], 5)
    got = r.retrieve(q)
    assert [n.node.node_id for n in got] == want[0]
    assert [n.score for n in got] == pytest.approx(want[1], abs=1e-5)

    from honed import HonedRerank

    plain = HonedRetriever.from_dir(two_stage, similarity_top_k=TOP_N)   # no reranker: the postprocessor's input
    post = HonedRerank.from_dir(two_stage, top_n=5)
    from llama_index.core.schema import QueryBundle

    assert [n.node.node_id for n in post.postprocess_nodes(plain.retrieve(q), QueryBundle(q))] == want[0]

    # both extra parts of one artifact at once: hybrid first stage, reranked
    hybrid = HonedRetriever.from_dir(two_stage, similarity_top_k=5, mode="hybrid", rerank_top_n=TOP_N)
    fused = HonedRetriever.from_dir(two_stage, similarity_top_k=TOP_N, mode="hybrid").retrieve(q)
    assert [n.node.node_id for n in hybrid.retrieve(q)] == \
        [n.node.node_id for n in post.postprocess_nodes(fused, QueryBundle(q))]


def test_refusals_name_what_is_missing(tmp_path, slice_index, two_stage, reranker_dir):
    from honed import HonedRetriever

    with pytest.raises(HonedError, match="has no reranker; add one with `honed package"):
        HonedRetriever.from_dir(slice_index, rerank_top_n=10)
    p = run("search", str(slice_index), "vitamin D", "--rerank", "10")
    assert p.returncode == 2 and "has no reranker" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    with pytest.raises(HonedError, match="not a cross-encoder folder"):
        package_artifact(slice_index, tmp_path / "x", reranker=slice_index / "model")
    tampered = tmp_path / "tampered"
    shutil.copytree(two_stage, tampered)
    cfg = tampered / "reranker" / "config.json"
    cfg.write_text(cfg.read_text(encoding="utf-8") + "\n", encoding="utf-8")   # one byte: same config, new file
    with pytest.raises(HonedError, match="config.json: contents do not match"):
        artifact_reranker(load_index(tampered))
    # leaving it out on repackaging, and keeping it by default
    assert load_index(package_artifact(two_stage, tmp_path / "kept")).reranker_dir is not None
    assert load_index(package_artifact(two_stage, tmp_path / "dropped", reranker=False)).reranker_dir is None


def test_cli_and_service_rerank_like_the_retriever(tmp_path, two_stage, scifact_slice):
    from honed import HonedRetriever

    r = HonedRetriever.from_dir(two_stage, similarity_top_k=3, rerank_top_n=TOP_N)
    qids = sorted(scifact_slice.queries)[:3]
    want = {q: [n.node.node_id for n in r.retrieve(scifact_slice.queries[q])] for q in qids}
    p = run("search", str(two_stage), scifact_slice.queries[qids[0]], "-k", "3", "--rerank", str(TOP_N))
    assert p.returncode == 0, p.stderr
    assert f"reranked top {TOP_N}" in p.stdout and all(i in p.stdout for i in want[qids[0]])
    assert f"weight {r.index.rerank['weight']:.1f}" in p.stdout          # the mix its training chose on dev
    p = run("search", str(two_stage), scifact_slice.queries[qids[0]], "--mode", "hybrid", "--rerank", str(TOP_N))
    assert p.returncode == 0 and "hybrid" in p.stdout and f"reranked top {TOP_N}" in p.stdout, p.stderr
    info = json.loads(run("index", "info", str(two_stage)).stdout)
    assert info["rerank"] is True and info["reranker"]["onnx"] is True and "hybrid" in info["modes"]
    assert info["reranker"]["status"] in ("ok", "failed")          # what the training run concluded travels along

    hybrid = HonedRetriever.from_dir(two_stage, similarity_top_k=3, mode="hybrid", rerank_top_n=TOP_N)
    want = {q: [n.node.node_id for n in hybrid.retrieve(scifact_slice.queries[q])] for q in qids}
    srv = Server([str(two_stage), "--mode", "hybrid", "--rerank", str(TOP_N)], tmp_path / "feedback.db")
    try:
        ready = srv.wait_ready()
        assert ready["arms"]["champion"]["rerank"] == TOP_N and ready["arms"]["champion"]["mode"] == "hybrid"
        assert ready["arms"]["champion"]["reranker_backend"].startswith("onnx-")
        for q in qids:
            body = httpx.post(srv.url + "/search", json={"query": scifact_slice.queries[q], "k": 3}, timeout=60).json()
            assert [h["id"] for h in body["hits"]] == want[q]
    finally:
        srv.stop()


def test_reranker_weight_is_chosen_on_dev_recorded_and_served(tmp_path, two_stage, scifact_slice, reranker_dir,
                                                              slice_index):
    """`honed index fuse --rerank`: every weight scored on dev queries, the best recorded in the artifact; the
    retriever, the CLI and `honed eval beir` then mix the two stages with it, and repackaging keeps it only
    with the same reranker."""
    from honed import HonedRetriever
    from honed.rag_eval.beir_eval import parse_system
    from honed.rag_eval.fusion import choose_rerank_weight
    from honed.rag_eval.metrics import evaluate_run
    from honed.retriever.artifact import artifact_info
    from honed.retriever.data import write_beir
    from honed.retriever.index import recorded_rerank_weight
    from honed.retriever.reranker import record_rerank_weight

    art = tmp_path / "art"
    shutil.copytree(two_stage, art)
    dev, few = tmp_path / "dev", sorted(scifact_slice.queries)[:5]
    write_beir(dev, scifact_slice.corpus, scifact_slice.queries, {"dev": scifact_slice.qrels})
    write_beir(tmp_path / "dev5", scifact_slice.corpus, {q: scifact_slice.queries[q] for q in few},
               {"dev": {q: scifact_slice.qrels[q] for q in few}})          # the CLI's dry run: 5 queries are enough
    p = run("index", "fuse", str(art), "--data", str(tmp_path / "dev5"), "--rerank", "--dry-run")
    assert p.returncode == 0 and "would record" in p.stdout and "reranker weight" in p.stdout, p.stderr
    trained = load_index(art).rerank            # until chosen: the weight the reranker's training chose on dev
    assert trained["weight"] == reranker_dir[1]["dev"]["mix"]["weight"] and "at training" in trained["chosen_on"]
    assert load_index(art).rerank == trained                                # a dry run records nothing

    res = choose_rerank_weight(art, dev, top_n=TOP_N, index_dir=tmp_path / "indexes")
    rows = {r["weight"]: r["ndcg@10"] for r in res["rows"]}
    assert sorted(rows) == [i / 10 for i in range(11)] and res["dev_ndcg@10"] == max(rows.values())
    assert "the artifact's own documents" in res["chosen_on"]
    # weight 0 is the first stage's own order, computed here without the mixing code (weight 1 is not
    # compared: the int8 reranker's activation scales vary with the batch, and 6 training steps leave its
    # scores close enough together that the batch reorders them)
    idx, ce = load_index(art), artifact_reranker(load_index(art))
    plain = HonedRetriever.from_dir(art, similarity_top_k=TOP_N)
    own = {q: {n.node.node_id: n.score for n in plain.retrieve(t)} for q, t in scifact_slice.queries.items()}
    top10 = {q: dict(sorted(d.items(), key=lambda t: -t[1])[:10]) for q, d in own.items()}
    assert rows[0.0] == pytest.approx(evaluate_run(scifact_slice.qrels, top10, (10,)).aggregate["NDCG@10"], abs=1e-4)
    assert idx.rerank["weight"] == res["weight"] and recorded_rerank_weight(art) == res["weight"]

    # served: w · minmax(reranker) + (1 − w) · minmax(first stage), at a weight strictly inside
    record_rerank_weight(idx, 0.5, {"chosen_on": "this test"})
    q = sorted(scifact_slice.queries)[0]
    ids = list(own[q])
    want, scores = mixed_top(ce.score(scifact_slice.queries[q], [scifact_slice.doc_text(i) for i in ids]),
                             [own[q][i] for i in ids], ids, 0.5, 5)
    got = HonedRetriever.from_dir(art, similarity_top_k=5, rerank_top_n=TOP_N).retrieve(scifact_slice.queries[q])
    assert [n.node.node_id for n in got] == want and [n.score for n in got] == pytest.approx(scores, abs=1e-5)
    assert artifact_info(art)["rerank_weight"]["weight"] == 0.5     # (`honed search --rerank` prints it: the test below)

    assert load_index(package_artifact(art, tmp_path / "kept")).rerank["weight"] == 0.5
    assert load_index(package_artifact(art, tmp_path / "new", reranker=reranker_dir[0])).rerank == trained
    assert parse_system(f"t=minilm+rerank:{reranker_dir[0]}@0.3").rerank_weight == 0.3
    for bad, call in (("must be in \\[0, 1\\]", lambda: record_rerank_weight(idx, 1.5)),
                      ("carries no reranker", lambda: record_rerank_weight(load_index(slice_index), 0.5)),
                      ("--system", lambda: parse_system(f"t=minilm+rerank:{reranker_dir[0]}@1.5"))):
        with pytest.raises(HonedError, match=bad):
            call()


def test_eval_beir_reranked_system(tmp_path, slice_index, reranker_dir, scifact_slice):
    from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    from honed.retriever.data import write_beir

    s = parse_system(f"tuned=minilm+rerank:{reranker_dir[0]}")
    assert (s.name, s.model, s.kind, s.rerank) == ("tuned", "minilm", "dense+rerank", str(reranker_dir[0]))
    assert parse_system(f"h=minilm+bm25+rerank:{reranker_dir[0]}").kind == "hybrid+rerank"
    for bad in (f"bm25+rerank:{reranker_dir[0]}", "t=minilm+rerank:/no/such/folder"):
        with pytest.raises(HonedError, match="--system"):
            parse_system(bad)
    data = tmp_path / "slice"
    qids = sorted(scifact_slice.queries)[:6]
    write_beir(data, scifact_slice.corpus, {q: scifact_slice.queries[q] for q in qids},
               {"test": {q: scifact_slice.qrels[q] for q in qids}})
    for name in ("base", "tuned"):   # the dense side: the slice index, cached under each system name
        shutil.copytree(slice_index, tmp_path / "indexes" / f"slice-test-{name}")
    res = evaluate_systems([str(data)], [parse_system("base=minilm"), s], index_dir=tmp_path / "indexes")[0]
    base, tuned = res.systems["base"].run, res.systems["tuned"].run
    ce = load_reranker(reranker_dir[0])
    for q in qids:
        head = sorted(base[q], key=lambda d: -base[q][d])
        assert set(head) == set(tuned[q])                              # Recall@100 is the first stage's
        ranked = sorted(tuned[q], key=lambda d: -tuned[q][d])
        assert set(ranked[:50]) == set(head[:50]) and ranked[50:] == head[50:]
        top = ranked[:50]          # ordered by the reranker's scores (int8's dynamic activation scales vary a
        #                            little with what else is in the batch, hence the tolerance)
        scores = ce.score(scifact_slice.queries[q], [scifact_slice.doc_text(d) for d in top])
        np.testing.assert_allclose([tuned[q][d] for d in top], scores, atol=0.02)


def test_the_reranker_is_distilled_into_the_embedder_as_trained(tmp_path, tiny_data, reranker_dir):
    """`honed finetune --loss distill-mnrl --teacher RERANKER_DIR`: MarginMSE on the product reranker's margins
    beside in-batch ranking, no second teacher trained, only the examples 2 steps train on scored. (Plain
    `--loss distill` runs in test_gpl.py.)"""
    from conftest import TINY
    from honed.retriever.finetune import FinetuneConfig, finetune

    # a reranker of 6 steps may not beat the base model on dev: allowed here, this test checks the plumbing
    res = finetune(FinetuneConfig(data=str(tiny_data), out=str(tmp_path / "student"), loss="distill-mnrl",
                                  teacher=str(reranker_dir[0]), allow_weaker_teacher=True, track=False,
                                  **{**TINY, "max_steps": 2}))
    t = res.manifest["eval"]["teacher"]
    assert t["trained_here"] is False and t["from"] == str(reranker_dir[0]) and 0.0 <= t["mix_weight"] <= 1.0
    assert not (tmp_path / ".student.work" / "teacher").exists() and res.manifest["params"]["loss"] == "distill-mnrl"
    assert res.manifest["data"]["train_examples"] == 2 * TINY["batch_size"] < res.manifest["data"]["train_pairs"]
    assert any("loss" in h for h in json.loads((tmp_path / "student" / "log_history.json").read_text()))


def test_served_margins_are_the_two_stages_mixed(scifact_slice, reranker_dir, minilm):
    """The student learns the margins of the system it replaces: at reranker weight 0 the base model's own cosine
    margins, at 1 the reranker's margins rescaled to cosine units, in between the weighted sum of the two."""
    from honed.retriever.finetune.pairs import Pair
    from honed.retriever.finetune.teacher import score_margins, served_margins, trained_teacher

    qid = sorted(scifact_slice.qrels)[0]
    q, docs = scifact_slice.queries[qid], [scifact_slice.doc_text(d) for d in sorted(scifact_slice.corpus)[:3]]
    triples = [Pair(query=q, positive=docs[0], negatives=[n]) for n in docs[1:]]
    enc = minilm
    teacher, _ = trained_teacher(reranker_dir[0], [{"query": q, "positive": docs[:1], "documents": docs,
                                                    "scores": [0.5, 0.4, 0.3]}])
    qv, dv = enc.encode_queries([q])[0], enc.encode_documents(docs)
    cos = [float(qv @ dv[0] - qv @ dv[i]) for i in (1, 2)]
    np.testing.assert_allclose(served_margins(teacher, enc, triples, 0.0, 3.0), cos, atol=1e-5)
    ce = score_margins(teacher, triples)
    np.testing.assert_allclose(served_margins(teacher, enc, triples, 1.0, 3.0), [3.0 * m for m in ce], atol=1e-5)
    half = served_margins(teacher, enc, triples, 0.5, 3.0)
    np.testing.assert_allclose(half, [0.5 * c + 1.5 * m for c, m in zip(cos, ce)], atol=1e-5)


def test_a_teacher_no_better_than_the_base_model_is_refused_by_name():
    """The run stops before scoring margins, naming the way out; --allow-weaker-teacher distils it anyway."""
    from honed.retriever.finetune.train import check_teacher

    weak = {"weaker_than_base": True, "mix_weight": 0.0, "rerank_alone_dev_ndcg@10": 0.41, "dev_ndcg@10": 0.66}
    with pytest.raises(HonedError, match=r"--teacher: .*alone 0.4100.*--loss mnrl.*--allow-weaker-teacher"):
        check_teacher(weak, 0.66, allow_weaker=False)
    check_teacher(weak, 0.66, allow_weaker=True)
    check_teacher({**weak, "weaker_than_base": False, "mix_weight": 0.3}, 0.66, allow_weaker=False)


def test_a_shallower_reranker_keeps_its_first_layers_through_save_and_load(tmp_path):
    """`--layers 2`: the cross-encoder computes with the base's first 2 transformer layers, and the saved folder
    reopens as that model (its config says 2), so ONNX export and serving see the shallow one."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    from honed.retriever.finetune.teacher import keep_layers
    from honed.retriever.models import resolve_model

    model = CrossEncoder(str(resolve_model("minilm")), num_labels=1, max_length=64, trust_remote_code=False)
    first_two = [p.detach().clone() for p in model.model.base_model.encoder.layer[:2].parameters()]
    keep_layers(model, 2)
    assert len(model.model.base_model.encoder.layer) == 2
    pairs = [("vitamin D and fractures", "Vitamin D did not reduce fractures."), ("x", "Zebrafish hearts.")]
    before = model.predict(pairs)
    model.save(str(tmp_path / "ce"))
    again = CrossEncoder(str(tmp_path / "ce"), trust_remote_code=False)
    assert again.model.config.num_hidden_layers == 2 and len(again.model.base_model.encoder.layer) == 2
    assert all(torch.equal(a, b) for a, b in zip(first_two, again.model.base_model.encoder.layer.parameters()))
    np.testing.assert_allclose(again.predict(pairs), before, atol=1e-5)
    with pytest.raises(HonedError, match="--layers 7: the base model has 2"):
        keep_layers(again, 7)

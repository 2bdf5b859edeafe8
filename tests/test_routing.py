"""Domain routing on real models and real passages: contracts (datasets/cuad-clauses) and SciFact abstracts.

The fast tests fit a router on the packaged MiniLM's vectors of contract passages; the "tuned" model there is the
same MiniLM reading only 16 tokens, so its vectors differ from the base model's on every longer passage and
each routed row shows which model read it. The slow test uses the session's real fine-tuned run.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import CUAD_CLAUSES


@pytest.fixture(scope="module")
def contracts():
    from honed.retriever.data import load_beir

    train, test = load_beir(CUAD_CLAUSES, "train"), load_beir(CUAD_CLAUSES, "test")
    return ([train.doc_text(d) for d in sorted(train.corpus)[:200]],
            [test.doc_text(d) for d in sorted(test.corpus)[:40]],
            [test.doc_text(d) for d in sorted(test.corpus)[40:80]])


@pytest.fixture(scope="module")
def routed_run(tmp_path_factory, minilm, contracts):
    """A model folder (the packaged MiniLM) with a router fitted on contract passages, as `honed finetune` writes."""
    from honed.retriever.models import resolve_model
    from honed.retriever.routing import BASE_DIR, ROUTER_DIR, fit_router, save_router

    reference, heldout, _ = contracts
    run = tmp_path_factory.mktemp("routed") / "run"
    shutil.copytree(resolve_model("minilm"), run)
    router = fit_router(minilm.encode_documents(reference), minilm.encode_documents(heldout), centroids=4)
    (run / ROUTER_DIR).mkdir()
    shutil.copytree(resolve_model("minilm"), run / ROUTER_DIR / BASE_DIR)
    save_router(router, run / ROUTER_DIR, base_ref="minilm", base_fingerprint=minilm.fingerprint)
    return run


def test_router_keeps_new_contracts_and_sends_abstracts_to_the_base_model(routed_run, contracts, minilm,
                                                                          scifact_slice):
    from honed.retriever.routing import load_router

    router, base_dir = load_router(routed_run)
    assert base_dir.is_dir() and router.record["centroids"] == 4 and router.record["quantile"] == 0.002
    abstracts = [scifact_slice.doc_text(d) for d in sorted(scifact_slice.corpus)[:30]]
    assert not router.in_domain(minilm.encode_documents(abstracts)).any()
    # passages of contracts the router never saw: most stay with the tuned model (35 of 40 with this small
    # reference; 95% of cuad-clauses' test passages with the demo's, benchmarks/results/domain-routing.json)
    assert router.in_domain(minilm.encode_documents(contracts[2])).mean() >= 0.8


def test_routed_encoder_reads_each_passage_with_the_model_its_domain_calls_for(routed_run, contracts, minilm,
                                                                              scifact_slice):
    from honed.retriever.encoder import load_encoder
    from honed.retriever.routing import RoutedEncoder, routing_of

    enc = load_encoder(routed_run, max_seq_length=16)          # the "tuned" model: MiniLM at 16 tokens
    assert isinstance(enc, RoutedEncoder) and enc.max_seq_length == 16 and enc.dim == 384
    assert routing_of(enc)["threshold"] == enc.router.threshold
    assert not isinstance(load_encoder(routed_run, max_seq_length=16, routing=False), RoutedEncoder)
    texts = contracts[2][:6] + [scifact_slice.doc_text(d) for d in sorted(scifact_slice.corpus)[:6]]
    vecs, keep = enc.encode_routed(texts)
    tuned, base = enc.tuned.encode_documents(texts), minilm.encode_documents(texts)
    assert keep[6:].sum() == 0 and keep[:6].sum() >= 5
    assert np.allclose(vecs[keep], tuned[keep], atol=1e-5) and np.allclose(vecs[~keep], base[~keep], atol=1e-5)
    assert not np.allclose(tuned[~keep], base[~keep], atol=1e-3), "the two models must differ for this test to see"
    assert np.allclose(enc.encode_queries(texts[:2]), enc.tuned.encode_queries(texts[:2]))


def test_index_records_routing_and_inserts_route_after_a_copy(routed_run, contracts, minilm, scifact_slice,
                                                             tmp_path):
    from honed.retriever.encoder import load_encoder
    from honed.retriever.index import build_index, load_index
    from honed.retriever.routing import routing_of
    from honed.retriever.updates import add_documents

    enc = load_encoder(routed_run, max_seq_length=16)
    docs = {f"c{i}": {"text": t} for i, t in enumerate(contracts[2][:5])}
    build_index(enc, docs, tmp_path / "idx", show_progress=False)
    shutil.copytree(tmp_path / "idx", tmp_path / "elsewhere" / "idx")     # the artifact carries its router
    shutil.rmtree(tmp_path / "idx")
    index = load_index(tmp_path / "elsewhere" / "idx")
    assert index.manifest["routing"] == routing_of(enc)
    assert (index.model_dir / "router" / "base-model" / "model.safetensors").is_file()
    abstract = scifact_slice.doc_text(sorted(scifact_slice.corpus)[0])
    add_documents(index, {"a1": {"text": abstract}})
    stored = index.faiss_index.reconstruct(int(index.store.positions_of(["a1"])["a1"]))
    assert np.allclose(stored, minilm.encode_documents([abstract])[0], atol=1e-4), "the base model read it"
    # packaging (which copies the vectors without loading the model) keeps the router with the routed vectors
    from honed.retriever.artifact import package_artifact

    package_artifact(tmp_path / "elsewhere" / "idx", tmp_path / "packaged")
    packaged = load_index(tmp_path / "packaged")
    assert packaged.manifest["routing"] == routing_of(enc) and (packaged.model_dir / "router" / "router.json").is_file()
    assert isinstance(load_encoder(packaged.model_dir), type(enc))

    # an index built without routing carries no router, and refuses an encoder that routes
    build_index(str(routed_run), docs, tmp_path / "plain", show_progress=False, routing=False)
    index = load_index(tmp_path / "plain")
    assert index.manifest["routing"] is None and not (index.model_dir / "router").exists()
    with pytest.raises(Exception, match="routed passages"):
        add_documents(index, {"a1": {"text": abstract}}, encoder=enc)


def test_bad_router_files_are_refused(routed_run, tmp_path):
    from honed.retriever.errors import HonedError
    from honed.retriever.routing import load_router

    bad = tmp_path / "run"
    shutil.copytree(routed_run / "router", bad / "router", ignore=shutil.ignore_patterns("*.safetensors"))
    doc = json.loads((bad / "router" / "router.json").read_text())
    (bad / "router" / "router.json").write_text(json.dumps({**doc, "format": 99}))
    with pytest.raises(HonedError, match="router format 99"):
        load_router(bad)
    (bad / "router" / "router.json").write_text(json.dumps({**doc, "base_dir": "../../elsewhere"}))
    with pytest.raises(HonedError, match="base_dir must be 'base-model'"):
        load_router(bad)
    (bad / "router" / "router.json").write_text("{not json")
    with pytest.raises(HonedError, match="router.json: not a readable domain router"):
        load_router(bad)


@pytest.mark.slow
def test_a_run_too_small_to_tell_its_domain_keeps_no_router(tuned_run):
    """The session's real run (150 SciFact passages) is below the router's minimum: honed.json says why, the run has
    no router/ and loads as a plain encoder. The demo's run (`make test-demo`) checks a run that has one."""
    from honed.retriever.encoder import load_encoder
    from honed.retriever.routing import RoutedEncoder

    man = json.loads((tuned_run / "honed.json").read_text())
    assert "too little data to tell the domain apart" in man["router"]["skipped"]
    assert not (tuned_run / "router").exists() and not isinstance(load_encoder(tuned_run), RoutedEncoder)

"""A cross-encoder second stage: rescore the first stage's top-n passages with a domain reranker.

A reranker folder is a sentence-transformers ``CrossEncoder`` (trained by
:func:`retriever.finetune.reranker.train_reranker`), optionally with an
``onnx/`` export (:func:`retriever.export.reranker_onnx.export_reranker_onnx`).
With the export, scoring needs only tokenizers + onnxruntime + numpy (no torch),
exactly like the bi-encoder's query path; without it, the ``CrossEncoder`` runs.
An artifact carries one in ``reranker/`` (``honed package --reranker``).

Example:
    >>> from honed.retriever.reranker import load_reranker
    >>> ce = load_reranker("runs/cuad-reranker")                                  # doctest: +SKIP
    >>> ce.score("Is liability capped?", ["Liability is capped at fees.", "Term: two years."])  # doctest: +SKIP
    array([0.97, 0.02], dtype=float32)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import read_json, verify_artifact
from .errors import HonedError
from .ort_encoder import token_feed

RERANKER_DIR = "reranker"          # where an artifact keeps its reranker
ONNX_FORMAT = "honed.onnx-cross-encoder/1"
# The activations a CrossEncoder folder may name, computed here in numpy (ranking only needs order,
# but the scores a user sees should be the ones sentence-transformers would print).
ACTIVATIONS = {"torch.nn.modules.activation.Sigmoid": "sigmoid", "torch.nn.modules.linear.Identity": "identity"}


def is_reranker(path: str | os.PathLike) -> bool:
    """Whether `path` is a sentence-transformers cross-encoder folder."""
    cfg = Path(path) / "config_sentence_transformers.json"
    return cfg.is_file() and read_json(cfg).get("model_type") == "CrossEncoder"


def reranker_config(path: str | os.PathLike) -> dict:
    """The folder's activation (``sigmoid`` | ``identity``) and maximum pair length, checked."""
    root = Path(path)
    if not is_reranker(root):
        raise HonedError(f"{root}: not a cross-encoder folder (config_sentence_transformers.json must say "
                         "model_type CrossEncoder); train one with `honed reranker train`")
    st = read_json(root / "config_sentence_transformers.json")
    name = st.get("activation_fn") or "torch.nn.modules.activation.Sigmoid"
    if name not in ACTIVATIONS:
        raise HonedError(f"{root}/config_sentence_transformers.json: activation_fn {name!r} is not supported "
                         f"(supported: {', '.join(ACTIVATIONS)})")
    if read_json(root / "config.json").get("num_labels", 1) not in (1, None):
        raise HonedError(f"{root}/config.json: a reranker has one output label")
    card = read_json(root / "honed.json") if (root / "honed.json").is_file() else {}
    tok = read_json(root / "tokenizer_config.json") if (root / "tokenizer_config.json").is_file() else {}
    max_length = card.get("max_length") or min(int(tok.get("model_max_length") or 512), 512)
    return {"activation": ACTIVATIONS[name], "max_length": int(max_length)}


def _activate(logits: np.ndarray, activation: str) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float32).reshape(-1)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32) if activation == "sigmoid" else x


@dataclass
class Reranker:
    """Scores (query, passage) pairs; ``backend`` says which runtime: ``onnx-<variant>`` or ``torch``."""

    path: str
    fingerprint: str
    backend: str
    max_length: int
    activation: str
    session: object = None        # onnxruntime session (ONNX backend)
    tokenizer: object = None      # tokenizers.Tokenizer (ONNX backend)
    model: object = None          # sentence_transformers CrossEncoder (torch backend)
    batch_size: int = 32

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """One score per passage for `query` (higher is more relevant)."""
        return self.score_pairs([(query, p) for p in passages])

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Scores for many (query, passage) pairs at once: the batched path the server uses."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        if self.model is not None:
            return np.asarray(self.model.predict(list(pairs), batch_size=self.batch_size,
                                                 show_progress_bar=False), dtype=np.float32).reshape(-1)
        # sort by length so each batch pads little, as CrossEncoder.predict does
        order = np.argsort([-(len(q) + len(p)) for q, p in pairs])
        out = np.empty(len(pairs), dtype=np.float32)
        names = {i.name for i in self.session.get_inputs()}
        for s in range(0, len(pairs), self.batch_size):
            idx = order[s:s + self.batch_size]
            feed = token_feed(self.tokenizer, [pairs[i] for i in idx], names)
            out[idx] = _activate(self.session.run(None, feed)[0], self.activation)
        return out


def load_reranker(path: str | os.PathLike, variant: str = "auto", batch_size: int = 32,
                  threads: int | None = None, spin: bool = True) -> Reranker:
    """Open a reranker folder (or an artifact's ``reranker/``): ONNX when exported (torch-free), else torch.

    `variant` as for the bi-encoder (:func:`retriever.ort_encoder.onnx_model_file`): ``auto`` runs the
    int8 model for this CPU when it passed its parity gate, else fp32; ``torch`` forces the CrossEncoder.
    """
    from .models import model_fingerprint

    root = Path(path)
    if (root / "manifest.json").is_file() and (root / RERANKER_DIR).is_dir():
        root = root / RERANKER_DIR
    cfg = reranker_config(root)
    verify_artifact(root)        # the folder's files, as `honed reranker train` wrote them
    fp = model_fingerprint(root)
    if variant != "torch" and (root / "onnx" / "manifest.json").is_file():
        return _load_onnx(root, variant, cfg, fp, batch_size, threads, spin)
    if variant not in ("auto", "torch"):
        raise HonedError(f"{root}: no onnx/ export for variant {variant!r}; run `honed export onnx {root}`")
    from .device import resolve_device

    from sentence_transformers.cross_encoder import CrossEncoder

    model = CrossEncoder(str(root), max_length=cfg["max_length"], device=resolve_device(None),
                         trust_remote_code=False)
    return Reranker(path=str(root), fingerprint=fp, backend="torch", max_length=cfg["max_length"],
                    activation=cfg["activation"], model=model, batch_size=batch_size)


def _load_onnx(root: Path, variant: str, cfg: dict, fp: str, batch_size: int, threads: int | None,
               spin: bool) -> Reranker:
    from .ort_encoder import load_tokenizer, onnx_model_file, ort_session

    onnx_path, man, variant = onnx_model_file(root, variant, formats=(ONNX_FORMAT,))
    if man.get("source_fingerprint") not in (None, fp):
        raise HonedError(f"{root}/onnx: exported from another model ({man['source_fingerprint']}, this folder is "
                         f"{fp}); re-export with `honed export onnx {root}`")
    sess = ort_session(onnx_path, threads, spin)
    return Reranker(path=str(root), fingerprint=fp, backend=f"onnx-{variant}", max_length=cfg["max_length"],
                    activation=cfg["activation"], session=sess, tokenizer=load_tokenizer(root, cfg["max_length"]),
                    batch_size=batch_size)


def copy_reranker(src: str | os.PathLike, artifact: Path) -> dict:
    """Copy a reranker folder (with its ONNX export) into an artifact being written; its manifest block."""
    import shutil

    from .models import model_fingerprint

    src = Path(src)
    if (src / "manifest.json").is_file() and (src / RERANKER_DIR).is_dir():
        src = src / RERANKER_DIR          # another artifact's reranker
    cfg = reranker_config(src)
    verify_artifact(src)
    dest = artifact / RERANKER_DIR
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".*", "checkpoint*", "__pycache__"))
    card = read_json(src / "honed.json") if (src / "honed.json").is_file() else {}
    return {"dir": RERANKER_DIR, "fingerprint": model_fingerprint(dest), "base": card.get("base"),
            "max_length": cfg["max_length"], "onnx": (dest / "onnx" / "manifest.json").is_file(),
            "dev": card.get("dev"), "status": card.get("status")}


def trained_weight(second_stage: dict) -> dict | None:
    """The mix a reranker's training chose on its dev split (its card), as an artifact records a weight."""
    dev = second_stage.get("dev") or {}
    if not dev.get("mix"):
        return None        # trained before honed chose weights, or not by honed: its scores alone
    return {"weight": dev["mix"]["weight"], "dev_ndcg@10": dev["mix"]["ndcg@10"],
            "first_stage_dev_ndcg@10": dev.get("first_stage_ndcg@10"),
            "chosen_on": f"the reranker's dev split at training ({dev.get('queries')} queries, the first stage's "
                         f"top {dev.get('candidates_per_query')})"}


def artifact_reranker(index, variant: str = "auto", threads: int | None = None, spin: bool = True) -> Reranker:
    """The reranker an open artifact carries, checked against its manifest; a one-line error when it has none."""
    root = index.reranker_dir
    if root is None:
        raise HonedError(f"{index.path}: this artifact has no reranker; add one with "
                         "`honed package --index ART --out NEW --reranker RERANKER_DIR`")
    reranker = load_reranker(root, variant=variant, threads=threads, spin=spin)
    want = index.manifest["reranker"]["fingerprint"]
    if reranker.fingerprint != want:
        raise HonedError(f"{root}: its weights have fingerprint {reranker.fingerprint}, the manifest says {want}: "
                         "the reranker was changed after packaging; package the artifact again")
    return reranker


def rerank_hits(reranker: Reranker, queries: Sequence[str], candidates: list[list[tuple[int, float]]],
                texts: list[list[str]], k: int, weight: float | None = None) -> list[list[tuple[int, float]]]:
    """Reorder each query's first-stage (label, score) hits by the reranker's score; keep the top `k`.

    With `weight` w in [0, 1] the order is ``w · reranker + (1 − w) · first stage`` over each query's
    min-max normalised scores (:func:`retriever.fusion.weighted`): a small domain cross-encoder knows
    what the embedder misses but is noisier on its own, and the mix is chosen on dev queries
    (:func:`honed.rag_eval.fusion.choose_rerank_weight`). None: the reranker's own scores.
    All queries' pairs go to the model in one call (one batch stream for a server's micro-batch).
    Candidates whose text is gone (deleted between the searches) must already be dropped by the caller.
    """
    from .mixing import weighted

    pairs = [(q, t) for q, ts in zip(queries, texts) for t in ts]
    scores = reranker.score_pairs(pairs)
    out, at = [], 0
    for hits in candidates:
        s = scores[at:at + len(hits)]
        at += len(hits)
        if weight is None:
            order = np.argsort(-s, kind="stable")[:k]
            out.append([(hits[i][0], float(s[i])) for i in order])
        else:
            out.append(weighted([(label, float(x)) for (label, _), x in zip(hits, s)], hits, weight, k))
    return out


def rerank(index, reranker: Reranker, queries: Sequence[str], hits: list[list[tuple[int, float]]],
           k: int, weight: float | None = None) -> list[list[tuple[int, float]]]:
    """Each query's first-stage hits over `index`, reordered by `reranker` on the stored passages; top `k`.

    Passages are scored as they were embedded (title and text, :func:`retriever.data.beir.doc_text`);
    a hit deleted since the first stage's search is dropped. `weight` (see :func:`rerank_hits`)
    defaults to the one recorded in the artifact (:func:`record_rerank_weight`), if any.
    """
    from .data.beir import doc_text

    if weight is None and index.rerank:
        weight = index.rerank["weight"]
    flat = [label for h in hits for label, _ in h]
    docs = dict(zip(flat, index.docs_at(flat)))
    kept = [[(label, s) for label, s in h if docs[label] is not None] for h in hits]
    texts = [[doc_text(docs[label]) for label, _ in h] for h in kept]
    return rerank_hits(reranker, queries, kept, texts, k, weight)


def weight_table(reranked: list[list[tuple[int, float]]], first: list[list[tuple[int, float]]],
                 relevant: list[dict[int, int]], weights: Sequence[float] | None = None) -> list[dict]:
    """nDCG@10 of each query's candidates mixed at every reranker weight (:func:`rerank_hits`).

    `reranked` and `first` hold the same candidates per query, scored by the reranker and by the first
    stage; `relevant` maps each query's relevant labels to their grade (labels outside the candidates
    count against the ideal ranking). Scored with pytrec_eval, as every other nDCG in honed.
    """
    import pytrec_eval

    from .mixing import WEIGHTS, weighted

    qrels = {str(i): {str(label): int(g) for label, g in rel.items()} for i, rel in enumerate(relevant) if rel}
    measure = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
    rows = []
    for w in WEIGHTS if weights is None else weights:
        run = {str(i): {str(label): s for label, s in weighted(ce, fs, w, 10)}
               for i, (ce, fs) in enumerate(zip(reranked, first)) if str(i) in qrels}
        per_query = measure.evaluate(run)     # a query with no candidate at all scores 0, not skipped
        ndcg = sum(per_query.get(q, {}).get("ndcg_cut_10", 0.0) for q in qrels) / max(len(qrels), 1)
        rows.append({"weight": w, "ndcg@10": round(ndcg, 5)})
    return rows


def relevant_labels(label_of: dict[str, int], qids: Sequence[str], qrels: dict[str, dict[str, int]]) -> list[dict]:
    """Each query's relevant passages as :func:`weight_table` takes them: store label → grade; a judged passage
    the index does not hold gets a negative label, so it still counts against the ideal ranking."""
    return [{label_of.get(d, -1 - i): g for i, (d, g) in enumerate(qrels.get(q, {}).items()) if g > 0} for q in qids]


def best_weight(rows: list[dict]) -> dict:
    """The row with the highest nDCG@10; the lowest weight among equals (the first stage is the safer side)."""
    return max(sorted(rows, key=lambda r: r["weight"]), key=lambda r: r["ndcg@10"])


def record_rerank_weight(index, weight: float, evidence: dict | None = None) -> dict:
    """Record in the artifact (its store's meta, atomically) how its reranker mixes with the first stage."""
    if not 0.0 <= weight <= 1.0:
        raise HonedError(f"a reranker weight must be in [0, 1], got {weight!r}")
    if index.reranker_dir is None:
        raise HonedError(f"{index.path}: carries no reranker to weigh; package one with "
                         "`honed package --reranker DIR`")
    value = {"weight": weight, **(evidence or {})}
    with index.lock:
        index.store.set_meta({"rerank": value})
        index.rerank = value
    return value


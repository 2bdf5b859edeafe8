"""Side-by-side comparison logic behind the app: open two systems, retrieve, answer, blind.

Nothing here imports Streamlit, so it is usable (and tested) from plain Python.
A *system* is a retriever over an index folder; ``alias:NAME`` resolves an
MLflow registry alias (``champion`` / ``challenger``, set by ``honed retrain``)
to its model and builds or reuses that model's index over ``corpus``.

Example:
    >>> from honed.app.compare import open_system, retrieve, answer_stream
    >>> base = open_system("base", "indexes/cuad-clauses-test-base")          # doctest: +SKIP
    >>> hits = retrieve(base, "Can either party terminate for convenience?")  # doctest: +SKIP
    >>> text = "".join(answer_stream(llm, "Can either party…", hits))         # doctest: +SKIP
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from honed.retriever.errors import HonedError


@dataclass
class System:
    name: str
    spec: str                      # what the user passed (index folder or alias:NAME)
    index_path: str
    retriever: object              # retriever.HonedRetriever
    model_ref: str
    ident: str = ""                # what votes record: the index folder, or the registry version behind an alias


@dataclass
class Hit:
    doc_id: str
    text: str
    score: float
    rank: int
    title: str = ""


def open_system(name: str, spec: str | os.PathLike, corpus: str | os.PathLike | None = None,
                index_dir: str | os.PathLike = "indexes", top_k: int = 5, runs_dir: str | os.PathLike = "runs"
                ) -> System:
    """An index folder, or ``alias:NAME`` of the registered model (index built over `corpus` once, then reused)."""
    from honed.retriever.honed_retriever import HonedRetriever

    spec = str(spec)
    if spec.startswith("alias:"):
        from honed.rag_eval.beir_eval import cached_index
        from honed.retriever.data.beir import load_beir
        from honed.retriever.models import model_fingerprint

        from .registry import REGISTERED_NAME, alias_model

        if not corpus:
            raise HonedError(f"--{name}: {spec} needs --corpus (the BEIR folder whose test corpus the app searches)")
        model, version = alias_model(spec.split(":", 1)[1], runs_dir=runs_dir)
        ds = load_beir(corpus, "test")
        path = Path(index_dir) / f"app-{Path(str(corpus)).name}-{model_fingerprint(model)[:12]}"
        index, enc = cached_index(ds, str(model), path)
        return System(name, spec, str(path), HonedRetriever(index, enc, similarity_top_k=top_k), str(model),
                      ident=f"{REGISTERED_NAME} v{version} ({spec})")
    if not (Path(spec) / "manifest.json").exists():
        raise HonedError(f"--{name}: {spec} is not an index folder (no manifest.json); "
                         f"build one with `honed index build` or pass alias:champion")
    r = HonedRetriever.from_dir(spec, similarity_top_k=top_k)
    return System(name, spec, spec, r, r.encoder.ref, ident=spec)


def retrieve(system: System, query: str) -> tuple[list[Hit], float]:
    """Top-k hits of one system and the seconds it took (encode + search)."""
    t0 = time.perf_counter()
    nodes = system.retriever.retrieve(query)
    dt = time.perf_counter() - t0
    hits = [Hit(n.node.metadata.get("doc_id", n.node.node_id), n.node.get_content(), float(n.score or 0.0), i + 1,
                n.node.metadata.get("title", "")) for i, n in enumerate(nodes)]
    return hits, dt


def answer_stream(llm, query: str, hits: list[Hit], max_passages: int = 3) -> Iterator[str]:
    """Stream the LLM's answer grounded in the top passages, with the prompt for the request's kind."""
    from llama_index.core import PromptTemplate, get_response_synthesizer
    from llama_index.core.schema import NodeWithScore, TextNode

    from honed.retriever.prompts import answer_template

    nodes = [NodeWithScore(node=TextNode(id_=h.doc_id, text=h.text), score=h.score) for h in hits[:max_passages]]
    synth = get_response_synthesizer(llm=llm, text_qa_template=PromptTemplate(answer_template(query)),
                                     response_mode="compact", streaming=True)
    resp = synth.synthesize(query, nodes)
    yield from resp.response_gen


def timed(chunks: Iterator[str], out: dict) -> Iterator[str]:
    """Pass a stream through, recording seconds to the first chunk and to the end in `out`."""
    t0 = time.perf_counter()
    for chunk in chunks:
        out.setdefault("first_s", time.perf_counter() - t0)
        yield chunk
    out.setdefault("first_s", time.perf_counter() - t0)
    out["total_s"] = time.perf_counter() - t0


def blind_order(names: list[str], seed: str | int | None = None) -> list[str]:
    """The two systems in a random on-screen order (A, B), reproducible per (session, query) seed."""
    order = list(names)
    random.Random(seed).shuffle(order)
    return order

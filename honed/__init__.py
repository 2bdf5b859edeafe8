"""honed: make retrieval good for one domain, prove it, and ship it.

The public API. Every name is imported on first use, so ``import honed`` costs
milliseconds; torch and LlamaIndex load only when a name that needs them is used.
The library lives in three subpackages, named as the repository's folders are:
``honed.retriever`` (models, fine-tuning, indexes, the LlamaIndex retriever),
``honed.rag_eval`` (evaluation, reports, the release gate) and ``honed.app``
(the app: compare, annotate, dashboard; the feedback loop, serving and the CLI). Installing honed adds no
other top-level module, so it never shadows a project's own ``app``.

Example:
    >>> from honed import HonedRetriever
    >>> r = HonedRetriever.from_dir("indexes/cuad-clauses-test-tuned", similarity_top_k=5)  # doctest: +SKIP
    >>> [n.node.metadata["doc_id"] for n in r.retrieve("cap on liability")]                  # doctest: +SKIP
"""
from __future__ import annotations

import importlib

__version__ = "0.2.0"

_LAZY = {
    "HonedRetriever": "honed.retriever.honed_retriever",
    "HonedEmbedding": "honed.retriever.embedding",
    "HonedVectorStore": "honed.retriever.vector_store",
    "HonedRerank": "honed.retriever.rerank_postprocessor",
    "load_reranker": "honed.retriever.reranker",
    "train_reranker": "honed.retriever.finetune.reranker",
    "build_index": "honed.retriever.index",
    "load_index": "honed.retriever.index",
    "search": "honed.retriever.index",
    "Index": "honed.retriever.index",
    "add_documents": "honed.retriever.updates",
    "delete_documents": "honed.retriever.updates",
    "upgrade_index": "honed.retriever.artifact",
    "package_artifact": "honed.retriever.artifact",
    "load_encoder": "honed.retriever.encoder",
    "resolve_model": "honed.retriever.models",
    "fetch_model": "honed.retriever.models",
    "load_beir": "honed.retriever.data.beir",
    "write_beir": "honed.retriever.data.beir",
    "finetune": "honed.retriever.finetune.run",
    "FinetuneConfig": "honed.retriever.finetune.config",
    "mine_negatives": "honed.retriever.finetune.mining",
    "search_recipe": "honed.retriever.finetune.search",
    "adapt_to_corpus": "honed.retriever.finetune.gpl",
    "merge_models": "honed.retriever.finetune.merge",
    "choose_merge_weight": "honed.retriever.finetune.merge",
    "make_llm": "honed.retriever.llm.generator",
    "export_onnx": "honed.retriever.export.onnx",
    "evaluate_systems": "honed.rag_eval.beir_eval",
    "write_beir_report": "honed.rag_eval.report",
    "evaluate_rag": "honed.rag_eval.rag",
    "run_gate": "honed.rag_eval.gate",
    "judge_agreement": "honed.rag_eval.calibration",
    "read_calibration": "honed.rag_eval.calibration",
    "export_eval_set": "honed.app.annotate",
    "drop_frozen": "honed.retriever.finetune.pairs",
    "frozen_eval_set": "honed.retriever.finetune.pairs",
    "create_app": "honed.app.serve.service",
    "ServeConfig": "honed.app.serve.service",
    "click_pairs": "honed.app.clicks",
    "click_metrics": "honed.app.clicks",
    "HonedError": "honed.retriever.errors",
}

__all__ = sorted(_LAZY)

# names that only work with an extra installed (`pip install 'honed[train]'`): importing one without it
# says which extra, instead of failing later inside the call
_EXTRA = {"finetune": "train", "search_recipe": "train", "mine_negatives": "train", "merge_models": "train",
          "choose_merge_weight": "train", "export_onnx": "train", "adapt_to_corpus": "eval", "make_llm": "eval",
          "evaluate_systems": "eval", "evaluate_rag": "eval", "judge_agreement": "eval", "create_app": "serve",
          "ServeConfig": "serve"}


def __getattr__(name: str):
    if name in _LAZY:
        from honed.retriever.errors import HonedError
        from honed.retriever.extras import missing_extra, missing_extra_message, require_extra

        try:
            if name in _EXTRA:
                require_extra(_EXTRA[name], f"honed.{name}")
            module = importlib.import_module(_LAZY[name])
        except HonedError as e:               # a name from an extra that is not installed: say which extra
            raise ModuleNotFoundError(str(e)) from None
        except ModuleNotFoundError as e:
            if not missing_extra(e.name):
                raise
            raise ModuleNotFoundError(missing_extra_message(e.name, f"honed.{name}"), name=e.name) from None
        return getattr(module, name)
    raise AttributeError(f"module 'honed' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

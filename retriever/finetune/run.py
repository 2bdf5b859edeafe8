"""``finetune``: one fine-tuning run, plain or as a recipe search; the entry point users and commands call.

Pipeline: pairs (qrels and/or pairs files) → dev split by query (overlap with
eval queries refused) → hard negatives (``mine_hard_negatives`` + BM25, with a
false-negative guard) → optional cross-encoder teacher + MarginMSE
distillation → ``SentenceTransformerTrainer`` with early stopping on the dev
``InformationRetrievalEvaluator`` → the best checkpoint saved as a standard
sentence-transformers folder with ``honed.json``, a loss/nDCG plot and an MLflow run
(:mod:`.train`); with ``search=True``, several recipes by successive halving (:mod:`.search`).

Example:
    >>> from honed.retriever.finetune import FinetuneConfig, finetune
    >>> res = finetune(FinetuneConfig(data="datasets/cuad-clauses", out="runs/cuad", max_steps=100))  # doctest: +SKIP
    >>> res.status, res.dev_ndcg, res.base_dev_ndcg                                                   # doctest: +SKIP
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..atomic import check_writable
from ..errors import HonedError
from .config import FinetuneConfig, FinetuneResult, check_config
from .search import search_recipe
from .train import prepare_training, train_prepared


def finetune(cfg: FinetuneConfig) -> FinetuneResult:
    """Run the whole fine-tuning pipeline; see the module docstring. Returns the run's result."""
    if cfg.search:
        return search_recipe(cfg)
    check_config(cfg)
    t_start = time.perf_counter()
    budget_s = None
    if cfg.time_budget:
        from .budget import parse_duration

        budget_s = parse_duration(cfg.time_budget)
    out = Path(cfg.out)
    check_writable(out, "run", cfg.force)    # before minutes of training, not after
    work = out.parent / f".{out.name}.work"          # checkpoints + caches: survives a crash, for --resume
    if work.exists() and not cfg.resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        prep = prepare_training(cfg, work, t_start=t_start)
    except HonedError:
        # a refusal (bad input, a weaker teacher) leaves no work folder behind; a crash (any other error) keeps
        # it for --resume, and with --resume it holds an earlier run's checkpoints
        if not cfg.resume:
            shutil.rmtree(work, ignore_errors=True)
        raise
    res = train_prepared(cfg, prep, out, work, t_start=t_start, budget_s=budget_s)
    shutil.rmtree(work, ignore_errors=True)
    return res

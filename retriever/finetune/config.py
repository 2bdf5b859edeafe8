"""What a fine-tuning run is asked to do: :class:`FinetuneConfig`, checked, and read from TOML the same way everywhere.

``honed finetune`` (its flags take their defaults from the dataclass), ``--config FILE``,
``honed retrain --finetune-config``, ``honed adapt`` and the demo all build a
:class:`FinetuneConfig` through :func:`read_finetune_table` / :func:`finetune_config`,
so an unknown key or a value of the wrong type is refused by name, in one place.

Example:
    >>> from honed.retriever.finetune.config import FinetuneConfig, finetune_config
    >>> finetune_config({"max_steps": 100}, out="runs/cuad").max_steps
    100
    >>> finetune_config({"lr": "fast"})
    Traceback (most recent call last):
    ...
    honed.retriever.errors.HonedError: finetune config: key 'lr' must be a number, got 'fast'
"""
from __future__ import annotations

import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HonedError

LOSSES = ("mnrl", "cached-mnrl", "matryoshka", "distill", "distill-mnrl")
DISTILL_LOSSES = ("distill", "distill-mnrl")   # trained on a teacher's margins (distill-mnrl: plus in-batch ranking)
NEGATIVES = ("hard", "confusable")
BATCHING = ("labels", "mask", "texts")
# passages a synthetic query is ranked among by the round-trip filter (its sources + random ones): the pool's
# encoding is the filter's cost, its size how strict the filter is (finetune/synthetic.py)
FILTER_POOL = 500


@dataclass
class FinetuneConfig:
    """Everything a run needs; the CLI flags and a TOML ``[finetune]`` table map 1:1 onto it."""

    out: str = "runs/tuned"
    data: str | None = None            # BEIR folder: its train split gives pairs and the mining corpus
    pairs: list[str] = field(default_factory=list)   # extra pairs files (synthetic, feedback)
    corpus: str | None = None          # unlabelled passages (BEIR folder or corpus.jsonl) to mine negatives and
    #                                    dev distractors from: the target corpus of a synthetic-only run (GPL)
    corpus_split: str = "train"        # which corpus of a per-split `corpus` folder
    base: str = "minilm"
    loss: str = "mnrl"
    matryoshka_dims: list[int] = field(default_factory=lambda: [384, 256, 128, 64])
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 32
    mini_batch_size: int = 8           # cached-mnrl: memory-bound chunk of the big batch
    lr: float = 1e-4                   # from evidence: cuad-clauses demo recipe 0.481 at 1e-4 vs 0.444-0.454 at
    #                                    5e-5; the cuad search's best (docs/measurements.md). It forgets more out of
    #                                    domain, so the demo keeps 5e-5 (results/demo-lr-1e-4.json)
    warmup_ratio: float = 0.1
    max_seq_length: int = 256          # training length; the saved model reads max(this, the base model's)
    num_negatives: int = 1             # 0 = in-batch negatives only
    relative_margin: float = 0.05
    bm25_negatives: bool = True
    batching: str = "mask"             # how a query's labelled positives are kept from its in-batch negatives:
    #                                    mask: the loss leaves them out, batches as texts (finetune/losses.py):
    #                                    the demo's recipe +0.026 on cuad-clauses, +0.009 on cuad-qa, +0.003 out
    #                                    of domain vs texts (batching-mask.json) | texts: not at all, only identical
    #                                    texts are kept apart (sentence-transformers' NO_DUPLICATES) | labels: no
    #                                    row of a batch holds a passage labelled relevant to another row's query
    #                                    (finetune/batching.py): +0.025 on cuad-clauses, but contract questions
    #                                    lose the other contracts' clauses as negatives (cuad-qa -0.014,
    #                                    batching.json; the demo's answers failed the release gate with it)
    negatives: str = "hard"            # hard | confusable: put first the mined negatives of the concepts the base
    #                                    model confuses with the query's (labels: `concepts`; finetune/mining.py)
    concepts: str = "auto"             # concept labels of the train split for confusable negatives: auto,
    #                                    query:FIELD, doc:FIELD, id:REGEX or clusters[:K] (retriever/data/concepts.py)
    max_mine_docs: int = 4000          # mining corpus: all positives + random passages up to this
    mine_max_seq_length: int = 128     # mining only ranks candidates: half the tokens, ~2x faster encoding
    teacher: str | None = None         # "minilm" | "mpnet" | a model folder: train a cross-encoder teacher from it;
    #                                    a reranker folder (`honed reranker train`): distil that one, as trained
    teacher_epochs: float = 1.0
    allow_weaker_teacher: bool = False  # distil a teacher no better than the base model on dev (refused by default)
    dev_fraction: float = 0.15
    dev_max_docs: int = 2000
    eval_steps: int = 50
    patience: int = 3
    seed: int = 42
    resume: bool = False
    track: bool = True
    drop_eval_overlap: bool = False    # drop (instead of refusing) training queries that equal eval queries
    frozen_eval: list[str] = field(default_factory=list)   # eval sets (BEIR folders, e.g. `honed annotate export`):
    #                                    their test queries and judged passages never enter training
    time_budget: str | None = None     # "20m", "1h30m": plan steps and subsample pairs to end on time (budget.py)
    device: str | None = None          # auto (cuda > mps > cpu) | cpu | cuda | cuda:N | mps; None: $HONED_DEVICE
    precision: str = "auto"            # auto (bf16 on a GPU that has it and on a CPU with native bf16, else fp32;
    #                                    fp16 on an older GPU) | fp32 | bf16 | fp16: the training autocast (device.py)
    gradient_checkpointing: str = "auto"   # auto (on for the CPU from 256 tokens when the gradient cache is off) | on | off:
    #                                    recompute activations in the backward pass (same results, less memory)
    gradient_cache: str = "auto"       # auto (on for the CPU) | on | off: compute the mnrl loss in chunks of
    #                                    mini_batch_size sequences (GradCache: same loss and gradients, less memory)
    router: bool = True                # keep a domain router in the run: indexes built with it store the base
    #                                    model's vectors for passages unlike the training corpus (routing.py)
    search: bool = False               # successive halving over a small recipe space (search.py); needs time_budget
    search_trials: int = 6             # recipes tried at the first rung of the search
    force: bool = False                # replace `out` even if it is not a honed run folder


@dataclass
class FinetuneResult:
    out: Path
    status: str                        # "ok" | "failed"
    reason: str
    base_dev_ndcg: float
    dev_ndcg: float
    manifest: dict


# Below this sequence length `auto` leaves the gradient cache off on the CPU (checkpointing saves the
# memory instead): a batch-32 step at 128 tokens took 9.2 s cached vs 8.8 s checkpointed, at 256 tokens
# 14.8 vs 20.2 s (benchmarks/results/memory-steps-128.json, memory-cache.json; same machine).
CACHE_MIN_SEQ_LENGTH = 256
# Below this sequence length `auto` leaves checkpointing off on the CPU too: the demo's batch-32 steps at 128
# tokens took 3.5 s instead of 5.2 s (bf16; 7.7 vs 8.8 s in fp32, memory-steps-128.json) for a peak of 3.7 GB,
# while at 256 tokens the activations are what fills memory (8.9 GB vs 4.6 GB checkpointed, memory.json).
CHECKPOINT_MIN_SEQ_LENGTH = 256


def use_checkpointing(setting: str, device: str, max_seq_length: int = CHECKPOINT_MIN_SEQ_LENGTH) -> bool:
    """Whether to recompute activations in the backward pass.

    On the CPU by default from ``CHECKPOINT_MIN_SEQ_LENGTH`` tokens, for the losses that have no
    cached form (an mnrl run uses the gradient cache instead, :func:`use_gradient_cache`): a batch
    of 32 triples at 256 tokens keeps ~7 GB of MiniLM activations for the backward pass (the run
    peaked at 8.9 GB); recomputing them layer by layer gives the same gradients in half the memory,
    for more compute per step (docs/measurements.md). Shorter sequences and a GPU gain more from the
    speed.
    """
    if setting not in ("auto", "on", "off"):
        raise HonedError(f"--gradient-checkpointing must be auto, on or off, got {setting!r}")
    auto = device == "cpu" and max_seq_length >= CHECKPOINT_MIN_SEQ_LENGTH
    return setting == "on" or (setting == "auto" and auto)


def use_gradient_cache(setting: str, loss: str, device: str, max_seq_length: int = CACHE_MIN_SEQ_LENGTH) -> bool:
    """Whether the mnrl loss runs as GradCache (sentence-transformers' CachedMultipleNegativesRankingLoss).

    GradCache embeds the whole batch without gradients, computes the loss and its gradient
    with respect to the embeddings, then re-embeds `mini_batch_size` sequences at a time with
    gradients and back-propagates the cached ones: the same loss and gradients as MNRL
    (a fast test checks it on the real model), while only one chunk's activations are alive.
    On the CPU by default at ``CACHE_MIN_SEQ_LENGTH`` tokens and more: there it keeps less
    memory than checkpointing and is faster; shorter sequences need no memory saver
    (docs/measurements.md). Only the mnrl loss has a cached form here.
    """
    if setting not in ("auto", "on", "off"):
        raise HonedError(f"--gradient-cache must be auto, on or off, got {setting!r}")
    if setting == "on" and loss != "mnrl":
        raise HonedError(f"--gradient-cache on needs --loss mnrl (got {loss!r}; cached-mnrl is cached already)")
    auto = device == "cpu" and max_seq_length >= CACHE_MIN_SEQ_LENGTH
    return loss == "mnrl" and (setting == "on" or (setting == "auto" and auto))


def check_config(cfg: FinetuneConfig) -> None:
    """Refuse a bad combination now (exit 2), not after minutes of mining."""
    if cfg.loss not in LOSSES:
        raise HonedError(f"--loss must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    if cfg.loss in DISTILL_LOSSES and not cfg.teacher:
        raise HonedError(f"--loss {cfg.loss} needs --teacher (minilm | mpnet | a cross-encoder folder)")
    if cfg.loss in DISTILL_LOSSES and cfg.num_negatives < 1:
        raise HonedError(f"--loss {cfg.loss} needs --num-negatives ≥ 1 (triples to score)")
    if cfg.batching not in BATCHING:
        raise HonedError(f"--batching must be one of {', '.join(BATCHING)}, got {cfg.batching!r}")
    if cfg.negatives not in NEGATIVES:
        raise HonedError(f"--negatives must be one of {', '.join(NEGATIVES)}, got {cfg.negatives!r}")
    if cfg.negatives == "confusable":
        from ..data.concepts import parse_concepts

        parse_concepts(cfg.concepts)
        if not cfg.data:
            raise HonedError("--negatives confusable needs --data (its train split's concept labels)")
        if cfg.num_negatives < 1:
            raise HonedError("--negatives confusable needs --num-negatives ≥ 1 (mined negatives to choose)")
    use_checkpointing(cfg.gradient_checkpointing, "cpu")
    use_gradient_cache(cfg.gradient_cache, cfg.loss, "cpu")
    from ..device import PRECISIONS

    if cfg.precision not in PRECISIONS:
        raise HonedError(f"--precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")


def finetune_config(values: dict, where: str = "finetune config", **fixed) -> FinetuneConfig:
    """A :class:`FinetuneConfig` from a mapping (TOML table, overrides): keys and types checked, `fixed` on top."""
    return FinetuneConfig(**{**check_finetune_table(values, where), **fixed})


def read_finetune_table(path: str | os.PathLike, section: str = "finetune") -> dict:
    """The checked ``[finetune]`` table of a TOML file (dashes in keys read as underscores)."""
    from ..report_schema import read_file

    p = Path(path)
    doc = read_file(p, "finetune config", tomllib.loads)
    table = doc.get(section, {})
    if not isinstance(table, dict):
        raise HonedError(f"{p}: [{section}] must be a table")
    return check_finetune_table(table, f"{p}: [{section}]")


def check_finetune_table(values: dict, where: str = "finetune config") -> dict:
    """`values` with keys normalised (``max-steps`` → ``max_steps``), each a field of the right type."""
    hints = typing.get_type_hints(FinetuneConfig)
    out = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in hints:
            raise HonedError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(hints))})")
        out[name] = _checked(value, hints[name], f"{where}: key {key!r}")
    return out


# By hand, not pydantic: pydantic is not a base dependency, and the CLI imports this module on every command.
def _checked(value, hint, where: str):
    """`value` as the field's type allows (an int where a float is wanted; never a bool for a number)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for t in options:
        origin = typing.get_origin(t)
        if origin is list and isinstance(value, list):
            (item,) = typing.get_args(t)
            return [_checked(v, item, where + " (an item)") for v in value]
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is str and isinstance(value, str):
            return value
    want = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    names = [want.get(t, "a list" if typing.get_origin(t) is list else "null") for t in options]
    raise HonedError(f"{where} must be {' or '.join(names)}, got {value!r}")

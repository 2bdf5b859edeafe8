"""Train one recipe: the shared preparation (pairs, dev split, base score, hard negatives, teacher) and one training run.

:func:`prepare_training` does what every run on the same data shares; :func:`train_prepared`
trains one model on it with one recipe (``SentenceTransformerTrainer``, early stopping on
the dev ``InformationRetrievalEvaluator``) and saves the best checkpoint atomically with
``honed.json``, a loss/nDCG plot and an MLflow run. :func:`~.run.finetune` calls them once;
a recipe search (:mod:`.search`) calls :func:`train_prepared` once per trial.

Example:
    >>> from honed.retriever.finetune import FinetuneConfig
    >>> from honed.retriever.finetune.train import prepare_training, train_prepared
    >>> cfg = FinetuneConfig(data="datasets/cuad-clauses", out="runs/cuad", max_steps=100)
    >>> prep = prepare_training(cfg, Path("runs/.cuad.work"))                        # doctest: +SKIP
    >>> train_prepared(cfg, prep, Path("runs/cuad"), Path("runs/.cuad.work")).dev_ndcg  # doctest: +SKIP
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import json
import math
import random
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir, remove_stale_temps
from ..data.beir import doc_text, load_beir
from ..errors import DataError, HonedError
from .config import DISTILL_LOSSES, LOSSES, FinetuneConfig, FinetuneResult, use_checkpointing, use_gradient_cache
from .pairs import (Pair, check_no_overlap, dev_unlike_test, fingerprint_pairs, normalise_text, pairs_from_qrels,
                    read_pairs, split_dev)
from .progress import phase, say
from .tracking import log_run

def _set_seeds(seed: int) -> None:
    import torch
    from transformers import set_seed

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    set_seed(seed)


def collect_pairs(cfg: FinetuneConfig):
    """Training pairs, training corpus (for mining), the eval queries training must not see, and the data folder's
    eval splits ({"test": ..., "dev": ...}, those it has)."""
    pairs: list[Pair] = []
    corpus: dict[str, str] = {}
    eval_queries: list[str] = []
    eval_splits: dict = {}
    if cfg.data:
        train = load_beir(cfg.data, "train")
        pairs += pairs_from_qrels(train)
        corpus.update({d: doc_text(doc) for d, doc in train.corpus.items()})
        for split in ("test", "dev"):
            try:
                ds = load_beir(cfg.data, split)
            except DataError:
                continue
            eval_queries += list(ds.queries.values())
            eval_splits[split] = ds
    for f in cfg.pairs:
        extra = read_pairs(f)
        pairs += extra
        for p in extra:
            # a stable id: Python's hash() of a str changes per process, and with it seeded sampling
            corpus.setdefault(p.positive_id or f"pos:{hashlib.sha1(p.positive.encode()).hexdigest()[:16]}", p.positive)
    if not pairs:
        raise HonedError("no training data: give --data (a BEIR folder with a train split) and/or --pairs FILE")
    if cfg.corpus:
        from ..index import load_corpus

        for did, doc in load_corpus(cfg.corpus, cfg.corpus_split).items():
            corpus.setdefault(did, doc_text(doc))
        for split in ("test", "dev") if Path(cfg.corpus).is_dir() else ():
            try:      # the corpus's own eval queries must not be trained on either
                eval_queries += list(load_beir(cfg.corpus, split).queries.values())
            except DataError:
                continue
    return pairs, corpus, eval_queries, eval_splits


def dev_evaluator(dev: list[Pair], corpus: dict[str, str], max_docs: int, seed: int, dev_ds=None):
    """An InformationRetrievalEvaluator over dev positives + random passages (a cheap subsampled corpus)."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    if dev_ds is not None:
        queries, rel = dev_ds.queries, {q: set(r) for q, r in dev_ds.qrels.items()}
        pool = {d: doc_text(dev_ds.corpus[d]) for r in rel.values() for d in r}
        others = [d for d in dev_ds.corpus if d not in pool]
        src = {d: doc_text(dev_ds.corpus[d]) for d in others}
    else:
        queries, rel, pool = {}, {}, {}
        qid_of: dict[str, str] = {}
        for p in dev:
            qid = qid_of.setdefault(p.query, p.query_id or f"dev{len(qid_of)}")
            queries[qid] = p.query
            did = p.positive_id or f"devpos{len(pool)}"
            pool[did] = p.positive
            rel.setdefault(qid, set()).add(did)
        src = {d: t for d, t in corpus.items() if d not in pool}
    rng = random.Random(seed)
    extra = rng.sample(sorted(src), min(len(src), max(0, max_docs - len(pool))))
    pool.update({d: src[d] for d in extra})
    return InformationRetrievalEvaluator(queries=queries, corpus=pool, relevant_docs=rel, name="dev",
                                         ndcg_at_k=[10], mrr_at_k=[10], accuracy_at_k=[1, 10],
                                         precision_recall_at_k=[10, 100], map_at_k=[100],
                                         batch_size=32, show_progress_bar=False, write_csv=False), queries, rel, pool


def dev_against_test(cfg: FinetuneConfig, eval_splits: dict, dev_q: dict, dev_rel: dict) -> dict | None:
    """A dev split held out from the training queries against the data folder's test split
    (:func:`~honed.retriever.finetune.pairs.dev_unlike_test`); says so when they look unlike. None: nothing to
    compare (the folder's own dev split, or no test split)."""
    if "dev" in eval_splits or "test" not in eval_splits or not dev_q:
        return None
    check = dev_unlike_test(dev_q, dev_rel, eval_splits["test"])
    if check["unlike"]:
        say(f"warning: the dev split, held out from the training queries, is unlike the test split: "
            f"{'; '.join(check['unlike'])}. Early stopping, the run's status and the teacher check are decided on "
            f"dev and may not hold on test: give {cfg.data} a dev split like the queries you will serve "
            f"(qrels/dev.tsv), which a run uses instead")
    return check


def _mining_corpus(corpus: dict[str, str], pairs: list[Pair], max_docs: int, seed: int) -> dict[str, str]:
    pos_ids = {p.positive_id for p in pairs if p.positive_id in corpus}
    keep = {d: corpus[d] for d in pos_ids}
    rest = sorted(d for d in corpus if d not in keep)
    rng = random.Random(seed)
    for d in rng.sample(rest, min(len(rest), max(0, max_docs - len(keep)))):
        keep[d] = corpus[d]
    return keep


def _loss(cfg: FinetuneConfig, model, cached: bool = False, train_ds=None):
    """The training loss: MarginMSE for distill, else MNRL (chunked as GradCache when `cached` or cached-mnrl,
    masked per query with --batching mask, inside Matryoshka for matryoshka, beside MarginMSE for distill-mnrl);
    `train_ds` feeds the mask."""
    from sentence_transformers.sentence_transformer import losses

    if cfg.loss == "distill":
        return losses.MarginMSELoss(model)
    if cfg.loss not in ("mnrl", "cached-mnrl", "matryoshka", "distill-mnrl"):
        raise HonedError(f"--loss must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    chunked = cfg.loss == "cached-mnrl" or (cfg.loss == "mnrl" and cached)
    if cfg.batching == "mask":
        from .losses import CachedLabelMaskedRankingLoss, LabelledPositives, LabelMaskedRankingLoss

        positives = LabelledPositives(train_ds)
        ranking = (CachedLabelMaskedRankingLoss(model, positives, mini_batch_size=cfg.mini_batch_size) if chunked
                   else LabelMaskedRankingLoss(model, positives))
    else:
        ranking = (losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=cfg.mini_batch_size) if chunked
                   else losses.MultipleNegativesRankingLoss(model))
    if cfg.loss == "matryoshka":
        return losses.MatryoshkaLoss(model, ranking, matryoshka_dims=cfg.matryoshka_dims)
    if cfg.loss == "distill-mnrl":
        from .losses import DistilledRankingLoss

        return DistilledRankingLoss(model, ranking)
    return ranking


def _train_dataset(cfg: FinetuneConfig, triples: list[Pair], margins: list[float] | None):
    from datasets import Dataset

    cols = {"anchor": [t.query for t in triples], "positive": [t.positive for t in triples]}
    if triples and triples[0].negatives:
        cols["negative"] = [t.negatives[0] for t in triples]
    if cfg.loss == "distill-mnrl":     # the margin for MarginMSE and the row for the mask (losses.py)
        cols["label"] = [[m, i] for i, m in enumerate(margins)]
    elif margins is not None:
        cols["label"] = margins
    elif cfg.batching == "mask":     # distill (margins) has no in-batch negatives to mask
        from .losses import ROW_COLUMN

        cols[ROW_COLUMN] = list(range(len(triples)))     # the loss finds each row's labelled positives by index
    return Dataset.from_dict(cols)


def _plot(history: list[dict], base_ndcg: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss = [(h["step"], h["loss"]) for h in history if "loss" in h]
    ndcg = [(h["step"], h["eval_dev_cosine_ndcg@10"]) for h in history if "eval_dev_cosine_ndcg@10" in h]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    if loss:
        ax.plot(*zip(*loss), color="#9aa5b1", label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax2 = ax.twinx()
    if ndcg:
        ax2.plot(*zip(*ndcg), "o-", color="#2f6fde", label="dev nDCG@10")
    ax2.axhline(base_ndcg, color="#2f6fde", ls="--", lw=1, label=f"base dev nDCG@10 {base_ndcg:.3f}")
    ax2.set_ylabel("dev nDCG@10")
    fig.legend(loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def split_and_guard(cfg: FinetuneConfig, pairs: list[Pair], eval_queries: list[str], dev_ds):
    """(train pairs, dev pairs, pairs dropped): the dev split by query, and no eval query in training."""
    if dev_ds is not None:
        train_pairs, dev_pairs = pairs, []          # eval_queries already holds the dev split's queries
    else:
        train_pairs, dev_pairs = split_dev(pairs, cfg.dev_fraction, cfg.seed)
        eval_queries = eval_queries + [p.query for p in dev_pairs]
    n_before = len(train_pairs)
    if cfg.drop_eval_overlap:
        banned = {normalise_text(q) for q in eval_queries}
        train_pairs = [p for p in train_pairs if normalise_text(p.query) not in banned]
    check_no_overlap([p.query for p in train_pairs], eval_queries, what="eval (dev/test)")
    return train_pairs, dev_pairs, n_before - len(train_pairs)


def exclude_frozen(pairs: list[Pair], corpus: dict[str, str], eval_sets: list[str]
                   ) -> tuple[list[Pair], dict[str, str], dict]:
    """Training pairs and mining corpus without the eval sets' queries and judged passages, and counts."""
    from .pairs import drop_frozen, frozen_eval_set

    frozen = frozen_eval_set(tuple(str(d) for d in eval_sets))
    kept, stats = drop_frozen(pairs, frozen)
    if not kept:
        raise HonedError(f"--frozen-eval: every training pair uses a query or passage of {', '.join(eval_sets)}; "
                         "nothing is left to train on")
    left = {d: t for d, t in corpus.items() if not frozen.has_doc(d, t)}
    stats["dropped_eval_passages"] = len(corpus) - len(left)
    return kept, left, stats


def confusable_concepts(cfg: FinetuneConfig, base_enc) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """(query text → concept, passage text → concepts) of the train split, by the rule ``cfg.concepts``."""
    from ..data.concepts import concept_labels

    train = load_beir(cfg.data, "train")
    labels = concept_labels(train, cfg.concepts, encoder=base_enc, seed=cfg.seed)
    say(f"confusable negatives: concepts from {labels.source}")
    return ({train.queries[q]: c for q, c in labels.query.items()},
            {doc_text(train.corpus[d]): cs for d, cs in labels.docs.items() if d in train.corpus})


def hard_negatives(cfg: FinetuneConfig, train_pairs: list[Pair], corpus: dict[str, str], base_enc, work: Path,
                   stats: dict, timings: dict) -> list[Pair]:
    """Mine `cfg.num_negatives` per pair on the mining corpus; counts go to `stats`, the time to `timings`."""
    from ..device import ranking_autocast
    from .mining import mine_negatives

    t0 = time.perf_counter()
    say(f"mining hard negatives (encoding up to {cfg.max_mine_docs} passages at "
         f"{cfg.mine_max_seq_length or cfg.max_seq_length} tokens) …")
    concepts = confusable_concepts(cfg, base_enc) if cfg.negatives == "confusable" else None
    with ranking_autocast(base_enc.device, cfg.precision):       # negatives only: bf16 ranks them faster
        triples = mine_negatives(train_pairs, _mining_corpus(corpus, train_pairs, cfg.max_mine_docs, cfg.seed),
                                 base_enc, num_negatives=cfg.num_negatives, relative_margin=cfg.relative_margin,
                                 bm25=cfg.bm25_negatives, seed=cfg.seed, cache_folder=str(work / "mining-cache"),
                                 max_seq_length=cfg.mine_max_seq_length, stats=stats, concepts=concepts)
    timings["mining_s"] = round(time.perf_counter() - t0, 1)
    timings["mining_random_fallback"] = stats.get("random_fallback")
    say(f"hard negatives: {len(triples)} examples from {stats['pairs']} pairs "
         f"({stats['positives_per_query_median']:g} positives per query, median); "
         f"{stats['guarded_out']} candidates guarded out as likely unlabelled positives; "
         f"random fallback for {stats['random_fallback']} pairs "
         f"({stats['random_fallback_rate']:.1%}) in {timings['mining_s']} s")
    if not triples:
        raise HonedError("hard-negative mining kept no negatives (guard too strict?); "
                         "lower --relative-margin or use --num-negatives 0")
    return triples


# Pairs mined under a time budget, as a multiple of what the plan says training can use: the plan made
# after mining (fit_to_budget) trims to the exact count, this only keeps mining from working for nothing.
MINE_SLACK = 1.5


def pairs_within_budget(cfg: FinetuneConfig, pairs: list[Pair], corpus: dict[str, str], spent_s: float,
                        texts_per_s: float, eval_s: float) -> list[Pair]:
    """The pairs worth mining negatives for: as many as the time left can train on (with slack), per query balanced.

    Mining costs about one encoding of the mining corpus; the rest of the budget is planned as
    training would plan it. With 100k pairs and a 20-minute budget on a CPU, a few thousand
    are trained on: mining the others only costs time and memory.
    """
    from .budget import balanced_subsample, parse_duration, plan_budget

    # the mining corpus is encoded at the mining length (a fraction of the training length: encoding cost is
    # about linear in tokens here), the queries are short (~a tenth of a passage)
    short = (cfg.mine_max_seq_length or cfg.max_seq_length) / cfg.max_seq_length
    n_texts = min(cfg.max_mine_docs, len(corpus)) * short + 0.1 * len({p.query for p in pairs})
    mining_s = n_texts / max(texts_per_s, 1e-9)
    plan = plan_budget(parse_duration(cfg.time_budget), spent_s + mining_s, texts_per_s, eval_s,
                       len(pairs) * cfg.num_negatives, cfg.batch_size, 3, cfg.epochs)
    keep = math.ceil(MINE_SLACK * plan.examples / cfg.num_negatives)
    if keep >= len(pairs):
        return pairs
    say(f"time budget {cfg.time_budget}: ~{plan.examples} examples fit after mining (~{mining_s:.0f} s); "
         f"mining {keep} of {len(pairs)} pairs, balanced over queries")
    return balanced_subsample(pairs, keep)


def fit_to_budget(cfg: FinetuneConfig, budget_s: float, spent_s: float, texts_per_s: float, eval_s: float,
                  triples: list[Pair], margins: list[float] | None):
    """(plan, triples, margins): the steps that fit the time left, and the examples subsampled per query to them."""
    from .budget import balanced_subsample, plan_budget

    plan = plan_budget(budget_s, spent_s, texts_per_s, eval_s, len(triples), cfg.batch_size,
                       3 if cfg.num_negatives > 0 else 2, cfg.epochs)
    if plan.examples < len(triples):
        keep = sorted(balanced_subsample(list(range(len(triples))), plan.examples, key=lambda i: triples[i].query))
        triples = [triples[i] for i in keep]
        margins = [margins[i] for i in keep] if margins is not None else None
    say(f"time budget {cfg.time_budget}: {spent_s:.0f} s spent, ~{plan.step_s_estimate:.1f} s per step → "
         f"{plan.max_steps} steps over {plan.examples} examples, evaluating every {plan.eval_steps}")
    return plan, triples, margins


def triples_to_score(cfg: FinetuneConfig, triples: list[Pair]) -> list[Pair]:
    """The mined examples a run capped at ``max_steps`` trains on: ``max_steps × batch_size`` of them, at random.

    The teacher's scoring costs a cross-encoder pass per example, so scoring what training never reaches was most
    of a capped run: distilling cuad-clauses for 60 steps scored 20,664 examples to train on 1,920 (1,109 s of the
    run's 1,550). A uniform sample is what the trainer's shuffle would have drawn; a sample balanced over queries
    would not be: on cuad-clauses it gives the 1,234 mostly one-passage contract questions the same share as the
    clause types that have tens of examples each, another training set than an uncapped run's.
    """
    if cfg.max_steps <= 0 or cfg.time_budget or len(triples) <= cfg.max_steps * cfg.batch_size:
        return triples
    keep = sorted(random.Random(cfg.seed).sample(range(len(triples)), cfg.max_steps * cfg.batch_size))
    say(f"--max-steps {cfg.max_steps}: the teacher scores the {len(keep)} of {len(triples)} mined examples "
        f"training uses (batch {cfg.batch_size}), drawn at random")
    return [triples[i] for i in keep]


@dataclass
class Prepared:
    """What every training run on the same data shares: the split, the dev evaluator, the base score, negatives.

    Made once by :func:`prepare_training`; a plain run trains on it once, a recipe search
    (``search.py``) trains each trial on the same one.
    """

    device: str
    base_path: Path
    base_enc: object
    pairs: list[Pair]
    train_pairs: list[Pair]
    frozen_stats: dict | None
    evaluator: object
    dev_q: dict
    dev_rel: dict
    dev_pool: dict
    base_dev: float
    eval_s: float                      # one dev evaluation here: what each one during training will cost
    triples: list[Pair]                # train pairs with their mined negatives (the pairs when none were mined)
    margins: list[float] | None        # teacher margins per triple (distillation)
    mining_stats: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    corpus: dict = field(default_factory=dict)    # id → text: the training corpus (the domain, for the router)
    teacher_metrics: dict | None = None
    dev_vs_test: dict | None = None    # the held-out dev split against the test split (dev_against_test)

    def examples(self, cfg: FinetuneConfig) -> tuple[list[Pair], list[float] | None]:
        """The training examples and labels for `cfg`: in-batch only, mined triples, or distillation margins."""
        if cfg.num_negatives == 0:
            return self.train_pairs, None
        return self.triples, self.margins if cfg.loss in DISTILL_LOSSES else None


def teacher_is_weaker(teacher_metrics: dict, base_dev: float) -> bool:
    """Whether the teacher ranks the dev split worse than the base model it is meant to teach.

    The teacher's nDCG@10 reranks each dev query's positives and the base model's top 30 others;
    the base model's own order of those candidates scores at least its full-corpus dev nDCG@10
    (removing passages can only lift a positive), so a teacher below that is worse on the
    same candidates, and distilling it moves the student away from the better ranking.
    """
    return teacher_metrics["dev_ndcg@10"] < base_dev


def check_teacher(teacher_metrics: dict, base_dev: float, allow_weaker: bool) -> None:
    """Refuse to distil a teacher that ranks the dev split no better than the base model (unless allowed).

    Its margins would pull the student toward a worse ranking: on SciFact's synthetic queries a teacher
    reranking dev at 0.18 nDCG@10 against the base model's 0.96 cost the student 0.088 on test (gpl-scifact.json),
    and mnrl on the same pairs lost nothing (gpl-scifact-mnrl.json).
    """
    if not teacher_metrics["weaker_than_base"]:
        return
    what = (f"the reranker improves no mix with the base model on dev (best weight 0; alone "
            f"{teacher_metrics['rerank_alone_dev_ndcg@10']:.4f})" if "mix_weight" in teacher_metrics
            else f"the teacher reranks dev at nDCG@10 {teacher_metrics['dev_ndcg@10']:.4f}")
    if allow_weaker:
        say(f"warning: {what}, the base model {base_dev:.4f}; distilling it anyway (--allow-weaker-teacher)")
        return
    raise HonedError(f"--teacher: {what}, the base model {base_dev:.4f}: distilling it would pull the student "
                     "toward a worse ranking; train with --loss mnrl (no teacher) or a stronger teacher (--teacher "
                     "mpnet, or a reranker that beats the first stage on dev), or pass --allow-weaker-teacher")


def prepare_training(cfg: FinetuneConfig, work: Path, margins: bool | None = None,
                     t_start: float | None = None) -> Prepared:
    """Pairs → dev split (leak-guarded) → base dev score → hard negatives → teacher margins.

    `margins`: score the triples with the teacher (default: when ``cfg.loss`` is distill).
    `t_start`: when the run's time budget (``cfg.time_budget``) started; with a budget, only the
    pairs the budget can train on are mined (see :func:`pairs_within_budget`).
    """
    t_start = time.perf_counter() if t_start is None else t_start
    _set_seeds(cfg.seed)
    with phase("loading torch and sentence-transformers"):     # the slow imports, timed once
        importlib.import_module("sentence_transformers.sentence_transformer")

    from ..device import precision, resolve_device
    from ..encoder import load_encoder
    from ..models import resolve_model

    device = resolve_device(cfg.device)
    say(f"device {device} ({precision(device, cfg.precision)})")
    with phase("loading pairs"):
        pairs, corpus, eval_queries, eval_splits = collect_pairs(cfg)
    dev_ds = eval_splits.get("dev")
    frozen_stats = None
    if cfg.frozen_eval:
        with phase(f"leak guard: removing {len(cfg.frozen_eval)} frozen eval set(s) from training"):
            pairs, corpus, frozen_stats = exclude_frozen(pairs, corpus, cfg.frozen_eval)
        say(f"leak guard: {frozen_stats}")
    with phase(f"dev split and the eval-overlap check ({len(pairs)} pairs)"):
        train_pairs, dev_pairs, n_dropped = split_and_guard(cfg, pairs, eval_queries, dev_ds)

    with phase(f"loading the base model {cfg.base}"):
        base_path = resolve_model(cfg.base)
        base_enc = load_encoder(cfg.base, batch_size=cfg.batch_size, max_seq_length=cfg.max_seq_length,
                                backend="torch", device=device)
    with phase("scoring the base model on the dev split") as dev_phase:
        evaluator, dev_q, dev_rel, dev_pool = dev_evaluator(dev_pairs, corpus, cfg.dev_max_docs, cfg.seed, dev_ds)
        base_dev = evaluator(base_enc.model)["dev_cosine_ndcg@10"]
    eval_s = time.perf_counter() - dev_phase.t0
    say(f"base dev nDCG@10 {base_dev:.4f} ({len(dev_q)} queries, {len(dev_pool)} passages); "
         f"{len(train_pairs)} training pairs")
    dev_vs_test = dev_against_test(cfg, eval_splits, dev_q, dev_rel)

    timings = {"dropped_overlapping_pairs": n_dropped}
    mining_stats: dict = {}
    triples = train_pairs
    if cfg.num_negatives > 0:
        to_mine = train_pairs
        if cfg.time_budget:
            to_mine = pairs_within_budget(cfg, train_pairs, corpus, time.perf_counter() - t_start,
                                          (len(dev_pool) + len(dev_q)) / max(eval_s, 1e-9), eval_s)
            timings["pairs_mined"] = len(to_mine)
        triples = hard_negatives(cfg, to_mine, corpus, base_enc, work, mining_stats, timings)

    scored, teacher_metrics = None, None
    if cfg.teacher:
        from ..reranker import is_reranker
        from .teacher import score_margins, served_margins, train_teacher, trained_teacher

        t0 = time.perf_counter()
        if is_reranker(cfg.teacher):
            say(f"teacher: the reranker {cfg.teacher} as trained, mixed with {cfg.base} as a two-stage system serves it")
            teacher, teacher_metrics = trained_teacher(
                cfg.teacher, rerank_dev_samples(dev_q, dev_rel, dev_pool, base_enc, ranked=True), device)
            say(f"teacher on dev: nDCG@10 {teacher_metrics['dev_ndcg@10']:.4f} at reranker weight "
                f"{teacher_metrics['mix_weight']} (the reranker alone {teacher_metrics['rerank_alone_dev_ndcg@10']:.4f}, "
                f"{cfg.base} alone {teacher_metrics['first_stage_dev_ndcg@10']:.4f})")
        else:
            say(f"training the cross-encoder teacher from {cfg.teacher} …")
            teacher, teacher_metrics = train_teacher(triples, rerank_dev_samples(dev_q, dev_rel, dev_pool, base_enc),
                                                     cfg.teacher, work / "teacher",
                                                     epochs=cfg.teacher_epochs, seed=cfg.seed,
                                                     max_length=cfg.max_seq_length, device=device,
                                                     precision=cfg.precision)
            teacher_metrics["weaker_than_base"] = teacher_is_weaker(teacher_metrics, base_dev)
        if (cfg.loss in DISTILL_LOSSES) if margins is None else margins:
            check_teacher(teacher_metrics, base_dev, cfg.allow_weaker_teacher)
            if margins is None:
                triples = triples_to_score(cfg, triples)
            # a reranker folder teaches as the two-stage system serves it (its mix weight), a fresh teacher alone
            scored = (served_margins(teacher, base_enc, triples, teacher_metrics["mix_weight"], teacher_metrics["scale"])
                      if "mix_weight" in teacher_metrics else score_margins(teacher, triples))
        timings["teacher_s"] = round(time.perf_counter() - t0, 1)
    return Prepared(device=device, base_path=base_path, base_enc=base_enc, pairs=pairs, train_pairs=train_pairs,
                    frozen_stats=frozen_stats, evaluator=evaluator, dev_q=dev_q,
                    dev_rel=dev_rel, dev_pool=dev_pool, base_dev=float(base_dev), eval_s=eval_s, triples=triples,
                    margins=scored, mining_stats=mining_stats, timings=timings, teacher_metrics=teacher_metrics,
                    corpus=corpus, dev_vs_test=dev_vs_test)


def train_prepared(cfg: FinetuneConfig, prep: Prepared, out: Path, work: Path, t_start: float | None = None,
                   budget_s: float | None = None, log_model: bool = True, extra: dict | None = None
                   ) -> FinetuneResult:
    """Train one model on `prep` with `cfg`'s recipe, save the best checkpoint to `out` (atomic).

    `budget_s` counts from `t_start` (``time.perf_counter()``); `log_model`: upload the model
    folder to MLflow (a search's trials log only their numbers); `extra`: more manifest keys.
    """
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from transformers import EarlyStoppingCallback

    from ..device import precision, trainer_precision_args
    from ..models import model_fingerprint
    from .batching import NoLabelledNegativesBatchSampler

    t_start = time.perf_counter() if t_start is None else t_start
    device, base_dev, evaluator = prep.device, prep.base_dev, prep.evaluator
    _set_seeds(cfg.seed)
    triples, margins = prep.examples(cfg)
    plan, callbacks = None, [EarlyStoppingCallback(early_stopping_patience=cfg.patience)]
    if budget_s is not None:
        from .budget import deadline_callback

        plan, triples, margins = fit_to_budget(cfg, budget_s, time.perf_counter() - t_start,
                                               (len(prep.dev_pool) + len(prep.dev_q)) / max(prep.eval_s, 1e-9),
                                               prep.eval_s, triples, margins)
        deadline = time.time() + budget_s - (time.perf_counter() - t_start)
        callbacks.append(deadline_callback(deadline, prep.eval_s))
    cached = use_gradient_cache(cfg.gradient_cache, cfg.loss, device, cfg.max_seq_length)
    # one memory saver is enough: with the gradient cache only a chunk's activations are alive anyway
    chunked = cached or cfg.loss == "cached-mnrl"
    checkpointing = use_checkpointing("off" if chunked and cfg.gradient_checkpointing == "auto"
                                      else cfg.gradient_checkpointing, device, cfg.max_seq_length)
    model = SentenceTransformer(str(prep.base_path), device=device, trust_remote_code=False)
    # Training may truncate shorter than the base model reads (speed); the saved model keeps the longer of the
    # two. Saved at the training length, every index built with it cut longer passages short: the demo trains
    # at 128 tokens, 62% of cuad-clauses passages are longer, and its model lost 0.016 nDCG@10 in domain and
    # 0.010 out of domain to that (measured 2026-12-06, benchmarks/results/saved-length.json).
    inference_length = max(int(model.max_seq_length), cfg.max_seq_length)
    model.max_seq_length = cfg.max_seq_length
    train_ds = _train_dataset(cfg, triples, margins)
    eval_steps = plan.eval_steps if plan else cfg.eval_steps
    ckpt = work / "checkpoints"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(ckpt), num_train_epochs=cfg.epochs, max_steps=plan.max_steps if plan else cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.lr, warmup_steps=cfg.warmup_ratio,
        seed=cfg.seed, data_seed=cfg.seed, **trainer_precision_args(device, cfg.precision),
        gradient_checkpointing=checkpointing,
        # in-batch negatives: a query's other positives must not share its batch (NO_DUPLICATES), nor, with
        # --batching labels, any passage labelled relevant to it (batching.py); --batching mask: the loss drops
        # those (losses.py)
        batch_sampler=(BatchSamplers.BATCH_SAMPLER if cfg.loss == "distill" else
                       NoLabelledNegativesBatchSampler if cfg.batching == "labels" else BatchSamplers.NO_DUPLICATES),
        eval_strategy="steps", eval_steps=eval_steps, save_strategy="steps", save_steps=eval_steps,
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="eval_dev_cosine_ndcg@10",
        greater_is_better=True, logging_steps=max(1, min(10, eval_steps // 2)),
        report_to=["mlflow"] if cfg.track else "none", run_name=out.name, dataloader_drop_last=False,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_ds,
                                         loss=_loss(cfg, model, cached, train_ds), evaluator=evaluator,
                                         callbacks=callbacks)
    resume_from = _latest_checkpoint(ckpt) if cfg.resume else None

    run_ctx = None
    if cfg.track:
        from .tracking import start_run

        run_ctx = start_run(out.parent, out.name)
    try:
        t0 = time.perf_counter()
        max_steps = plan.max_steps if plan else cfg.max_steps
        say(f"training ({cfg.loss}, {len(train_ds)} examples, batch {cfg.batch_size}, lr {cfg.lr:g}, "
             f"{f'max {max_steps} steps' if max_steps > 0 else f'{cfg.epochs} epochs'}) …")
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        train_s = time.perf_counter() - t0
        final = _restored_eval(trainer) or evaluator(model)
        dev_ndcg = float(final["dev_cosine_ndcg@10"])
        epochs_done = max(trainer.state.epoch or 0, 1e-9)
        status, reason = "ok", ""
        if dev_ndcg < base_dev:
            status = "failed"
            reason = (f"dev nDCG@10 {dev_ndcg:.4f} is below the base model's {base_dev:.4f}: "
                      f"fine-tuning made retrieval worse")
        manifest = {
            "honed_run": 1, "status": status, "reason": reason,
            "base_model": {"ref": cfg.base, "path": str(prep.base_path), "fingerprint": prep.base_enc.fingerprint},
            "data": {"source": cfg.data, "pairs_files": cfg.pairs, "fingerprint": fingerprint_pairs(prep.pairs),
                     "train_pairs": len(prep.train_pairs), "train_examples": len(triples),
                     "mining": prep.mining_stats,
                     "frozen_eval": {"sets": cfg.frozen_eval, **(prep.frozen_stats or {})},
                     "dev_queries": len(prep.dev_q), "dev_corpus": len(prep.dev_pool), "dev_vs_test": prep.dev_vs_test},
            "params": asdict(cfg),
            "max_seq_length": {"training": cfg.max_seq_length, "saved": inference_length},
            "eval": {"base_dev_ndcg@10": round(float(base_dev), 4), "dev_ndcg@10": round(dev_ndcg, 4),
                     "dev_metrics": {k: round(float(v), 4) for k, v in final.items()},
                     "best_step": _best_step(trainer), "teacher": prep.teacher_metrics},
            "timing": {**prep.timings, "train_s": round(train_s, 1),
                       "seconds_per_epoch": round(train_s / epochs_done, 1), "epochs": round(epochs_done, 3),
                       "steps": trainer.state.global_step, "total_s": round(time.perf_counter() - t_start, 1),
                       "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                       "device": device, "precision": precision(device, cfg.precision),
                       "gradient_checkpointing": checkpointing,
                       "gradient_cache": cached,
                       "resumed_from": resume_from.name if resume_from else None},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **(extra or {}),
        }
        if plan is not None:
            manifest["budget"] = {**plan.to_dict(), "stopped_at_deadline": callbacks[-1].stopped_early,
                                  "step_s_measured": round(float(np.mean(callbacks[-1].step_s or [0.0])), 2)}
        remove_stale_temps(out)
        with atomic_dir(out, kind="run", force=cfg.force) as tmp:
            model.max_seq_length = inference_length
            model.save(str(tmp))
            _plot(trainer.state.log_history, base_dev, tmp / "training.png")
            (tmp / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
            _write_dev_split(prep, tmp / DEV_SPLIT_DIR)
            if cfg.router:
                manifest["router"] = write_router(prep, tmp)
            manifest["fingerprint"] = model_fingerprint(tmp)
            (tmp / "honed.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if cfg.track:
            log_run(manifest, out, log_model=log_model)
    finally:
        if run_ctx is not None:
            import mlflow

            mlflow.end_run()
    shutil.rmtree(ckpt, ignore_errors=True)
    return FinetuneResult(out, status, reason, float(base_dev), dev_ndcg, manifest)


DEV_SPLIT_DIR = "dev-split"


def write_router(prep: Prepared, folder: Path) -> dict:
    """Fit the run's domain router (:mod:`~retriever.routing`) on its training corpus, its threshold on the dev
    passages (held out of both), into ``folder/router``; returns its record, or why there is none."""
    from ..encoder import load_encoder
    from ..routing import fit_run_router

    heldout = [prep.dev_pool[d] for d in prep.dev_pool]
    reference = [t for d, t in prep.corpus.items() if d not in prep.dev_pool]
    with phase(f"domain router: k-means of {min(len(reference), 3000)} training passages, "
               f"threshold on {len(heldout)} dev passages"):
        try:
            # at the base model's own length (prep.base_enc reads at the training length)
            base = load_encoder(prep.base_path, batch_size=prep.base_enc.batch_size, backend="torch",
                                device=prep.device, routing=False)
            return fit_run_router(folder, base, reference, heldout)
        except HonedError as e:
            say(f"no domain router: {e}")
            return {"skipped": str(e)}


def _write_dev_split(prep, out: Path) -> None:
    """The run's held-out dev queries and their subsampled corpus as a BEIR folder (split ``dev``): queries the
    model never trained on, for choices made after training (``honed index fuse --data RUN/dev-split``)."""
    from ..data.beir import write_beir

    write_beir(out, {d: {"text": t} for d, t in prep.dev_pool.items()}, dict(prep.dev_q),
               {"dev": {q: {d: 1 for d in rel} for q, rel in prep.dev_rel.items()}})


def rerank_dev_samples(dev_q, dev_rel, dev_pool, enc, n_candidates: int = 30, ranked: bool = False) -> list[dict]:
    """Rerank samples for a cross-encoder: each dev query's positives + the base model's top non-positives.

    `ranked`: instead, the base model's top `n_candidates` as it ranks them, positives only where it
    found them (``{"query", "positive", "documents", "scores"}``, the last the base model's): a reranker
    is then scored on exactly the candidates it would get, against the first stage's own order of them.
    """
    ids = list(dev_pool)
    dv = enc.encode_documents([dev_pool[d] for d in ids])
    samples = []
    for q, text in dev_q.items():
        sims = dv @ enc.encode_queries([text])[0]
        order = np.argsort(-sims)
        positives = [dev_pool[d] for d in dev_rel[q]]
        if ranked:
            samples.append({"query": text, "positive": positives,
                            "documents": [dev_pool[ids[i]] for i in order[:n_candidates]],
                            "scores": [float(sims[i]) for i in order[:n_candidates]]})
        else:
            negs = [dev_pool[ids[i]] for i in order if ids[i] not in dev_rel[q]][:n_candidates]
            samples.append({"query": text, "positive": positives, "negative": negs})
    return samples


def _latest_checkpoint(ckpt: Path) -> Path | None:
    """The newest *complete* checkpoint: a kill can leave a half-written one (no trainer_state.json)."""
    cands = sorted((p for p in ckpt.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
                   key=lambda p: int(p.name.split("-")[-1])) if ckpt.exists() else []
    return cands[-1] if cands else None


def _best_step(trainer) -> int | None:
    best = trainer.state.best_model_checkpoint
    return int(best.rsplit("-", 1)[-1]) if best else None


def _restored_eval(trainer) -> dict | None:
    """The dev metrics logged for the checkpoint the trainer restored at the end, if it restored one.

    Re-running the evaluator on that same model costs a full dev-corpus encode (~70 s on SciFact).
    """
    step = _best_step(trainer)
    for h in trainer.state.log_history:
        if step is not None and h.get("step") == step and "eval_dev_cosine_ndcg@10" in h:
            return {k[len("eval_"):]: v for k, v in h.items() if k.startswith("eval_dev_")}
    return None

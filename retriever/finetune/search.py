"""Recipe search on the dev split: successive halving over a small, documented space of recipes.

``honed finetune --search --time-budget 40m`` trains several recipes on the same prepared data
(one dev split, one base score, one mining pass, one teacher) and keeps the best by dev
nDCG@10. The space (:data:`SPACE`):

- **loss and batch**: MNRL at batch 32, or CachedMNRL (GradCache) at batch 128: four times the
  in-batch negatives in the memory of `mini_batch_size` sequences (what plain
  sentence-transformers runs use on a GPU);
- **learning rate**: 2e-5, 5e-5, 1e-4, 2e-4;
- **mined negatives per pair**: 0 (in-batch only) or 1;
- **distillation** (MarginMSE from the cross-encoder teacher) at the same learning rates, only
  when ``--teacher`` is given (the teacher is trained once, before the search).

Training length is not a knob of its own: it is the resource successive halving hands out
(Jamieson & Talwalkar, 2016). Rung 0 trains `trials` recipes sampled from the grid on the
same number of training *examples* (so a batch-128 trial takes a quarter of the steps);
the better half goes on to twice as many examples, and so on until one is left. Each trial
restarts from the base model (its learning-rate schedule fits its own length), so a rung's
results are the recipes' results at that length, not continuations. The winner's model from
its last rung is the run's model; the epochs it trained and its best step are in ``honed.json``.

The rung size comes from the time budget: the base dev evaluation measures this machine's
encoding rate, and a training example costs about ``STEP_COST`` times encoding its texts
(``budget.py``). When the budget cannot give the asked recipes ``MIN_RUNG_EXAMPLES`` each at
rung 0, fewer recipes are tried. Before each trial the search checks, with the cost per
example measured so far, that it fits what is left; when it does not, the search ends with
the best trial of the last complete rung.

No library does this here: Optuna is not in the stack, and its pruners assume one long
training per trial reporting as it goes, where a CPU trial is minutes and reuses nothing; a
plain grid with halving is a page of code that a reader can check.

Every trial is an MLflow child run of the search's run (its numbers, not its model); the
kept model is logged with the parent.

Example:
    >>> from honed.retriever.finetune import FinetuneConfig, finetune
    >>> res = finetune(FinetuneConfig(data="datasets/cuad-clauses", out="runs/cuad-search", search=True,
    ...                               time_budget="40m"))                                   # doctest: +SKIP
    >>> res.manifest["search"]["chosen"]                                                    # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
import shutil
import time
from pathlib import Path

from ..atomic import atomic_dir, check_writable, remove_stale_temps
from ..errors import HonedError
from .budget import SAVE_S, STEP_COST, parse_duration
from .config import FinetuneResult, check_config
from .progress import phase, say
from .tracking import log_run
from .train import prepare_training, train_prepared, write_router

LRS = (2e-5, 5e-5, 1e-4, 2e-4)
LOSS_BATCH = (("mnrl", 32), ("cached-mnrl", 128))
NEGATIVES = (0, 1)
SPACE = {"loss_batch": LOSS_BATCH, "lr": LRS, "num_negatives": NEGATIVES, "distill_lr": LRS}
MIN_RUNG_EXAMPLES = 128     # fewer and the first rung is one batch-128 step: no comparison at all
TRIAL_OVERHEAD_S = 8.0       # loading a fresh model and building its trainer, measured ~5–8 s on 2 cores


def recipe_grid(distill: bool) -> list[dict]:
    """Every recipe of :data:`SPACE` (with distillation recipes when a teacher is there)."""
    grid = [{"loss": loss, "batch_size": bs, "lr": lr, "num_negatives": n}
            for (loss, bs), lr, n in itertools.product(LOSS_BATCH, LRS, NEGATIVES)]
    if distill:
        grid += [{"loss": "distill", "batch_size": 32, "lr": lr, "num_negatives": 1} for lr in LRS]
    return grid


def sample_recipes(grid: list[dict], n: int, seed: int) -> list[dict]:
    """`n` recipes from `grid` (all of it when `n` ≥ its size), each loss and lr represented where n allows."""
    if n >= len(grid):
        return list(grid)
    rng = random.Random(seed)
    # stratify on the loss so that a small n still tries each loss family
    by_loss: dict[str, list[dict]] = {}
    for r in grid:
        by_loss.setdefault(r["loss"], []).append(r)
    pools = [rng.sample(v, len(v)) for v in by_loss.values()]
    out: list[dict] = []
    for depth in itertools.count():
        for pool in pools:
            if depth < len(pool) and len(out) < n:
                out.append(pool[depth])
        if len(out) >= n:
            return out


def n_rungs(n_trials: int, eta: int = 2) -> int:
    """Rungs until one recipe is left: 8 trials → 8, 4, 2, 1 (4 rungs)."""
    rungs, n = 1, n_trials
    while n > 1:
        n, rungs = max(1, n // eta), rungs + 1
    return rungs


def rung_examples(budget_left_s: float, n_trials: int, eta: int, s_per_example: float, trial_fixed_s: float) -> int:
    """Training examples per trial at rung 0, so that every rung fits in `budget_left_s`.

    Rung k trains ``n_trials // eta**k`` recipes on ``r * eta**k`` examples each: every rung costs
    about ``n_trials * r`` examples, plus a fixed cost (evaluation, loading, saving) per trial.

    >>> n_rungs(8), rung_examples(3600, 8, 2, s_per_example=0.1, trial_fixed_s=30)
    (4, 984)
    """
    rungs = n_rungs(n_trials, eta)
    trials_total = sum(max(1, n_trials // eta ** k) for k in range(rungs))
    left = budget_left_s - trials_total * trial_fixed_s
    return int(left / (rungs * n_trials * s_per_example))


def search_recipe(cfg):
    """Successive halving over :data:`SPACE` within ``cfg.time_budget``; returns the winner's FinetuneResult."""
    if not cfg.time_budget:
        raise HonedError("--search needs --time-budget (e.g. 40m): the search sizes its trials to it")
    if cfg.search_trials < 2:
        raise HonedError(f"--search-trials must be at least 2, got {cfg.search_trials}")
    if cfg.resume:
        raise HonedError("--search cannot --resume: trials restart from the base model anyway")
    check_config(dataclasses.replace(cfg, loss="mnrl"))     # the space sets the loss of each trial
    budget_s = parse_duration(cfg.time_budget)
    t_start = time.perf_counter()
    out = Path(cfg.out)
    check_writable(out, "run", cfg.force)
    work = out.parent / f".{out.name}.search"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    distill = bool(cfg.teacher)
    prep = prepare_training(dataclasses.replace(cfg, num_negatives=1), work, margins=distill)

    texts_per_s = (len(prep.dev_pool) + len(prep.dev_q)) / max(prep.eval_s, 1e-9)
    s_per_example = STEP_COST * 2.5 / texts_per_s        # 2 or 3 texts per example: half the grid each
    # one dev evaluation per trial, at its end: on a CPU each costs what ~100 training examples do,
    # and the comparison between recipes is what the search needs, not a curve within each trial
    trial_fixed_s = prep.eval_s + SAVE_S + TRIAL_OVERHEAD_S
    spent = time.perf_counter() - t_start
    # fewer recipes rather than rungs too short to tell them apart
    n_trials = next((n for n in range(cfg.search_trials, 1, -1)
                     if rung_examples(budget_s - spent, n, 2, s_per_example, trial_fixed_s) >= MIN_RUNG_EXAMPLES), None)
    if n_trials is None:
        raise HonedError(f"--time-budget {cfg.time_budget} leaves {budget_s - spent:.0f} s after preparation "
                         f"({spent:.0f} s): too little to train two recipes on {MIN_RUNG_EXAMPLES} examples each "
                         f"and compare them; give more time")
    if n_trials < cfg.search_trials:
        say(f"search: the budget fits {n_trials} recipes, not {cfg.search_trials}")
    r0 = rung_examples(budget_s - spent, n_trials, 2, s_per_example, trial_fixed_s)
    recipes = sample_recipes(recipe_grid(distill), n_trials, cfg.seed)
    say(f"search: {len(recipes)} recipes, rung 0 at {r0} examples each (≈{r0 * s_per_example:.0f} s), "
         f"halving by 2; budget {budget_s:.0f} s, {spent:.0f} s spent preparing")

    parent = None
    if cfg.track:
        from .tracking import start_run

        parent = start_run(out.parent, out.name)
    trials: list[dict] = []
    alive = list(range(len(recipes)))
    rung, winner, measured = 0, None, []
    try:
        while True:
            examples = r0 * 2 ** rung
            done = []
            for i in alive:
                rec = recipes[i]
                steps = max(2, math.ceil(examples / rec["batch_size"]))
                if measured:      # trials so far tell the real cost per example better than the estimate
                    s_per_example = sorted(measured)[len(measured) // 2]
                est = examples * s_per_example + trial_fixed_s
                if time.perf_counter() - t_start + est > budget_s:
                    say(f"search: the budget has no room for another rung-{rung} trial (≈{est:.0f} s); stopping")
                    break
                name = f"t{i:02d}-r{rung}"
                tcfg = dataclasses.replace(cfg, **rec, max_steps=steps, eval_steps=steps,
                                           gradient_cache=cfg.gradient_cache if rec["loss"] == "mnrl" else "auto",
                                           time_budget=None, out=str(work / name), force=True, search=False,
                                           router=False)     # fitted once, for the winner
                with phase(f"trial {name}: {_describe(rec)}, {steps} steps ({examples} examples)"):
                    t0 = time.perf_counter()
                    res = train_prepared(tcfg, prep, work / name, work / f".{name}.work", log_model=False,
                                         extra={"search_trial": {"recipe": rec, "rung": rung}})
                seconds = time.perf_counter() - t0
                measured.append(max(seconds - trial_fixed_s, 0.0) / examples)
                row = {"trial": i, "name": name, "rung": rung, **rec, "examples": examples, "steps": steps,
                       "dev_ndcg@10": round(res.dev_ndcg, 4), "status": res.status,
                       "best_step": res.manifest["eval"]["best_step"], "seconds": round(seconds, 1)}
                trials.append(row)
                done.append(row)
                say(f"trial {name}: dev nDCG@10 {res.dev_ndcg:.4f} (base {prep.base_dev:.4f})")
            if len(done) < len(alive):        # the budget ended this rung early: the last complete rung decides
                winner = winner or max(done, key=lambda t: t["dev_ndcg@10"], default=None)
                _remove_models(work, done, keep=winner)
                break
            if winner is not None:
                _remove_models(work, [winner], keep=None)       # superseded by this longer rung
            ranked = sorted(done, key=lambda t: -t["dev_ndcg@10"])
            winner = ranked[0]
            _remove_models(work, done, keep=winner)
            if len(ranked) == 1:
                break
            alive = [t["trial"] for t in ranked[: max(1, len(ranked) // 2)]]
            rung += 1
        if winner is None:
            raise HonedError(f"--time-budget {cfg.time_budget}: not even one trial fit after preparation")
        summary = _summary(trials, winner, prep.base_dev, budget_s, time.perf_counter() - t_start, r0, distill)
        summary["recipes"] = {"asked": cfg.search_trials, "tried": len(recipes)}
        res = _keep_winner(cfg, work / winner["name"], out, summary, trials, prep)
        if cfg.track:
            log_run(res.manifest, out)
    finally:
        if parent is not None:
            import mlflow

            mlflow.end_run()
    shutil.rmtree(work, ignore_errors=True)
    say(f"search: kept {winner['name']} ({_describe(winner)}): {summary['why']}")
    return FinetuneResult(out, res.status, res.reason, prep.base_dev, res.dev_ndcg, res.manifest)


def _remove_models(work: Path, rows: list[dict], keep: dict | None) -> None:
    """Delete the trials' model folders (90 MB each for MiniLM), except `keep`'s."""
    for t in rows:
        if t is not keep:
            shutil.rmtree(work / t["name"], ignore_errors=True)


def _describe(rec: dict) -> str:
    return f"{rec['loss']} batch {rec['batch_size']} lr {rec['lr']:g} negatives {rec['num_negatives']}"


def _summary(trials, winner, base_dev, budget_s, spent_s, r0, distill) -> dict:
    """The search's record for honed.json: space, rungs, every trial, the choice and why."""
    why = []
    for k in range(winner["rung"] + 1):
        rung = sorted((t for t in trials if t["rung"] == k), key=lambda t: -t["dev_ndcg@10"])
        mine = next(t for t in rung if t["trial"] == winner["trial"])
        text = f"rung {k} ({mine['examples']} examples): {mine['dev_ndcg@10']:.4f}"
        others = [t for t in rung if t is not mine]
        if others:
            text += f", best of {len(rung)} (next {others[0]['dev_ndcg@10']:.4f}: {_describe(others[0])})"
        why.append(text)
    return {"method": "successive halving (eta 2), trials restart from the base model",
            "space": {**SPACE, "distill": distill},
            "rung0_examples": r0, "budget_s": round(budget_s, 1), "spent_s": round(spent_s, 1),
            "chosen": {k: winner[k] for k in ("loss", "batch_size", "lr", "num_negatives")} |
                      {"rung": winner["rung"], "examples": winner["examples"], "steps": winner["steps"]},
            "why": f"highest dev nDCG@10 at every rung it ran: {'; '.join(why)}; base {base_dev:.4f}",
            "trials": trials}


def _keep_winner(cfg, folder: Path, out: Path, summary: dict, trials: list[dict], prep=None):
    """Move the winner's model to `out` (atomic), with the search in its honed.json, a plot and (with
    ``cfg.router``) its domain router."""
    manifest = json.loads((folder / "honed.json").read_text())
    if cfg.router and prep is not None:
        manifest["router"] = write_router(prep, folder)
    manifest.pop("search_trial", None)
    manifest["search"] = summary
    manifest["params"] = {**manifest["params"], "search": True, "time_budget": cfg.time_budget, "out": str(out)}
    remove_stale_temps(out)
    with atomic_dir(out, kind="run", force=cfg.force) as tmp:
        for p in folder.iterdir():
            shutil.move(str(p), tmp / p.name)
        _plot_search(trials, manifest["eval"]["base_dev_ndcg@10"], tmp / "search.png")
        (tmp / "honed.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return FinetuneResult(out, manifest["status"], manifest["reason"], manifest["eval"]["base_dev_ndcg@10"],
                          manifest["eval"]["dev_ndcg@10"], manifest)


def _plot_search(trials: list[dict], base_dev: float, path: Path) -> None:
    """Dev nDCG@10 of each recipe over the rungs (examples seen, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i in sorted({t["trial"] for t in trials}):
        rows = sorted((t for t in trials if t["trial"] == i), key=lambda t: t["rung"])
        ax.plot([t["examples"] for t in rows], [t["dev_ndcg@10"] for t in rows], "o-", label=_describe(rows[0]))
    ax.axhline(base_dev, color="k", ls="--", lw=1, label=f"base {base_dev:.3f}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training examples per trial (rung)")
    ax.set_ylabel("dev nDCG@10")
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""A wall-clock budget for a fine-tuning run: plan the steps, subsample the pairs, stop on time with the best model.

``honed finetune --time-budget 20m`` covers the whole run, loading included. After the
pre-training phases (pairs, base dev score, mining) have used part of it, :func:`plan_budget`
turns what is left into a step count, from the encoding rate the base dev evaluation
measured on this machine (training a step costs about ``STEP_COST`` times encoding its
texts: forward, backward, optimizer). When one
epoch does not fit, :func:`balanced_subsample` keeps an equal share of pairs per query (a
query with 200 positives does not crowd out one with 2), each query's pairs in mining
order. The plan also sets the evaluation cadence (``EVALS_PER_RUN`` evaluations, fewer when they would
crowd out the training steps). The plan
is an estimate, so :func:`deadline_callback` watches real step times during training: when
the next step plus a final evaluation and save would pass the deadline, it evaluates,
saves and stops. The trainer
then restores the best checkpoint, so the run ends on time with its best model.

Example:
    >>> parse_duration("1h30m"), parse_duration("20m"), parse_duration("90s")
    (5400.0, 1200.0, 90.0)
    >>> plan = plan_budget(1200, spent_s=300, texts_per_s=50, eval_s=20, n_examples=6000, batch_size=32,
    ...                    texts_per_example=3, epochs=1)
    >>> plan.max_steps, plan.examples, plan.eval_steps
    (97, 3104, 19)
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass

from ..errors import HonedError

# Seconds of a training step ÷ seconds to encode its texts, measured on this project's 2-core CPUs:
# 3.1 (SciFact, batch 16 + 1 negative, 256 tokens) and 4.5 (cuad-clauses, batch 32, 128 tokens). An
# estimate too low is safe (the deadline callback stops the run on time); too high leaves time unused.
STEP_COST = 4.0
SAVE_S = 10.0            # saving a checkpoint and the final model folder
EVALS_PER_RUN = 5        # dev evaluations in a budgeted run: enough to pick a best checkpoint
MIN_STEPS_PER_EVAL = 2   # ...when the time allows that many, each after at least this many steps

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str, flag: str = "--time-budget") -> float:
    """Seconds in ``20m``, ``90s``, ``1h30m`` or ``1.5h``; anything else is a one-line error naming `flag`."""
    m = _DURATION.fullmatch(str(text).strip().lower())
    if not m or not any(m.groups()):
        raise HonedError(f"{flag}: expected a duration such as 20m, 90s or 1h30m, got {text!r}")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    total = h * 3600 + mi * 60 + s
    if total <= 0:
        raise HonedError(f"{flag} must be positive, got {text!r}")
    return total


@dataclass
class BudgetPlan:
    budget_s: float
    spent_before_training_s: float
    step_s_estimate: float
    eval_s: float
    max_steps: int
    eval_steps: int
    examples: int            # training examples kept (all of them when one epoch fits)
    epochs: float
    evals: int = EVALS_PER_RUN   # dev evaluations planned, the final one included

    def to_dict(self) -> dict:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(self).items()}


def plan_budget(budget_s: float, spent_s: float, texts_per_s: float, eval_s: float, n_examples: int,
                batch_size: int, texts_per_example: int, epochs: float) -> BudgetPlan:
    """Steps, examples and evaluation cadence that fit the time left after `spent_s`."""
    step_s = STEP_COST * batch_size * texts_per_example / max(texts_per_s, 1e-9)
    left = budget_s - spent_s - SAVE_S - eval_s          # the final evaluation and save come after the last step
    # every evaluation on the way costs eval_s (+ a checkpoint save): solve steps·step_s + evals·(eval_s+save) = left.
    # Where evaluations are dear (a large dev split on a CPU), fewer of them leave time for steps: down to the
    # final one alone, as long as each evaluation still has MIN_STEPS_PER_EVAL steps to judge.
    for evals in range(EVALS_PER_RUN, 0, -1):
        steps = int((left - (evals - 1) * (eval_s + SAVE_S)) / step_s)
        if steps >= evals * MIN_STEPS_PER_EVAL:
            break
    if steps < 1:
        raise HonedError(f"--time-budget {budget_s:.0f} s leaves no time to train: {spent_s:.0f} s went to loading, "
                         f"the base dev score and mining, and a step takes ~{step_s:.1f} s here")
    wanted = max(1, math.ceil(epochs * n_examples / batch_size))
    steps = min(steps, wanted)
    examples = min(n_examples, steps * batch_size) if steps < wanted else n_examples
    return BudgetPlan(budget_s=budget_s, spent_before_training_s=spent_s, step_s_estimate=step_s, eval_s=eval_s,
                      max_steps=steps, eval_steps=max(1, steps // evals), examples=examples,
                      epochs=round(steps * batch_size / max(examples, 1), 3), evals=evals)


def balanced_subsample(examples: list, n: int, key=lambda e: e.query) -> list:
    """`n` examples taken round-robin over queries (each query's in their given order)."""
    if n >= len(examples):
        return list(examples)
    by_query: dict = {}
    for e in examples:
        by_query.setdefault(key(e), []).append(e)
    out, depth = [], 0
    queues = list(by_query.values())
    while len(out) < n:
        for q in queues:
            if depth < len(q):
                out.append(q[depth])
                if len(out) == n:
                    break
        depth += 1
    return out


def deadline_callback(deadline: float, eval_s: float):
    """A transformers ``TrainerCallback`` that evaluates, saves and stops before `deadline` (``time.time()``)."""
    from transformers import TrainerCallback

    class DeadlineCallback(TrainerCallback):
        """Stop when the next step plus a final evaluation and save would pass the deadline."""

        def __init__(self):
            self.started = None
            self.step_s: list[float] = []
            self.stopped_early = False

        def on_step_begin(self, args, state, control, **kw):
            self.started = time.time()

        def on_step_end(self, args, state, control, **kw):
            if self.started is not None:
                self.step_s.append(time.time() - self.started)
            slowest_recent = max(self.step_s[-5:] or [0.0])
            if time.time() + slowest_recent + eval_s + SAVE_S > deadline and state.global_step < state.max_steps:
                self.stopped_early = True
                control.should_training_stop = True
                control.should_evaluate = control.should_save = True   # the last steps count toward the best

    return DeadlineCallback()

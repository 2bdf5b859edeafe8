"""The time budget of a fine-tuning run: durations, the plan, the per-query subsample, the deadline stop."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from honed.retriever.errors import HonedError
from honed.retriever.finetune.budget import (EVALS_PER_RUN, SAVE_S, balanced_subsample, deadline_callback,
                                             parse_duration, plan_budget)


@pytest.mark.parametrize("text, seconds", [("20m", 1200), ("90s", 90), ("1h30m", 5400), ("1.5h", 5400),
                                           (" 2M ", 120), ("1h0m30s", 3630)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "20", "m", "20 minutes", "-5m", "0m", "1d"])
def test_bad_durations_are_one_line_errors(text):
    with pytest.raises(HonedError, match="--time-budget"):
        parse_duration(text)


def test_plan_fits_the_time_left_and_keeps_everything_when_an_epoch_fits():
    kw = dict(texts_per_s=50, eval_s=20, batch_size=32, texts_per_example=3, epochs=1)
    tight = plan_budget(1200, spent_s=300, n_examples=6000, **kw)
    # steps, evaluations and the final save fit in what was left
    used = tight.max_steps * tight.step_s_estimate + EVALS_PER_RUN * (tight.eval_s + SAVE_S)
    assert used <= 1200 - 300 and tight.examples == tight.max_steps * 32 < 6000
    assert tight.eval_steps == tight.max_steps // EVALS_PER_RUN
    roomy = plan_budget(3600, spent_s=300, n_examples=640, **kw)
    assert roomy.max_steps == 20 and roomy.examples == 640 and roomy.epochs == 1.0
    with pytest.raises(HonedError, match="leaves no time to train: 290 s went to loading"):
        plan_budget(300, spent_s=290, n_examples=640, **kw)


def test_dear_evaluations_are_fewer_instead_of_leaving_no_time_to_train():
    """A 132 s dev evaluation (2,000 passages on 2 cores) and 24 s steps in 20 minutes: five evaluations would
    leave no step, so the plan evaluates less often (the many-positives benchmark's case)."""
    plan = plan_budget(1200, spent_s=285, texts_per_s=16, eval_s=132, n_examples=150_000, batch_size=32,
                       texts_per_example=3, epochs=1)
    # 773 s after the final evaluation and save, 24 s steps, 142 s per evaluation on the way: five evaluations
    # leave 8 steps (fewer than 2 each), four leave 14, one evaluation every 3 steps
    assert EVALS_PER_RUN == 5 and (plan.evals, plan.max_steps, plan.eval_steps) == (4, 14, 3)
    used = plan.max_steps * plan.step_s_estimate + plan.evals * (plan.eval_s + SAVE_S)
    assert used <= 1200 - 285


def test_subsample_is_balanced_per_query_in_given_order():
    ex = [("big", i) for i in range(100)] + [("small", 0), ("small", 1)] + [("mid", i) for i in range(5)]
    got = balanced_subsample(ex, 9, key=lambda e: e[0])
    assert got == [("big", 0), ("small", 0), ("mid", 0), ("big", 1), ("small", 1), ("mid", 1),
                   ("big", 2), ("mid", 2), ("big", 3)]
    assert balanced_subsample(ex, 500, key=lambda e: e[0]) == ex


def test_a_capped_distillation_scores_only_the_examples_it_trains_on():
    """--max-steps N: the teacher scores N × batch mined examples drawn uniformly at random (what the trainer's
    shuffle would draw, not balanced over queries); uncapped or under a time budget (the plan trims later), all."""
    from honed.retriever.finetune.config import FinetuneConfig
    from honed.retriever.finetune.pairs import Pair
    from honed.retriever.finetune.train import triples_to_score

    triples = [Pair(query=q, positive=f"{q} {i}", negatives=[f"n{i}"]) for q, n in (("big", 400), ("small", 4))
               for i in range(n)]
    cfg = FinetuneConfig(loss="distill", max_steps=5, batch_size=8)
    kept = triples_to_score(cfg, triples)
    assert len(kept) == 40 and len(set(map(id, kept))) == 40 and all(t in triples for t in kept)
    assert kept != triples[:40] and triples_to_score(cfg, triples) == kept       # not the head; seeded
    assert sum(t.query == "small" for t in kept) < 4       # balanced over queries would take all 4 of "small"
    assert triples_to_score(FinetuneConfig(loss="distill"), triples) == triples
    assert triples_to_score(FinetuneConfig(loss="distill", max_steps=2, time_budget="20m"), triples) == triples


def test_deadline_callback_stops_with_a_final_evaluation_and_save():
    from transformers import TrainerControl, TrainerState

    state, control = TrainerState(), TrainerControl()
    state.max_steps, state.global_step = 100, 10
    cb = deadline_callback(deadline=time.time() + 3600, eval_s=5)
    cb.on_step_begin(None, state, control)
    cb.on_step_end(None, state, control)
    assert not control.should_training_stop and not cb.stopped_early
    late = deadline_callback(deadline=time.time() + SAVE_S + 4, eval_s=5)   # the next eval + save would not fit
    late.on_step_begin(None, state, control)
    late.on_step_end(None, state, control)
    assert control.should_training_stop and control.should_evaluate and control.should_save and late.stopped_early


def test_cli_refuses_a_bad_budget_before_any_work(tmp_path):
    run = subprocess.run([sys.executable, "-m", "honed.app.cli", "finetune", "--data", "datasets/cuad-clauses",
                          "--out", str(tmp_path / "r"), "--time-budget", "soon"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == ["error: --time-budget: expected a duration such as 20m, 90s or "
                                               "1h30m, got 'soon'"]
    assert not (tmp_path / "r").exists()

"""Recipe search (successive halving on the dev split): the grid, the rung sizes, and a real search."""
from __future__ import annotations

import json
import subprocess

import pytest

from honed.retriever.errors import HonedError
from honed.retriever.finetune.search import n_rungs, recipe_grid, rung_examples, sample_recipes
from honed.retriever.finetune import FinetuneConfig, finetune

from conftest import HONED, TINY


def test_grid_and_sampling_cover_each_loss():
    grid = recipe_grid(distill=False)
    assert len(grid) == 16 and {r["loss"] for r in grid} == {"mnrl", "cached-mnrl"}
    assert {r["batch_size"] for r in grid if r["loss"] == "cached-mnrl"} == {128}
    with_teacher = recipe_grid(distill=True)
    assert len(with_teacher) == 20 and all(r["num_negatives"] == 1 for r in with_teacher if r["loss"] == "distill")
    picked = sample_recipes(with_teacher, 3, seed=1)
    assert {r["loss"] for r in picked} == {"mnrl", "cached-mnrl", "distill"}       # stratified on the loss
    assert sample_recipes(with_teacher, 3, seed=1) == picked                       # seeded
    assert len({json.dumps(r, sort_keys=True) for r in sample_recipes(grid, 8, seed=0)}) == 8
    assert sample_recipes(grid, 99, seed=0) == grid


def test_rungs_fit_the_budget():
    assert [n_rungs(n) for n in (2, 3, 4, 8)] == [2, 2, 3, 4]
    r = rung_examples(3600, 8, 2, s_per_example=0.1, trial_fixed_s=30)
    # rung k: 8 // 2**k trials of r * 2**k examples, plus the fixed cost of each of the 15 trials
    cost = sum((8 // 2 ** k) * r * 2 ** k * 0.1 for k in range(4)) + 15 * 30
    assert cost <= 3600 < cost + 8 * 4 * 0.1 * 2      # fills the budget to within one example per trial-rung


def test_search_needs_a_budget_and_two_trials(tmp_path):
    with pytest.raises(HonedError, match="--search needs --time-budget"):
        finetune(FinetuneConfig(data="nowhere", out=str(tmp_path / "s"), search=True))
    with pytest.raises(HonedError, match="--search-trials must be at least 2"):
        finetune(FinetuneConfig(data="nowhere", out=str(tmp_path / "s"), search=True, time_budget="1h",
                                search_trials=1))
    p = subprocess.run([HONED, "finetune", "--data", "nowhere", "--search"], capture_output=True, text=True)
    assert p.returncode == 2 and "--search needs --time-budget" in p.stderr and len(p.stderr.splitlines()) == 1


@pytest.mark.slow
def test_search_halves_to_one_recipe_and_keeps_it(tiny_data, tmp_path):
    """Two recipes on the real SciFact slice: both train, the better one trains again twice as long, and is kept."""
    import mlflow

    out = tmp_path / "runs" / "search"
    cfg = {**TINY, "max_steps": -1, "max_seq_length": 64}
    res = finetune(FinetuneConfig(data=str(tiny_data), out=str(out), search=True, search_trials=2,
                                  time_budget="5m", **cfg))
    # the search sizes its rungs by the speed it measures: 2m was refused on a slow run, 3m on the AMD EPYC (fp32
    # training, 174 s left after preparation), and a budget that fits two recipes is the case under test
    s = json.loads((out / "honed.json").read_text())["search"]
    r0 = s["rung0_examples"]
    rung0 = [t for t in s["trials"] if t["rung"] == 0]
    assert len(rung0) == 2 and {t["loss"] for t in rung0} == {"mnrl", "cached-mnrl"}
    assert all(t["examples"] == r0 >= 128 for t in rung0)
    best0 = max(rung0, key=lambda t: t["dev_ndcg@10"])
    rung1 = [t for t in s["trials"] if t["rung"] == 1]
    if rung1:                                  # the budget had room for the last rung (it plans for it)
        assert len(rung1) == 1 and rung1[0]["trial"] == best0["trial"] and rung1[0]["examples"] == 2 * r0
        assert s["chosen"]["rung"] == 1 and res.dev_ndcg == pytest.approx(rung1[0]["dev_ndcg@10"], abs=1e-4)
    else:
        assert s["chosen"]["rung"] == 0 and res.dev_ndcg == pytest.approx(best0["dev_ndcg@10"], abs=1e-4)
    assert s["chosen"]["lr"] == best0["lr"] and "highest dev nDCG@10" in s["why"]
    assert res.manifest["params"]["search"] and res.manifest["params"]["out"] == str(out)
    assert (out / "search.png").read_bytes()[:4] == b"\x89PNG" and (out / "model.safetensors").exists()
    assert not (tmp_path / "runs" / ".search.search").exists(), "trial models are removed"

    # MLflow: the search is the parent run, every trial a child run with its own numbers
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["honed"], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == len(s["trials"])
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert parents[0].data.metrics["final_dev_ndcg_at_10"] == pytest.approx(res.dev_ndcg, abs=1e-4)

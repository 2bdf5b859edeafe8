"""The docs' numbers come from the files the benchmarks wrote: the README's table is what the generator renders."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gen():
    spec = importlib.util.spec_from_file_location("gen_numbers", ROOT / "docs" / "gen_numbers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_headline_numbers_are_rendered_from_their_results_files():
    """Edit a number by hand, or re-run a benchmark without `python docs/gen_numbers.py --readme`, and this fails."""
    gen = _gen()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert gen.readme_block() in readme, "run `python docs/gen_numbers.py --readme`"
    for _, name, _ in gen.HEADLINES:
        assert f"(benchmarks/results/{name})" in readme and (gen.RESULTS / name).is_file()


def test_results_page_lists_every_results_file_with_its_numbers():
    gen = _gen()
    page = gen.numbers_page()
    files = sorted(gen.RESULTS.glob("*.json"))
    assert len(files) >= 30 and all(f"## {p.stem}\n" in page for p in files)
    d = json.loads((gen.RESULTS / "serve.json").read_text())
    assert f"| `service.batching on.32.throughput_qps` | {d['service']['batching on']['32']['throughput_qps']:.4g} |" \
        in page
    assert not re.search(r"\| `[^`]*` \| (None|\{|\[)", page)      # only numbers in the value column


def test_measured_numbers_page_is_the_targets_table_rendered_from_results_files():
    """docs/measurements.md is generated: a hand-edited number, or a results file changed without `make docs`,
    fails here; each target names a results file that exists, and a missed target shows ✘."""
    gen = _gen()
    page = gen.measurements_page()
    assert (ROOT / "docs" / "measurements.md").read_text(encoding="utf-8") == page, \
        "run `python docs/gen_numbers.py --page measurements > docs/measurements.md`"
    assert all((gen.RESULTS / name).is_file() for _, _, name, _ in gen.TARGETS)
    ci = json.loads((gen.RESULTS / "ci-stages.json").read_text())
    row = next(line for line in page.splitlines() if line.startswith("| `.ci/run` ≤ 30 min"))
    assert ("| ✔ |" in row) == bool(ci["meets_target"]) and ("| ✘ |" in row) != bool(ci["meets_target"])

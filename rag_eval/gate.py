"""Release gate: absolute thresholds and non-regression rules over a ``report.json``.

A gate config is TOML::

    candidate = "tuned"          # the system being released
    baseline  = "base"           # what it must not regress against
    datasets  = ["cuad-clauses"] # optional; default: every dataset in the report

    [thresholds]                 # absolute floors for the candidate
    "NDCG@10" = 0.40

    [non_regression."NDCG@10"]   # candidate vs baseline, per query, paired
    max_drop = 0.0               # mean(candidate - baseline) must be ≥ -max_drop
    require_significant = true   # …and a gain must be significant (Wilcoxon p < alpha)
    alpha = 0.05

Example:
    >>> from rag_eval.gate import run_gate
    >>> checks = run_gate("reports/demo/report.json", "gate.toml")   # doctest: +SKIP
    >>> all(c.passed for c in checks)                                 # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from retriever.errors import HonedError

from .significance import paired_test


@dataclass
class GateCheck:
    dataset: str
    rule: str          # "threshold" | "max_drop" | "significant"
    metric: str
    value: float
    limit: float
    passed: bool
    detail: str = ""


def _parse_file(p: Path, what: str, parse):
    """Read and parse a file; a missing or malformed file is one HonedError line naming it."""
    try:
        return parse(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HonedError(f"{p}: {what} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise HonedError(f"{p}: invalid TOML ({e})") from None
    except json.JSONDecodeError as e:
        raise HonedError(f"{p}:{e.lineno}: invalid JSON ({e.msg})") from None


def load_gate_config(path: str | os.PathLike) -> dict:
    p = Path(path)
    cfg = _parse_file(p, "gate config", tomllib.loads)
    for key in ("candidate",):
        if key not in cfg:
            raise HonedError(f"{p}: missing required key {key!r}")
    unknown = set(cfg) - {"candidate", "baseline", "datasets", "thresholds", "non_regression"}
    if unknown:
        raise HonedError(f"{p}: unknown key(s) {', '.join(sorted(unknown))}")
    return cfg


def _per_query(sysd: dict, metric: str, dataset: str, system: str) -> dict[str, float]:
    vals = {q: v[metric] for q, v in sysd["per_query"].items() if metric in v}
    if not vals:
        raise HonedError(f"report has no per-query {metric} for {system} on {dataset} "
                         f"(per-query metrics: {', '.join(next(iter(sysd['per_query'].values()), {}))})")
    return vals


def evaluate_gate(report: dict, cfg: dict) -> list[GateCheck]:
    """Every check the config asks for, on every selected dataset."""
    cand, base = cfg["candidate"], cfg.get("baseline")
    names = cfg.get("datasets") or list(report["datasets"])
    checks: list[GateCheck] = []
    for name in names:
        if name not in report["datasets"]:
            raise HonedError(f"gate: dataset {name!r} is not in the report (has: {', '.join(report['datasets'])})")
        d = report["datasets"][name]
        for sysname in [cand] + ([base] if base else []):
            if sysname not in d["systems"]:
                raise HonedError(f"gate: system {sysname!r} is not in the report for {name} "
                                 f"(has: {', '.join(d['systems'])})")
        metrics = d["systems"][cand]["metrics"]
        for metric, floor in (cfg.get("thresholds") or {}).items():
            if metric not in metrics:
                raise HonedError(f"gate: metric {metric!r} not in report (e.g. {', '.join(list(metrics)[:5])})")
            v = float(metrics[metric])
            checks.append(GateCheck(name, "threshold", metric, v, float(floor), v >= float(floor),
                                    f"{cand} {metric} {v:.4f} ≥ {float(floor):.4f}"))
        for metric, rule in (cfg.get("non_regression") or {}).items():
            if not base:
                raise HonedError("gate: [non_regression] needs `baseline = \"...\"`")
            t = paired_test(_per_query(d["systems"][base], metric, name, base),
                            _per_query(d["systems"][cand], metric, name, cand), metric=metric)
            max_drop = float(rule.get("max_drop", 0.0))
            checks.append(GateCheck(name, "max_drop", metric, t.delta, -max_drop, t.delta >= -max_drop,
                                    f"Δ {t.delta:+.4f} vs {base} (CI [{t.ci_low:+.4f}, {t.ci_high:+.4f}], "
                                    f"{t.wins}/{t.ties}/{t.losses} w/t/l)"))
            if rule.get("require_significant"):
                alpha = float(rule.get("alpha", 0.05))
                ok = t.delta > 0 and t.p_value < alpha
                checks.append(GateCheck(name, "significant", metric, t.p_value, alpha, ok,
                                        f"gain {t.delta:+.4f}, Wilcoxon p={t.p_value:.3g} (need > 0 and p < {alpha})"))
    return checks


def run_gate(report_path: str | os.PathLike, config_path: str | os.PathLike) -> list[GateCheck]:
    """Load a report and a gate config and evaluate the gate."""
    p = Path(report_path)
    report = _parse_file(p, "report", json.loads)
    if not str(report.get("schema", "")).startswith("honed.report/"):
        raise HonedError(f"{p}: not a honed report (schema {report.get('schema')!r})")
    return evaluate_gate(report, load_gate_config(config_path))

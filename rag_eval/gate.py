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

    [ood_non_regression."NDCG@10"]  # the same rule on every out-of-domain dataset (`eval beir --ood`)
    max_drop = 0.02
    significant_only = true      # a drop beyond max_drop fails only if significant (small sets are noisy)
    max_ci_drop = 0.03           # the paired bootstrap 95% CI of Δ must rule out a drop of 0.03 (non-inferiority)

    [judge]                      # RAG reports only: LLM-judged metrics gate only when the judge's
    min_kappa = 0.4              # measured agreement with human labels reaches this; else advisory

The same config judges a RAG report (``honed eval rag``): thresholds and
non-regression rules on its metrics (per query, paired, over the samples).
Judged metrics (faithfulness, answer relevancy, answer correctness) are
*advisory* (shown, never failing the gate) unless the report carries a judge
calibration (:mod:`rag_eval.calibration`) whose Cohen's kappa is at least
``[judge] min_kappa``; with no ``[judge]`` table they are always advisory.

``datasets`` (default: every in-domain dataset) selects where thresholds and
``non_regression`` apply; ``ood_non_regression`` applies to every dataset the
report marks out-of-domain, and fails when the report has none.

Example:
    >>> from honed.rag_eval.gate import run_gate
    >>> checks = run_gate("reports/demo/report.json", "gate.toml")   # doctest: +SKIP
    >>> all(c.passed for c in checks)                                 # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from honed.retriever.errors import HonedError
from honed.retriever.report_schema import read_report
from honed.retriever.report_schema import read_file as _parse_file

from .significance import paired_test


@dataclass
class GateCheck:
    dataset: str
    rule: str          # "threshold" | "max_drop" | "significant" | "ci_drop", each also "ood_"-prefixed | "ood_present"
    #                    | "not_measured" (a judged metric in a report made without a judge: advisory, no value)
    metric: str
    value: float
    limit: float
    passed: bool
    detail: str = ""
    advisory: bool = False   # shown, never fails the gate (an LLM-judged metric from an uncalibrated judge)


_TOP_KEYS = {"candidate": str, "baseline": str, "datasets": list, "thresholds": dict, "non_regression": dict,
             "ood_non_regression": dict, "judge": dict}
_JUDGE_KEYS = {"min_kappa"}
_RULE_KEYS = {"max_drop": (int, float), "require_significant": bool, "significant_only": bool, "alpha": (int, float),
              "max_ci_drop": (int, float)}
_BOOL_KEYS = {"require_significant", "significant_only"}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_gate_config(path: str | os.PathLike) -> dict:
    """Read a gate TOML and check it against the schema above: unknown keys and no-op configs are refused."""
    p = Path(path)
    cfg = _parse_file(p, "gate config", tomllib.loads)
    return check_gate_config(cfg, str(p))


def check_gate_config(cfg: dict, where: str = "gate config") -> dict:
    """Validate a parsed gate config; every problem is one HonedError naming the key."""
    for key, val in cfg.items():
        if key not in _TOP_KEYS:
            raise HonedError(f"{where}: unknown key {key!r} (allowed: {', '.join(_TOP_KEYS)})")
        if not isinstance(val, _TOP_KEYS[key]):
            raise HonedError(f"{where}: {key!r} must be a {_TOP_KEYS[key].__name__.replace('dict', 'table')}")
    if not cfg.get("candidate"):
        raise HonedError(f"{where}: missing required key 'candidate'")
    if not all(isinstance(d, str) for d in cfg.get("datasets", [])):
        raise HonedError(f"{where}: 'datasets' must be a list of dataset names")
    for metric, floor in cfg.get("thresholds", {}).items():
        if not _number(floor):
            raise HonedError(f"{where}: thresholds.{metric!r} must be a number, got {floor!r}")
    for table, metric, rule in [(t, m, r) for t in ("non_regression", "ood_non_regression")
                                for m, r in cfg.get(t, {}).items()]:
        at = f"{table}.{metric!r}"
        if not isinstance(rule, dict):
            raise HonedError(f"{where}: {at} must be a table such as {{ max_drop = 0.0 }}, got {rule!r}")
        for key, val in rule.items():
            if key not in _RULE_KEYS:
                raise HonedError(f"{where}: unknown key {at}.{key} (allowed: {', '.join(_RULE_KEYS)})")
            if isinstance(val, bool) != (key in _BOOL_KEYS) or not isinstance(val, _RULE_KEYS[key]) \
                    or (key not in _BOOL_KEYS and not _number(val)):
                raise HonedError(f"{where}: {at}.{key} must be "
                                 f"{'true or false' if key in _BOOL_KEYS else 'a number'}, got {val!r}")
        for key in ("max_drop", "max_ci_drop"):
            if rule.get(key, 0) < 0:
                raise HonedError(f"{where}: {at}.{key} must be ≥ 0, got {rule[key]}")
        if not 0 < rule.get("alpha", 0.05) < 1:
            raise HonedError(f"{where}: {at}.alpha must be between 0 and 1, got {rule['alpha']}")
    for key, val in cfg.get("judge", {}).items():
        if key not in _JUDGE_KEYS:
            raise HonedError(f"{where}: unknown key judge.{key} (allowed: {', '.join(sorted(_JUDGE_KEYS))})")
        if not _number(val) or not -1 <= val <= 1:
            raise HonedError(f"{where}: judge.{key} must be a number between -1 and 1 (a kappa), got {val!r}")
    for table in ("non_regression", "ood_non_regression"):
        if cfg.get(table) and not cfg.get("baseline"):
            raise HonedError(f"{where}: [{table}] needs baseline = \"...\"")
    if cfg.get("baseline") is not None and cfg.get("baseline") == cfg.get("candidate"):
        raise HonedError(f"{where}: candidate and baseline are both {cfg['candidate']!r}: a system compared with "
                         "itself passes every non-regression check, so the gate would prove nothing")
    if not any(cfg.get(t) for t in ("thresholds", "non_regression", "ood_non_regression")):
        raise HonedError(f"{where}: no checks ([thresholds], [non_regression] or [ood_non_regression]): a gate "
                         "that checks nothing would pass anything")
    return cfg


def rag_as_dataset(report: dict) -> tuple[str, dict]:
    """A RAG report in the BEIR report's shape (per-query metrics from its samples), so one set of rules serves both.

    NaN scores (the judge failed) are left out of a query's metrics, as the report's own comparison does.
    """
    systems = {}
    for name, sd in report["systems"].items():
        per_q = {}
        for smp in sd["samples"]:
            per_q[str(smp.get("query_id"))] = {m: smp[m] for m in sd["metrics"]
                                               if _number(smp.get(m))}
        systems[name] = {"metrics": {m: v for m, v in sd["metrics"].items() if v is not None}, "per_query": per_q}
    return Path(str(report.get("dataset", "rag"))).name or "rag", {"systems": systems}


def judge_gates(report: dict, cfg: dict) -> tuple[bool, str]:
    """(judged metrics may fail the gate, why): only with a calibration whose kappa reaches ``[judge] min_kappa``."""
    floor = (cfg.get("judge") or {}).get("min_kappa")
    cal = report.get("judge_calibration")
    if floor is None:
        return False, "advisory: no [judge] min_kappa in the gate config"
    if not cal:
        return False, "advisory: the report has no judge calibration (honed eval rag --calibration)"
    if cal.get("kappa") is None or cal["kappa"] < floor:
        return False, f"advisory: judge kappa {cal.get('kappa')} < min_kappa {floor} on {cal.get('n')} human labels"
    return True, f"judge kappa {cal['kappa']} ≥ {floor}"


def evaluate_rag_gate(report: dict, cfg: dict) -> list[GateCheck]:
    """Thresholds and non-regression on a RAG report; judged metrics advisory unless the judge is calibrated."""
    from .rag_metrics import JUDGED

    cand, base = cfg["candidate"], cfg.get("baseline")
    if cfg.get("ood_non_regression"):
        raise HonedError("gate: [ood_non_regression] applies to retrieval reports; a RAG report has no "
                         "out-of-domain sets")
    name, d = rag_as_dataset(report)
    for sysname in [cand] + ([base] if base else []):
        if sysname not in d["systems"]:
            raise HonedError(f"gate: system {sysname!r} is not in the RAG report (has: {', '.join(d['systems'])})")
    gating, why = judge_gates(report, cfg)
    # a report made without a judge (`--judge none`, the demo's answers) has no judged metric: its rules are
    # shown as not measured, never as a pass or a failure
    unmeasured = set(JUDGED) if report.get("judge") == "none" else set()
    thresholds = {m: v for m, v in (cfg.get("thresholds") or {}).items() if m not in unmeasured}
    rules = {m: r for m, r in (cfg.get("non_regression") or {}).items() if m not in unmeasured}
    checks = []
    metrics = d["systems"][cand]["metrics"]
    for metric, floor in thresholds.items():
        if metric not in metrics:
            raise HonedError(f"gate: metric {metric!r} not in the RAG report (has: {', '.join(metrics)})")
        v = float(metrics[metric])
        checks.append(GateCheck(name, "threshold", metric, v, float(floor), v >= float(floor),
                                f"{cand} {metric} {v:.4f} ≥ {float(floor):.4f}"))
    checks += _non_regression(d, name, cand, base, rules)
    for c in checks:
        if c.metric in JUDGED and not gating:
            c.advisory, c.detail = True, f"{c.detail}; {why}"
        elif c.metric in JUDGED:
            c.detail = f"{c.detail}; {why}"
    configured = [*(cfg.get("thresholds") or {}), *(cfg.get("non_regression") or {})]
    return checks + [GateCheck(name, "not_measured", m, math.nan, math.nan, True,
                               "the report was made without a judge (--judge none)", advisory=True)
                     for m in dict.fromkeys(configured) if m in unmeasured]


def _per_query(sysd: dict, metric: str, dataset: str, system: str) -> dict[str, float]:
    vals = {q: v[metric] for q, v in sysd.get("per_query", {}).items() if metric in v}
    if not vals:
        raise HonedError(f"report has no per-query {metric} for {system} on {dataset} "
                         f"(per-query metrics: {', '.join(next(iter(sysd.get('per_query', {}).values()), {})) or 'none'})")
    if not all(_number(v) for v in vals.values()):
        raise HonedError(f"report: per-query {metric} for {system} on {dataset} holds a non-number")
    return vals


def evaluate_gate(report: dict, cfg: dict) -> list[GateCheck]:
    """Every check the config asks for, on every selected dataset."""
    cand, base = cfg["candidate"], cfg.get("baseline")
    ood = [n for n, d in report["datasets"].items() if d.get("role") == "out-of-domain"]
    names = cfg.get("datasets") or [n for n in report["datasets"] if n not in ood]
    checks: list[GateCheck] = []
    for name in names:
        d = _dataset(report, name, [cand] + ([base] if base else []))
        metrics = d["systems"][cand]["metrics"]
        for metric, floor in (cfg.get("thresholds") or {}).items():
            if metric not in metrics:
                raise HonedError(f"gate: metric {metric!r} not in report (e.g. {', '.join(list(metrics)[:5])})")
            if not _number(metrics[metric]):
                raise HonedError(f"report: {metric} of {cand} on {name} is not a number ({metrics[metric]!r})")
            v = float(metrics[metric])
            checks.append(GateCheck(name, "threshold", metric, v, float(floor), v >= float(floor),
                                    f"{cand} {metric} {v:.4f} ≥ {float(floor):.4f}"))
        checks += _non_regression(d, name, cand, base, cfg.get("non_regression") or {})
    if cfg.get("ood_non_regression"):
        if not ood:
            checks.append(GateCheck("(out-of-domain)", "ood_present", "-", 0, 1, False,
                                    "the config has [ood_non_regression] but the report has no out-of-domain "
                                    "dataset (evaluate with `honed eval beir --ood DIR`)"))
        for name in ood:
            d = _dataset(report, name, [cand, base])
            checks += _non_regression(d, name, cand, base, cfg["ood_non_regression"], prefix="ood_")
    return checks


def _dataset(report: dict, name: str, systems: list[str]) -> dict:
    if name not in report["datasets"]:
        raise HonedError(f"gate: dataset {name!r} is not in the report (has: {', '.join(report['datasets'])})")
    d = report["datasets"][name]
    for sysname in systems:
        if sysname not in d["systems"]:
            raise HonedError(f"gate: system {sysname!r} is not in the report for {name} "
                             f"(has: {', '.join(d['systems'])})")
    return d


def _non_regression(d: dict, name: str, cand: str, base: str, rules: dict, prefix: str = "") -> list[GateCheck]:
    """Paired per-query checks of `cand` against `base` on one dataset: the drop, and optionally significance."""
    checks = []
    for metric, rule in rules.items():
        t = paired_test(_per_query(d["systems"][base], metric, name, base),
                        _per_query(d["systems"][cand], metric, name, cand), metric=metric)
        max_drop = float(rule.get("max_drop", 0.0))
        alpha = float(rule.get("alpha", 0.05))
        ok = t.delta >= -max_drop
        note = ""
        if not ok and rule.get("significant_only") and not t.p_value < alpha:
            ok, note = True, f"; beyond max_drop but not significant (p ≥ {alpha})"
        checks.append(GateCheck(name, prefix + "max_drop", metric, t.delta, -max_drop, ok,
                                f"Δ {t.delta:+.4f} vs {base} (CI [{t.ci_low:+.4f}, {t.ci_high:+.4f}], "
                                f"{t.wins}/{t.ties}/{t.losses} w/t/l, p={t.p_value:.2g}){note}"))
        if "max_ci_drop" in rule:
            # non-inferiority: the paired bootstrap's 95% interval must rule the drop out. Valid at any size (a
            # small set's wide interval fails it), where "a drop fails only if significant" passes small sets
            bound = float(rule["max_ci_drop"])
            ok = t.ci_low >= -bound
            checks.append(GateCheck(name, prefix + "ci_drop", metric, t.ci_low, -bound, ok,
                                    f"95% CI of Δ [{t.ci_low:+.4f}, {t.ci_high:+.4f}] over {t.n} queries "
                                    f"{'rules out' if ok else 'does not rule out'} a drop of {bound:.4g}"))
        if rule.get("require_significant"):
            ok = t.delta > 0 and t.p_value < alpha
            checks.append(GateCheck(name, prefix + "significant", metric, t.p_value, alpha, ok,
                                    f"gain {t.delta:+.4f}, Wilcoxon p={t.p_value:.3g} (need > 0 and p < {alpha})"))
    return checks


def run_gate(report_path: str | os.PathLike, config_path: str | os.PathLike) -> list[GateCheck]:
    """Load a report and a gate config and evaluate the gate."""
    p = Path(report_path)
    cfg = load_gate_config(config_path)
    report, _ = read_report(p)
    if str(report.get("schema", "")).startswith("honed.rag-report/"):
        return evaluate_rag_gate(report, cfg)
    return evaluate_gate(report, cfg)


def gate_passed(checks: list[GateCheck]) -> bool:
    """Every non-advisory check passed."""
    return all(c.passed or c.advisory for c in checks)

"""How far to trust the RAG judge: its agreement with human faithfulness labels on a calibration set.

A calibration set is JSON Lines, one labelled triple per line::

    {"item_id": "c01", "question": "...", "contexts": ["..."], "answer": "...", "faithful": 1}

``faithful`` is the human label (1: every claim of the answer is supported by the
contexts). The judge scores each triple with the same ragas ``Faithfulness`` metric
the RAG evaluation uses; a score ≥ `threshold` reads as "faithful". Agreement is
accuracy and Cohen's kappa (chance-corrected, sklearn), each with a bootstrap 95%
interval over items. The repo ships a hand-labelled set, ``datasets/judge-calibration``;
the app's answer view (``honed annotate --answers``) collects more.

Example:
    >>> from honed.rag_eval.calibration import read_calibration, judge_agreement
    >>> items = read_calibration("datasets/judge-calibration")          # doctest: +SKIP
    >>> judge_agreement(Faithfulness(llm=judge), items)["kappa"]          # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from honed.retriever.errors import DataError, HonedError

DEFAULT_PATH = Path("datasets/judge-calibration")


def read_calibration(path: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """Labelled triples from a calibration JSONL file (or a folder holding ``triples.jsonl``); errors name file:line."""
    from honed.retriever.data.beir import iter_jsonl

    path = Path(path)
    if path.is_dir():
        path = path / "triples.jsonl"
    if not path.is_file():
        raise HonedError(f"--calibration {path}: no such file (a JSONL of labelled triples, or its folder)")
    items, seen = [], set()
    for n, obj in iter_jsonl(path):
        where = f"{path}:{n}"
        for key in ("question", "answer"):
            if not isinstance(obj.get(key), str) or not obj[key].strip():
                raise DataError(f"{where}: {key!r} must be a non-empty string")
        ctx = obj.get("contexts")
        if not isinstance(ctx, list) or not ctx or not all(isinstance(c, str) and c.strip() for c in ctx):
            raise DataError(f"{where}: 'contexts' must be a non-empty list of strings")
        if obj.get("faithful") not in (0, 1) or isinstance(obj.get("faithful"), bool):
            raise DataError(f"{where}: 'faithful' must be 0 or 1, got {obj.get('faithful')!r}")
        item_id = str(obj.get("item_id") or f"line-{n}")
        if item_id in seen:
            raise DataError(f"{where}: duplicate item_id {item_id!r}")
        seen.add(item_id)
        items.append({**obj, "item_id": item_id})
    if not items:
        raise DataError(f"{path}: holds no labelled triples")
    return items[:limit] if limit else items


def judge_agreement(faith, items: list[dict], threshold: float = 0.5, n_boot: int = 2000, seed: int = 0,
                    progress=None) -> dict:
    """Score every triple with the judge's faithfulness metric; accuracy and Cohen's kappa vs the human labels.

    A triple the judge fails to score (NaN) counts as a disagreement: a judge that cannot
    answer is not agreeing. `progress` wraps the item list (e.g. a progress bar).
    """
    from .rag_metrics import score as _score

    rows = []
    for it in (progress(items) if progress else items):
        score, err = _score(faith.ascore, user_input=it["question"], response=it["answer"],
                            retrieved_contexts=it["contexts"])
        pred = None if math.isnan(score) else int(score >= threshold)
        rows.append({"item_id": it["item_id"], "human": it["faithful"], "judge_score": None if pred is None else score,
                     "judge": pred, "error": err})
    human = np.array([r["human"] for r in rows])
    # an unscored item is read as the opposite of the human label: it cannot count as agreement
    judge = np.array([r["judge"] if r["judge"] is not None else 1 - r["human"] for r in rows])
    acc, kappa = _accuracy(human, judge), _kappa(human, judge)
    rng = np.random.default_rng(seed)
    boot_acc, boot_kappa = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(rows), len(rows))
        boot_acc.append(_accuracy(human[idx], judge[idx]))
        k = _kappa(human[idx], judge[idx])
        if k is not None:
            boot_kappa.append(k)
    confusion = {f"human {h} / judge {j}": int(((human == h) & (judge == j)).sum()) for h in (1, 0) for j in (1, 0)}
    return {"n": len(rows), "unscored": sum(r["judge"] is None for r in rows), "threshold": threshold,
            "accuracy": round(acc, 4), "accuracy_ci": _ci(boot_acc),
            "kappa": None if kappa is None else round(kappa, 4), "kappa_ci": _ci(boot_kappa) if boot_kappa else None,
            "positives": int(human.sum()), "confusion": confusion, "items": rows}


def _accuracy(h, j) -> float:
    return float((h == j).mean())


def _kappa(h, j) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    if len(set(h.tolist()) | set(j.tolist())) < 2:
        return None
    k = float(cohen_kappa_score(h, j, labels=[0, 1]))
    return None if math.isnan(k) else k


def _ci(values: list[float]) -> list[float]:
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]


def check_calibration_path(path) -> Path | None:
    """The calibration set to use: `path`, the shipped default when it exists here, or None (``none``)."""
    if path is None:
        return DEFAULT_PATH if (DEFAULT_PATH / "triples.jsonl").is_file() else None
    if str(path).lower() == "none":
        return None
    return Path(path)

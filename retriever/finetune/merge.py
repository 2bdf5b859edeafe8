"""Merge a tuned model back toward its base (a weighted average of weights) to win back what tuning lost elsewhere.

Fine-tuning on one domain can make a model worse on others. LM-Cocktail's remedy is a
weighted average of the tuned and base parameters: ``w × tuned + (1 − w) × base``. With
an out-of-domain set, :func:`choose_merge_weight` scores a grid of weights on the
in-domain and the out-of-domain test splits and keeps the largest ``w`` (the most of the
tuning) whose out-of-domain nDCG@10 is not below the base model's by more than
``max_ood_drop``; ``w = 0`` (the base itself) when none is.

Written here, not taken from the ``LM_Cocktail`` package: it loads models with
``trust_remote_code=True`` and re-saves encoders with CLS pooling, which would silently
change a mean-pooled sentence-transformers model; the average itself is a few lines.

Example:
    >>> from honed.retriever.finetune.merge import choose_merge_weight, merge_models
    >>> table = choose_merge_weight("runs/demo", "minilm", "datasets/cuad-clauses", "tests/fixtures/scifact-slice")  # doctest: +SKIP
    >>> merge_models("runs/demo", "minilm", table["chosen_weight"], "runs/demo-merged")                              # doctest: +SKIP
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import os
from pathlib import Path

from ..errors import HonedError

WEIGHTS = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)


def _load(ref):
    from sentence_transformers import SentenceTransformer

    from ..device import resolve_device
    from ..models import resolve_model

    return SentenceTransformer(str(resolve_model(ref)), device=resolve_device(), trust_remote_code=False)


def merged_model(tuned, base, weight: float):
    """A SentenceTransformer whose parameters are ``weight × tuned + (1 − weight) × base`` (models or refs)."""
    import torch

    if not 0.0 <= weight <= 1.0:
        raise HonedError(f"--weight must be between 0 and 1 (the tuned model's share), got {weight}")
    tuned = _load(tuned) if isinstance(tuned, (str, os.PathLike)) else tuned
    base = _load(base) if isinstance(base, (str, os.PathLike)) else base
    t_sd, b_sd = tuned.state_dict(), base.state_dict()
    if t_sd.keys() != b_sd.keys() or any(t_sd[k].shape != b_sd[k].shape for k in t_sd):
        raise HonedError("the tuned model and the base model have different architectures: merge a run with "
                         "the base it was fine-tuned from")
    merged = {k: (weight * t_sd[k] + (1 - weight) * b_sd[k]).to(t_sd[k].dtype) if torch.is_floating_point(t_sd[k])
              else t_sd[k] for k in t_sd}
    out = copy.deepcopy(tuned)
    out.load_state_dict(merged)
    return out


def choose_merge_weight(tuned, base, data: str | os.PathLike, ood: str | os.PathLike,
                        weights=WEIGHTS, max_ood_drop: float = 0.0, max_docs: int = 2000, seed: int = 42) -> dict:
    """nDCG@10 in-domain (`data` test) and out-of-domain (`ood` test) for each weight, and the weight chosen."""
    from rich.progress import track

    from .train import dev_evaluator

    from ..data.beir import load_beir

    tuned_m, base_m = _load(tuned), _load(base)
    evals = {name: dev_evaluator([], {}, max_docs, seed, load_beir(path, "test"))[0]
             for name, path in (("in_domain", data), ("ood", ood))}
    rows = []
    for w in track(sorted(set(weights), reverse=True), description="scoring merge weights"):
        m = merged_model(tuned_m, base_m, w)
        rows.append({"weight": w, **{name: round(float(ev(m)["dev_cosine_ndcg@10"]), 4) for name, ev in evals.items()}})
    base_ood = next((r["ood"] for r in rows if r["weight"] == 0.0), None)
    if base_ood is None:
        base_ood = round(float(evals["ood"](base_m)["dev_cosine_ndcg@10"]), 4)
    ok = [r for r in rows if r["ood"] >= base_ood - max_ood_drop]
    chosen = max((r["weight"] for r in ok), default=0.0)
    return {"data": str(data), "ood": str(ood), "max_ood_drop": max_ood_drop, "base_ood_ndcg@10": base_ood,
            "rows": rows, "chosen_weight": chosen,
            "reason": (f"largest weight whose out-of-domain nDCG@10 is ≥ the base model's {base_ood:.4f}"
                       + (f" − {max_ood_drop}" if max_ood_drop else ""))}


def merge_models(tuned, base, weight: float, out: str | os.PathLike, force: bool = False,
                 choice: dict | None = None) -> Path:
    """Write the merged model as a run folder (``honed.json`` records both parents, the weight and `choice`)."""
    from ..atomic import atomic_dir, check_writable, read_json
    from ..models import model_fingerprint, resolve_model

    out = Path(out)
    check_writable(out, "run", force)
    model = merged_model(tuned, base, weight)
    parent = read_json(Path(resolve_model(tuned)) / "honed.json") \
        if (Path(resolve_model(tuned)) / "honed.json").exists() else {}
    with atomic_dir(out, kind="run", force=force) as tmp:
        model.save(str(tmp))
        manifest = {**{k: parent[k] for k in ("base_model", "data", "params") if k in parent},
                    "honed_run": 1, "status": "ok", "reason": "",
                    "merge": {"tuned": str(tuned), "base": str(base), "weight": weight, "choice": choice},
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        manifest["fingerprint"] = model_fingerprint(tmp)
        (tmp / "honed.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if choice:
            _plot(choice, tmp / "merge.png")
    return out


def _plot(choice: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(choice["rows"], key=lambda r: r["weight"])
    w = [r["weight"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(w, [r["in_domain"] for r in rows], "o-", label=f"in-domain ({Path(choice['data']).name})")
    ax.plot(w, [r["ood"] for r in rows], "s-", label=f"out-of-domain ({Path(choice['ood']).name})")
    ax.axhline(choice["base_ood_ndcg@10"], ls="--", lw=1, color="gray", label="base, out-of-domain")
    ax.axvline(choice["chosen_weight"], ls=":", color="black", label=f"chosen w = {choice['chosen_weight']}")
    ax.set_xlabel("weight of the tuned model (0 = base, 1 = tuned)")
    ax.set_ylabel("nDCG@10 (test)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

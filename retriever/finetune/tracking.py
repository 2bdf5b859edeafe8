"""What a run records: MLflow tracking on a local SQLite store by default (``MLFLOW_TRACKING_URI`` overrides),
and the run folder's own training log (:func:`training_log`).

Example:
    >>> from honed.retriever.finetune.tracking import tracking_uri
    >>> tracking_uri("runs")          # doctest: +SKIP
    'sqlite:////abs/path/runs/mlflow.db'
"""
from __future__ import annotations

import json
import os
from pathlib import Path

EXPERIMENT = "honed"


# mlflow.set_tracking_uri() exports the URI it is given as $MLFLOW_TRACKING_URI, so after our first
# run the variable holds *our* default, not a user's choice: remember the URIs we derived and skip them.
_DERIVED: set[str] = set()


def tracking_uri(runs_dir: str | os.PathLike = "runs") -> str:
    """The MLflow store: ``$MLFLOW_TRACKING_URI`` (when the user set it) or ``sqlite:///<runs_dir>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and env not in _DERIVED:
        return env
    p = Path(runs_dir).resolve()
    p.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{p / 'mlflow.db'}"
    _DERIVED.add(uri)
    return uri


def start_run(runs_dir: str | os.PathLike, run_name: str, experiment: str = EXPERIMENT):
    """Point MLflow at the store and start a run (artifacts beside the store, not in cwd).

    Inside an active run (a recipe search) the new run is its child.
    """
    import mlflow

    if mlflow.active_run() is not None:
        return mlflow.start_run(run_name=run_name, nested=True)
    uri = tracking_uri(runs_dir)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        artifacts = (Path(runs_dir).resolve() / "mlartifacts").as_uri() if uri.startswith("sqlite") else None
        mlflow.create_experiment(experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment)
    return mlflow.start_run(run_name=run_name)


def log_run(manifest: dict, out: Path, log_model: bool = True) -> None:
    """Log a finished run's settings, dev scores, timing and status (and its model folder) to the active MLflow run."""
    import mlflow

    flat = {f"honed.{k}": v for k, v in manifest["params"].items() if not isinstance(v, (list, dict))}
    flat["honed.data_fingerprint"] = manifest["data"]["fingerprint"]
    flat["honed.base_fingerprint"] = manifest["base_model"]["fingerprint"]
    mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})
    mlflow.log_metrics({"base_dev_ndcg_at_10": manifest["eval"]["base_dev_ndcg@10"],
                        "final_dev_ndcg_at_10": manifest["eval"]["dev_ndcg@10"],
                        "seconds_per_epoch": manifest["timing"]["seconds_per_epoch"],
                        "peak_rss_mb": manifest["timing"]["peak_rss_mb"]})
    mlflow.set_tags({"honed.status": manifest["status"], "honed.model_fingerprint": manifest["fingerprint"],
                     "honed.run_dir": str(out.resolve())})
    if log_model:
        mlflow.log_artifacts(str(out), artifact_path="model")


def training_log(run: str | os.PathLike) -> dict:
    """A run folder's training loss and dev nDCG@10 per step (``log_history.json``), with the base model's
    dev nDCG@10, the best step, the status and the parameters (``honed.json``)."""
    run = Path(run)
    hist = json.loads((run / "log_history.json").read_text(encoding="utf-8"))
    man = json.loads((run / "honed.json").read_text(encoding="utf-8")) if (run / "honed.json").is_file() else {}
    return {"loss": [(h["step"], h["loss"]) for h in hist if "loss" in h],
            "dev_ndcg": [(h["step"], h["eval_dev_cosine_ndcg@10"]) for h in hist if "eval_dev_cosine_ndcg@10" in h],
            "base_dev_ndcg": (man.get("eval") or {}).get("base_dev_ndcg@10"),
            "best_step": (man.get("eval") or {}).get("best_step"), "status": man.get("status"),
            "params": man.get("params") or {}}

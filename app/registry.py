"""Model promotion in the MLflow model registry: versions with ``challenger`` / ``champion`` aliases.

Every retrained model is registered as a new version of ``honed-retriever``
and gets the ``challenger`` alias; it becomes ``champion`` only when the gate
passed (the previous champion keeps ``previous-champion``). The app reads the
aliases, so promotion needs no redeploy.

Example:
    >>> from honed.app.registry import register_model, promote, model_for_alias
    >>> v = register_model("runs/retrain-1")                  # doctest: +SKIP
    >>> promote(v)                                            # doctest: +SKIP
    >>> model_for_alias("champion")                           # doctest: +SKIP
    PosixPath('/abs/runs/retrain-1')
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from honed.retriever.errors import HonedError

REGISTERED_NAME = "honed-retriever"


def _client(runs_dir: str | os.PathLike):
    import mlflow
    from mlflow import MlflowClient

    from honed.retriever.finetune.tracking import tracking_uri

    uri = tracking_uri(runs_dir)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _training_run_id(client, fingerprint: str) -> str | None:
    """The MLflow run that trained the model with this fingerprint (finetune tags it)."""
    from honed.retriever.finetune.tracking import EXPERIMENT

    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], f"tags.`honed.model_fingerprint` = '{fingerprint}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def register_model(model_dir: str | os.PathLike, runs_dir: str | os.PathLike = "runs",
                   name: str = REGISTERED_NAME, alias: str = "challenger", tags: dict | None = None) -> str:
    """Register a fine-tuned run folder as a new model version with `alias`; returns the version."""
    model_dir = Path(model_dir).resolve()
    man_path = model_dir / "honed.json"
    if not man_path.exists():
        raise HonedError(f"{model_dir}: not a honed run folder (no honed.json)")
    man = json.loads(man_path.read_text())
    from mlflow.exceptions import MlflowException

    client = _client(runs_dir)
    try:
        client.get_registered_model(name)
    except MlflowException as e:
        if not _not_found(e):   # a broken or unreachable store is an error, not "no model yet"
            raise
        client.create_registered_model(name, description="honed fine-tuned retrievers; aliases champion/challenger")
    run_id = _training_run_id(client, man["fingerprint"])
    source = f"runs:/{run_id}/model" if run_id else model_dir.as_uri()
    all_tags = {"honed.model_dir": str(model_dir), "honed.model_fingerprint": man["fingerprint"],
                "honed.status": man.get("status", ""), **{k: str(v) for k, v in (tags or {}).items()}}
    mv = client.create_model_version(name, source, run_id=run_id, tags=all_tags)
    client.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


def promote(version: str, runs_dir: str | os.PathLike = "runs", name: str = REGISTERED_NAME) -> None:
    """Make `version` the champion; the champion it replaces becomes ``previous-champion``."""
    client = _client(runs_dir)
    old = alias_version("champion", runs_dir, name)
    if old is not None and str(old.version) != str(version):
        client.set_registered_model_alias(name, "previous-champion", old.version)
    client.set_registered_model_alias(name, "champion", str(version))
    client.set_model_version_tag(name, str(version), "honed.promoted", "true")


def alias_version(alias: str, runs_dir: str | os.PathLike = "runs", name: str = REGISTERED_NAME):
    """The registry's ModelVersion behind `alias`, or None."""
    from mlflow.exceptions import MlflowException

    client = _client(runs_dir)
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if _not_found(e):
            return None
        raise


def _not_found(e) -> bool:
    """MLflow's "no such model" (RESOURCE_DOES_NOT_EXIST) or "no such alias" (INVALID_PARAMETER_VALUE)."""
    return getattr(e, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def alias_model(alias: str, runs_dir: str | os.PathLike = "runs", name: str = REGISTERED_NAME) -> tuple[Path, str]:
    """(local model folder, registry version) behind `alias` (e.g. champion)."""
    mv = alias_version(alias, runs_dir, name)
    if mv is None:
        raise HonedError(f"no model version has the alias {alias!r} in registry {name!r} "
                         f"(store {Path(runs_dir) / 'mlflow.db'}); run `honed retrain` first")
    path = Path(mv.tags.get("honed.model_dir", ""))
    if not (path / "modules.json").exists():
        raise HonedError(f"{name} v{mv.version} ({alias}): model folder {path} is missing on this machine")
    return path, str(mv.version)


def model_for_alias(alias: str, runs_dir: str | os.PathLike = "runs", name: str = REGISTERED_NAME) -> Path:
    """The local model folder registered under `alias` (e.g. champion)."""
    return alias_model(alias, runs_dir, name)[0]

"""Models in the MLflow model registry: register a checkpoint, load one back for serving.

A registered offerbandit model is an MLflow run artifact folder ``model/`` holding the
checkpoint file ``model.ckpt`` (weights, VW arguments and the log position). ``serve
--model models:/<name>@<alias>`` downloads it and starts from its weights. Registering goes
through :meth:`offline_eval.tracking.tracker.Tracker.register_model` (the one module that writes to
MLflow); see ``docs/offline-evaluation.md`` for the promotion rule.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bandit.checkpoint import Checkpoint, read_checkpoint
from offline_eval._extras import require

__all__ = ["ARTIFACT_DIR", "CHECKPOINT_FILE", "load_checkpoint", "load_model_bytes"]

ARTIFACT_DIR = "model"
CHECKPOINT_FILE = "model.ckpt"


def load_checkpoint(uri: str, tracking_uri: str | None = None) -> Checkpoint:
    """The checkpoint behind an MLflow model URI (``models:/name@alias``, ``runs:/id/model``).

    Weights together with the VW arguments they were trained with. ``tracking_uri``
    (also the registry URI) defaults to ``MLFLOW_TRACKING_URI``.
    """
    require("mlflow", f"loading {uri}")
    import mlflow

    source = _resolve(uri, tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri
            )
        )
        path = local / CHECKPOINT_FILE if local.is_dir() else local
        if not path.exists():
            found = sorted(local.rglob(CHECKPOINT_FILE))
            if not found:
                raise FileNotFoundError(f"{uri} holds no {CHECKPOINT_FILE}")
            path = found[0]
        return read_checkpoint(path)


def _resolve(uri: str, tracking_uri: str | None) -> str:
    """A ``models:/name@alias`` or ``models:/name/version`` URI as its version's source.

    Resolved through the registry of ``tracking_uri`` explicitly (MLflow's own resolution
    of ``models:/`` URIs reads the global registry URI, not the one passed in).
    """
    if not uri.startswith("models:/"):
        return uri
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, _, number = rest.partition("/")
        if not number.isdigit():
            raise ValueError(f"{uri}: use models:/NAME@ALIAS or models:/NAME/VERSION")
        version = client.get_model_version(name, number)
    return str(version.source)


def load_model_bytes(uri: str, tracking_uri: str | None = None) -> bytes:
    """The VW weights behind an MLflow model URI (``models:/name@alias``, ``runs:/id/model``)."""
    return load_checkpoint(uri, tracking_uri).model

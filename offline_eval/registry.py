"""Models in the MLflow model registry: register a checkpoint, load one back for serving.

A registered offerbandit model is an MLflow run artifact folder ``model/`` holding the
checkpoint file ``model.ckpt`` (weights, VW arguments and the log position). ``serve
--model models:/<name>@<alias>`` downloads it and starts from its weights.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bandit.checkpoint import read_checkpoint

ARTIFACT_DIR = "model"
CHECKPOINT_FILE = "model.ckpt"


def load_model_bytes(uri: str, tracking_uri: str | None = None) -> bytes:
    """The VW weights behind an MLflow model URI (``models:/name@alias``, ``runs:/id/model``)."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        path = local / CHECKPOINT_FILE if local.is_dir() else local
        if not path.exists():
            found = sorted(local.rglob(CHECKPOINT_FILE))
            if not found:
                raise FileNotFoundError(f"{uri} holds no {CHECKPOINT_FILE}")
            path = found[0]
        return read_checkpoint(path).model

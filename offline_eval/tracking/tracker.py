"""MLflow tracking: the one module of offerbandit that imports mlflow.

A *study* is an MLflow experiment; each comparison is a parent run with one child run per
policy (or per slice, for uplift reports). The tracking URI defaults to an embedded SQLite
store next to the working directory (``sqlite:///mlflow.db``, artifacts under
``./mlartifacts``) unless ``MLFLOW_TRACKING_URI`` or an explicit URI says otherwise; open it
with ``mlflow ui --backend-store-uri sqlite:///mlflow.db``.

>>> tracker = Tracker()  # doctest: +SKIP
>>> with tracker.comparison("spring", "eval", params={"rows": 1}) as cmp:  # doctest: +SKIP
...     with cmp.child("uniform", params={"policy": "uniform"}) as run:
...         run.log_metrics({"DR.value": 1.2, "DR.ci_low": 0.9})
...     cmp.log_artifact(Path("comparison.png"))
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offline_eval._extras import require

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
"""MLflow 3's experiment-kind tag: offerbandit studies are model development, not GenAI. The
3.17 UI still opens in whichever view the user last chose (GenAI by default) unless the URL
carries ``?workflowType=machine_learning``: the links offerbandit prints do."""
DEFAULT_ARTIFACT_ROOT = "mlartifacts"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)


def ui_command(tracking_uri: str) -> str:
    """How a person opens the runs in the MLflow UI."""
    return f"mlflow ui --backend-store-uri {tracking_uri} --port 5000"


def _flat(params: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in params.items():
        text = str(v)
        out[k] = text if len(text) <= 6000 else text[:5997] + "..."
    return out


@dataclass
class Run:
    """One MLflow run, open until its context ends."""

    client: Any
    run_id: str

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        if params:
            self.client.log_batch(
                self.run_id, params=[Param(k, v) for k, v in _flat(params).items()]
            )

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, step) for k, v in metrics.items() if math.isfinite(float(v))
        ]
        for i in range(0, len(batch), 900):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 900])

    def log_series(self, name: str, values: list[tuple[int, float]]) -> None:
        """A metric over steps (the MLflow UI draws it as a curve, e.g. a learning curve)."""
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(name, float(v), now, int(s)) for s, v in values if math.isfinite(v)]
        for i in range(0, len(batch), 900):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 900])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_artifacts(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(path), folder)


@dataclass
class Comparison(Run):
    """A parent run; :meth:`child` opens nested runs under it."""

    experiment_id: str = ""

    @contextmanager
    def child(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> Iterator[Run]:
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={
                "mlflow.parentRunId": self.run_id,
                **{k: str(v) for k, v in (tags or {}).items()},
            },
        )
        child = Run(self.client, run.info.run_id)
        child.log_params(params or {})
        status = "FAILED"
        try:
            yield child
            status = "FINISHED"
        finally:
            self.client.set_terminated(child.run_id, status)


class Tracker:
    """Creates studies (experiments) and comparisons (parent runs) in one tracking store."""

    def __init__(self, tracking_uri: str | None = None, artifact_root: str | None = None) -> None:
        require("mlflow", "MLflow tracking")
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.artifact_root = artifact_root
        if self.artifact_root is None and self.tracking_uri.startswith("sqlite:///"):
            db = Path(self.tracking_uri[len("sqlite:///") :])
            self.artifact_root = str((db.parent / DEFAULT_ARTIFACT_ROOT).resolve())
        self.client = MlflowClient(tracking_uri=self.tracking_uri)

    def register_model(
        self,
        run_id: str,
        name: str,
        *,
        alias: str | None = None,
        artifact_path: str = "model",
        description: str = "",
        tags: Mapping[str, Any] | None = None,
    ) -> str:
        """Register the run's ``artifact_path`` folder as a new version of model ``name``
        (created when missing), point ``alias`` at it, and return the version.

        The version's source is the run's artifact URI, so ``models:/name@alias`` resolves
        to the folder (``offline_eval.tracking.registry.load_checkpoint`` reads it back).
        """
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, description=description or None)
        run = self.client.get_run(run_id)
        source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
        version = self.client.create_model_version(
            name,
            source=source,
            run_id=run_id,
            tags={k: str(v) for k, v in (tags or {}).items()} or None,
            description=description or None,
        )
        if alias:
            self.client.set_registered_model_alias(name, alias, version.version)
        return str(version.version)

    def tag_run(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags on a finished run (e.g. which model version it registered)."""
        for k, v in tags.items():
            self.client.set_tag(run_id, k, str(v))

    def experiment_id(self, study: str) -> str:
        """The study's experiment (created when missing), tagged to open in the classic
        runs view."""
        found = self.client.get_experiment_by_name(study)
        if found is not None:
            if found.tags.get(EXPERIMENT_KIND[0]) is None:
                self.client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
            return str(found.experiment_id)
        location = None
        if self.artifact_root is not None:
            location = Path(self.artifact_root, study.replace("/", "_")).resolve().as_uri()
        return str(
            self.client.create_experiment(
                study, artifact_location=location, tags=dict([EXPERIMENT_KIND])
            )
        )

    @contextmanager
    def comparison(
        self,
        study: str,
        name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> Iterator[Comparison]:
        """A parent run in experiment ``study``; finished (or FAILED) when the block ends."""
        exp = self.experiment_id(study)
        run = self.client.create_run(
            exp, run_name=name, tags={k: str(v) for k, v in (tags or {}).items()}
        )
        cmp = Comparison(self.client, run.info.run_id, exp)
        cmp.log_params(params or {})
        status = "FAILED"
        try:
            yield cmp
            status = "FINISHED"
        finally:
            self.client.set_terminated(cmp.run_id, status)

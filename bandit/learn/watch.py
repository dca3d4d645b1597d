"""The decider's side of the model store: load each new model version as it appears.

A decider process (``offerbandit serve --role decider``) learns nothing itself: the trainer
publishes checkpoints to the model store (a folder shared by the processes, one file per
version, written atomically: :class:`~bandit.checkpoint.CheckpointStore`). The watcher looks
for a newer version every ``interval`` seconds and publishes it to the Choose path's decider,
which stamps its version on every decision from then on.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from bandit.checkpoint import CheckpointStore
from bandit.errors import StorageError
from bandit.learner import Learner, make_policy

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, policy: Learner, version: str) -> None: ...


class ModelWatcher:
    """Publishes the newest checkpoint of ``store`` newer than ``version`` to ``publisher``."""

    def __init__(
        self, store: CheckpointStore, publisher: Publisher, version: int, interval: float = 1.0
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.version = version
        """The version the decider serves."""
        self.interval = interval

    def check(self) -> bool:
        """Load and publish a newer version if the store has one; whether it did."""
        versions = self.store.versions()
        if not versions or versions[-1] <= self.version:
            return False
        try:
            ckpt = self.store.read(versions[-1])
        except StorageError as exc:  # pruned or replaced meanwhile: the next look finds it
            log.debug("model v%d not read: %s", versions[-1], exc)
            return False
        self.publisher.publish(make_policy(ckpt.vw_args, ckpt.model), ckpt.model_version)
        self.version = ckpt.version
        log.info("now deciding with model %s from the model store", ckpt.model_version)
        return True

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set (a failure is logged and retried)."""
        while not stop.wait(self.interval):
            try:
                self.check()
            except Exception:
                log.exception("loading a model from the model store failed; retrying")


__all__ = ["ModelWatcher"]

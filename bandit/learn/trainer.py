"""The trainer as a process of its own (``offerbandit trainer``): the learning path of
:mod:`bandit.learn` without the Choose path, on a log several deciders share.

Exactly one trainer is active per log: it holds the log's lease
(:class:`bandit.log.postgres.lease.TrainerLease`); a second one stands by until the lease is
free. Once active, the trainer starts from the newest checkpoint in the model store (its
model and the log position it has learned up to), closes attribution windows on schedule,
learns closed decisions in ``closed_seq`` order, and checkpoints model and position together
(one file, written atomically) into the model store, where the deciders pick each version up
(:mod:`bandit.learn.watch`). A trainer that dies loses only what it learned since its last
checkpoint, and its successor learns exactly that again from the log: every closed decision
is in the weights once. Before each checkpoint the trainer checks that it still holds the
lease; one that lost it stops without writing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from bandit.checkpoint import Checkpoint, CheckpointStore
from bandit.errors import StorageError
from bandit.learn.closer import Closer, ClosingLog
from bandit.learn.learning import Learning, LearningLog
from bandit.learn.start import starting_point
from bandit.learner import Learner
from bandit.rewards import RewardRule

log = logging.getLogger(__name__)


class Lease(Protocol):
    """What the trainer needs of its lease (:class:`~bandit.log.postgres.lease.TrainerLease`)."""

    def acquire(self, stop: threading.Event) -> bool: ...

    def held(self) -> bool: ...

    def release(self) -> None: ...


class TrainerLog(ClosingLog, LearningLog, Protocol):
    """The decision log as the trainer uses it."""


class _LeasedStore(CheckpointStore):
    """The model store, written only while the lease is held."""

    def __init__(self, folder: Path, keep: int, held: Callable[[], bool]) -> None:
        super().__init__(folder, keep)
        self._held = held

    def save(self, ckpt: Checkpoint) -> Path:
        if not self._held():
            raise StorageError("the trainer's lease is lost: not writing the checkpoint")
        return super().save(ckpt)


class _Nobody:
    """The trainer publishes to the model store only (deciders load from there)."""

    def publish(self, policy: Learner, version: str) -> None:
        pass


class Trainer:
    """One trainer process's work: wait for the lease, then close, learn and checkpoint
    until stopped (or the lease is lost)."""

    def __init__(
        self,
        *,
        log: TrainerLog,
        lease: Lease,
        model_store: Path,
        args: Sequence[str],
        reward_rule: RewardRule,
        clock: Callable[[], float],
        keep: int = 5,
        batch: int = 256,
        close_interval: float = 1.0,
        checkpoint_every_learns: int = 1000,
        checkpoint_every_seconds: float = 30.0,
        initial_model: bytes | None = None,
    ) -> None:
        self.log = log
        self.lease = lease
        self.store = _LeasedStore(model_store, keep, lease.held)
        self.args = list(args)
        self.reward_rule = reward_rule
        self.clock = clock
        self.batch = batch
        self.close_interval = close_interval
        self.every_learns = checkpoint_every_learns
        self.every_seconds = checkpoint_every_seconds
        self.initial_model = initial_model
        self.learning: Learning | None = None
        self.active = threading.Event()
        """Set once this trainer holds the lease and has loaded its starting point."""

    def run(self, stop: threading.Event) -> None:
        """Stand by for the lease, then train until ``stop`` is set or the lease is lost;
        on ``stop``, learn what is closed and checkpoint it before giving the lease up."""
        if not self.lease.acquire(stop):
            return
        try:
            self._train(stop)
        finally:
            self.lease.release()

    def _train(self, stop: threading.Event) -> None:
        start = starting_point(self.store.latest(), self.args, self.initial_model, (),
                               lambda _kind: list(self.args))  # fmt: skip
        clock = _Clock(self.clock)
        learning = Learning(
            log=self.log,
            checkpoints=self.store,
            publisher=_Nobody(),
            clock=clock,
            args=start.args,
            model=start.model,
            version=start.version,
            position=start.position,
            learned=start.learned,
            reward_rule=self.reward_rule,
            batch=self.batch,
            checkpoint_every_learns=self.every_learns,
            checkpoint_every_seconds=self.every_seconds,
        )
        self.learning = learning
        closer = Closer(self.log, clock, self.close_interval)
        log.info(
            "trainer active: model v%d, learned up to log position %d",
            start.version,
            start.position,
        )
        self.active.set()
        done = threading.Event()
        threads = [
            threading.Thread(target=closer.run, args=(done,), name="closer", daemon=True),
            threading.Thread(target=learning.run, args=(done,), name="learner", daemon=True),
        ]
        for t in threads:
            t.start()
        lost = False
        while not stop.wait(self.close_interval):
            if not self.lease.held():
                lost = True
                log.error("the trainer's lease is lost; stopping without a checkpoint")
                break
        done.set()
        for t in threads:
            t.join()
        if not lost:
            closer.close_due()
            learning.learn_pending()
            if learning.unsaved:
                learning.checkpoint()


class _Clock:
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


__all__ = ["Lease", "Trainer", "TrainerLog"]

"""The learner: learns closed decisions in log order with its own policy object,
checkpoints model + log position atomically, and publishes each checkpoint to the decider.

Exactly once: a checkpoint stores the last ``closed_seq`` its model has learned, and a
restart resumes after it (:mod:`bandit.checkpoint`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from bandit.checkpoint import Checkpoint, CheckpointStore
from bandit.learner import Learner, make_policy
from bandit.numbers import finite_float32
from bandit.ratelog import RateLimitedLog
from bandit.records import ClosedDecision
from bandit.rewards import RewardRule

log = logging.getLogger(__name__)
_rate_log = RateLimitedLog(log, interval=10.0)


class Clock(Protocol):
    def now(self) -> float: ...


class LearningLog(Protocol):
    """What the learner needs of the decision log."""

    def closed_after(self, position: int, limit: int) -> list[ClosedDecision]: ...


class Publisher(Protocol):
    """Where a checkpointed model goes live (the Choose path's decider)."""

    def publish(self, policy: Learner, version: str) -> None: ...


def learnable(reward: float, revenue: float, propensity: float, rule: RewardRule) -> bool:
    """Whether a closed decision's label is safe for VW's float32: a finite reward whose cost
    (``reward × scale``) and revenue are within the number policy's range, and a
    propensity in (0, 1]. A decision failing this is skipped, never learned.

    >>> rule = RewardRule()
    >>> learnable(71.5, 80.0, 0.25, rule), learnable(float("inf"), 0.0, 0.25, rule)
    (True, False)
    >>> learnable(1.0, 1.0, 0.0, rule)
    False
    """
    return (
        finite_float32(reward)
        and finite_float32(reward * rule.scale)
        and finite_float32(revenue)
        and 0.0 < propensity <= 1.0
    )


class Learning:
    """The learner and its checkpoints. Thread-safe: :meth:`learn_pending` and
    :meth:`checkpoint` take one lock; :meth:`run` is the background loop."""

    def __init__(
        self,
        *,
        log: LearningLog,
        checkpoints: CheckpointStore,
        publisher: Publisher,
        clock: Clock,
        args: Sequence[str],
        model: bytes | None,
        version: int,
        position: int,
        learned: int,
        reward_rule: RewardRule,
        batch: int = 256,
        checkpoint_every_learns: int = 1000,
        checkpoint_every_seconds: float = 30.0,
    ) -> None:
        """``args``/``model``: the policy to learn with (:func:`bandit.learner.make_policy`);
        ``version``/``position``/``learned``: where its checkpoint left off."""
        self.log = log
        self.checkpoints = checkpoints
        self.publisher = publisher
        self.clock = clock
        self.args = list(args)
        self.reward_rule = reward_rule
        self.batch = batch
        self.every_learns = checkpoint_every_learns
        self.every_seconds = checkpoint_every_seconds
        self._policy = make_policy(self.args, model)
        self._policy.learned = learned
        self.version = version
        self.position = position
        """The last ``closed_seq`` learned."""
        self.skipped = 0
        """Closed decisions skipped since start: their label cannot be held (:func:`learnable`)."""
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._lock = threading.Lock()

    @property
    def learned(self) -> int:
        return self._policy.learned

    def learn_pending(self, max_decisions: int | None = None) -> int:
        """Learn closed, not yet learned decisions in log order; returns how many."""
        done = 0
        rule = self.reward_rule
        with self._lock:
            while max_decisions is None or done < max_decisions:
                n = self.batch
                if max_decisions is not None:
                    n = min(n, max_decisions - done)
                batch = self.log.closed_after(self.position, n)
                if not batch:
                    break
                for cd in batch:
                    if learnable(cd.reward, cd.revenue, cd.decision.propensity, rule):
                        self._policy.learn_closed(
                            cd.decision, cd.reward, cd.revenue, cd.n_outcomes, rule
                        )
                    else:
                        self.skipped += 1
                        _rate_log.warning(
                            "learn",
                            "skipped learning decision %s: its reward %r or propensity %r "
                            "cannot be held by VW",
                            cd.decision.event_id,
                            cd.reward,
                            cd.decision.propensity,
                        )
                    self.position = cd.closed_seq
                    self._since_checkpoint += 1
                    done += 1
                if self._checkpoint_due():
                    self._checkpoint_locked()
        return done

    @property
    def unsaved(self) -> int:
        """Decisions learned since the last checkpoint."""
        return self._since_checkpoint

    def _checkpoint_due(self) -> bool:
        if self._since_checkpoint == 0:
            return False
        return (
            self._since_checkpoint >= self.every_learns
            or time.monotonic() - self._last_checkpoint >= self.every_seconds
        )

    def checkpoint(self) -> Checkpoint:
        """Save the learner's model with its log position and publish it."""
        with self._lock:
            return self._checkpoint_locked()

    def _checkpoint_locked(self) -> Checkpoint:
        model = self._policy.serialize()
        ckpt = Checkpoint(
            version=self.version + 1,
            position=self.position,
            learned=self._policy.learned,
            vw_args=self.args,
            created_at=self.clock.now(),
            model=model,
        )
        self.checkpoints.save(ckpt)
        self.version = ckpt.version
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self.publisher.publish(make_policy(self.args, model), ckpt.model_version)
        log.info(
            "checkpoint %s: learned %d decisions, log position %d",
            ckpt.model_version,
            ckpt.learned,
            ckpt.position,
        )
        return ckpt

    def run(self, stop: threading.Event) -> None:
        """Learn and checkpoint until ``stop`` is set (a failure is logged and retried)."""
        while not stop.is_set():
            try:
                n = self.learn_pending(self.batch)
                if n == 0:
                    with self._lock:
                        if self._checkpoint_due():
                            self._checkpoint_locked()
                    stop.wait(0.05)
            except Exception:
                log.exception("learning failed; retrying")
                stop.wait(1.0)


__all__ = ["Learning", "LearningLog", "Publisher", "learnable"]

"""The decision log's records in domain terms: what a transport hands in, what the log gives back.

They carry no storage detail, so the service, the adapter and offline readers share them
without importing the log's implementation.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

from bandit.types import Decision, TreatmentRef

_Z95 = 1.959963984540054
"""The normal quantile of a two-sided 95% interval."""


class OutcomeStatus(StrEnum):
    ATTRIBUTED = "attributed"
    UNATTRIBUTED = "unattributed"
    LATE = "late"
    DUPLICATE = "duplicate"


class DecisionState(StrEnum):
    PENDING_ACTIVATION = "pending_activation"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A logged decision with its attribution and learning state."""

    decision: Decision
    seq: int
    activated_at: float | None
    window_closes_at: float | None
    closed_seq: int | None
    reward: float | None
    n_outcomes: int
    revenue: float

    @property
    def state(self) -> DecisionState:
        if self.closed_seq is not None:
            return DecisionState.CLOSED
        if self.activated_at is None:
            return DecisionState.PENDING_ACTIVATION
        return DecisionState.OPEN


@dataclass(frozen=True, slots=True)
class OutcomeInput:
    """An outcome as reported, in domain terms. ``occurred_at`` None means now."""

    outcome_id: str
    event_id: str
    customer_id: str
    type: str
    revenue: float
    occurred_at: float | None

    def payload_hash(self) -> str:
        raw = "\x1f".join(
            [
                self.event_id,
                self.customer_id,
                self.type,
                repr(float(self.revenue)),
                "" if self.occurred_at is None else repr(float(self.occurred_at)),
            ]
        )
        return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    outcome_id: str
    status: OutcomeStatus
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class ActivationInput:
    """A send platform's confirmation: activate deferred decision ``event_id`` at
    ``activated_at`` (None: now)."""

    event_id: str
    activated_at: float | None = None


@dataclass(frozen=True, slots=True)
class Activation:
    """A deferred decision activated (durably): its window closes at ``window_closes_at``."""

    event_id: str
    customer_id: str
    activated_at: float
    window_closes_at: float


@dataclass(frozen=True, slots=True)
class ClosedDecision:
    """What the learner needs: the decision as logged, its final reward, and what the reward
    was computed from (the attributed revenue and how many outcomes carried it)."""

    closed_seq: int
    decision: Decision
    reward: float
    revenue: float = 0.0
    n_outcomes: int = 0


@dataclass(frozen=True, slots=True)
class Incremental:
    """The live policy's incremental net value per decision against all-control.

    Per closed, non-holdout decision ``i`` with reward ``r_i``: ``ψ_i = r_i − 1{control}·r_i /
    μ_i(control)``, whose mean is an unbiased estimate of V(logged policy) − V(all control)
    (the control share keeps ``μ(control)`` ≥ the floor, so the weights stay bounded). The
    interval is the normal one at level 95%.
    """

    decisions: int
    per_decision: float
    ci_low: float
    ci_high: float
    method: str = "ips-vs-control-share, normal 95%"
    """How the scores were made (GetStats reports it)."""

    @property
    def total(self) -> float:
        return self.per_decision * self.decisions

    def detectable(self, power: float = 0.8) -> float:
        """The smallest true gain per decision that an estimate as spread as this one (over
        as many decisions) would show above 0 — its 95% interval wholly positive — with
        probability ``power``: the minimum detectable effect, ``(z₀.₉₇₅ + z_power)`` standard
        errors (NaN before there is an interval).

        >>> round(Incremental(400, 0.1, -0.88, 1.08).detectable(), 2)
        1.4
        """
        se = (self.ci_high - self.ci_low) / (2.0 * _Z95)
        return (_Z95 + NormalDist().inv_cdf(power)) * se

    def decisions_to_detect(self, gain: float, power: float = 0.8) -> float:
        """How many decisions an estimate of this spread needs before a true ``gain`` per
        decision shows above 0 with probability ``power`` (the standard error falls as
        ``1/√n``; the spread per decision is taken as it is now). NaN without an interval.

        >>> round(Incremental(400, 0.1, -0.88, 1.08).decisions_to_detect(0.7))
        1602
        """
        if not gain > 0.0:
            raise ValueError("gain must be positive")
        return self.decisions * (self.detectable(power) / gain) ** 2

    @staticmethod
    def from_sums(n: int, s1: float, s2: float, z: float = _Z95) -> Incremental:
        """From the count, sum and sum of squares of the per-row scores.

        >>> e = Incremental.from_sums(4, 8.0, 20.0)
        >>> e.per_decision, round(e.ci_low, 3), round(e.ci_high, 3)
        (2.0, 0.868, 3.132)
        """
        if n == 0:
            return Incremental(0, math.nan, math.nan, math.nan)
        mean = s1 / n
        if n < 2:
            return Incremental(n, mean, math.nan, math.nan)
        var = max(s2 - n * mean * mean, 0.0) / (n - 1)
        half = z * math.sqrt(var / n)
        return Incremental(n, mean, mean - half, mean + half)


@dataclass(frozen=True, slots=True)
class LogStats:
    decisions: int
    activations: int
    pending_activation: int
    outcomes: dict[str, int]
    attributed_revenue: float
    pending_windows: int
    closed: int
    recent: list[tuple[TreatmentRef, int, float]]
    """(treatment, closed decisions, mean reward) over the recent period, best first."""
    incremental: Incremental


@dataclass(frozen=True, slots=True)
class Windows:
    """Attribution windows in seconds, per channel id, with a default (also used for control)."""

    default: float = 7 * 24 * 3600.0
    per_channel: tuple[tuple[str, float], ...] = ()

    def for_channel(self, channel_id: str) -> float:
        for cid, seconds in self.per_channel:
            if cid == channel_id:
                return seconds
        return self.default


__all__ = [
    "Activation",
    "ActivationInput",
    "ClosedDecision",
    "DecisionState",
    "Incremental",
    "LogStats",
    "OutcomeInput",
    "OutcomeResult",
    "OutcomeStatus",
    "StoredDecision",
    "Windows",
]

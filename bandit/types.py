"""Domain types of offerbandit: frozen, slotted dataclasses that check their invariants once.

The words are the README's: a *customer* is decided for when a *trigger* fires; a *treatment*
is one *offer* through one *channel*, or *control* (do nothing, cost 0); a *decision* is the
logged answer of one Choose call with its full probability distribution (pmf).

>>> TreatmentRef("", "").is_control
True
>>> TreatmentRef("free_shipping", "email").key
'free_shipping@email'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

FeatureValue = float | str | bool | tuple[str, ...]
"""One feature: a number, a text, a flag, or a list of tags."""

Features = Mapping[str, FeatureValue]

PMF_TOLERANCE = 1e-6


def freeze_features(features: Mapping[str, FeatureValue] | None) -> Features:
    """A read-only copy of ``features`` (tags become tuples).

    >>> dict(freeze_features({"tags": ["a", "b"], "ltv": 3}))
    {'tags': ('a', 'b'), 'ltv': 3}
    """
    if not features:
        return MappingProxyType({})
    out: dict[str, FeatureValue] = {}
    for name, value in features.items():
        if isinstance(value, list):
            value = tuple(value)
        out[name] = value
    return MappingProxyType(out)


@dataclass(frozen=True, slots=True)
class Customer:
    """The person decided for."""

    id: str
    features: Features = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Trigger:
    """Why we decide now: an event type (``cart_abandoned``, ``login`` …) plus features."""

    type: str
    features: Features = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Offer:
    """Something that may be proposed, with its cost model.

    The cost of an accepted offer is ``fixed_cost + discount_rate * attributed revenue``.
    """

    id: str
    features: Features = field(default_factory=lambda: MappingProxyType({}))
    fixed_cost: float = 0.0
    discount_rate: float = 0.0

    def cost(self, revenue: float) -> float:
        """What this offer costs when ``revenue`` was attributed to it.

        >>> Offer("d10", discount_rate=0.1, fixed_cost=0.5).cost(80.0)
        8.5
        """
        return self.fixed_cost + self.discount_rate * revenue


@dataclass(frozen=True, slots=True)
class Channel:
    """How a treatment is delivered, with its per-contact cost."""

    id: str
    features: Features = field(default_factory=lambda: MappingProxyType({}))
    contact_cost: float = 0.0


@dataclass(frozen=True, slots=True)
class TreatmentRef:
    """A treatment named by ids. Both ids empty means control (do nothing)."""

    offer_id: str
    channel_id: str

    @property
    def is_control(self) -> bool:
        return not self.offer_id and not self.channel_id

    @property
    def key(self) -> str:
        """A printable key: ``offer@channel``, or ``control``."""
        return "control" if self.is_control else f"{self.offer_id}@{self.channel_id}"


CONTROL = TreatmentRef("", "")


@dataclass(frozen=True, slots=True)
class Treatment:
    """One candidate action: an offer through a channel, or control (both ``None``)."""

    offer: Offer | None
    channel: Channel | None

    def __post_init__(self) -> None:
        if (self.offer is None) != (self.channel is None):
            raise ValueError("a treatment has both an offer and a channel, or neither (control)")

    @property
    def is_control(self) -> bool:
        return self.offer is None

    @property
    def ref(self) -> TreatmentRef:
        if self.offer is None or self.channel is None:
            return CONTROL
        return TreatmentRef(self.offer.id, self.channel.id)

    def cost(self, revenue: float) -> float:
        """Offer cost plus channel contact cost; control costs nothing.

        >>> Treatment(Offer("d", discount_rate=0.2), Channel("sms", contact_cost=0.05)).cost(10.0)
        2.05
        >>> CONTROL_TREATMENT.cost(100.0)
        0.0
        """
        if self.offer is None or self.channel is None:
            return 0.0
        return self.offer.cost(revenue) + self.channel.contact_cost

    def net_value(self, revenue: float) -> float:
        """Revenue minus what the treatment cost: the business value of one decision."""
        return revenue - self.cost(revenue)


CONTROL_TREATMENT = Treatment(None, None)


@dataclass(frozen=True, slots=True)
class Context:
    """What a decision is made on: the customer and the trigger."""

    customer: Customer
    trigger: Trigger


def check_pmf(pmf: tuple[float, ...]) -> None:
    """Raise ``ValueError`` unless ``pmf`` is a probability distribution.

    >>> check_pmf((0.5, 0.5))
    >>> check_pmf((0.5, 0.6))
    Traceback (most recent call last):
    ...
    ValueError: pmf sums to 1.1, not 1
    """
    if not pmf:
        raise ValueError("pmf is empty")
    total = 0.0
    for p in pmf:
        if not (0.0 <= p <= 1.0) or math.isnan(p):
            raise ValueError(f"pmf has a probability outside [0, 1]: {p!r}")
        total += p
    if abs(total - 1.0) > PMF_TOLERANCE:
        raise ValueError(f"pmf sums to {total:.6g}, not 1")


class RewardMode(StrEnum):
    """When a decision's reward is computed and learned."""

    WINDOW_SUM = "window_sum"
    """Sum every attributed outcome until the attribution window closes (the default)."""
    FIRST_OUTCOME = "first_outcome"
    """Learn as soon as the first outcome arrives (fast-feedback placements)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One Choose call's answer, exactly as logged.

    ``treatments[i]`` was scored with probability ``pmf[i]``; ``chosen`` indexes both, and
    ``propensity == pmf[chosen]`` is the probability the chosen treatment was sampled with,
    control share included.
    """

    event_id: str
    context: Context
    treatments: tuple[Treatment, ...]
    pmf: tuple[float, ...]
    chosen: int
    model_version: str
    policy: str
    decided_at: float
    """Seconds since the epoch (UTC)."""
    request_id: str = ""
    deferred: bool = False
    seed: int = 0
    """The per-decision sampling seed derived from (server seed, event id)."""
    holdout: bool = False
    """The customer is in the persistent holdout: control was forced (pmf is control = 1)."""
    removed: tuple[tuple[TreatmentRef, str], ...] = ()
    """Treatments the contact policy removed before scoring, each with the rule that removed
    it (they are not in ``treatments``: the pmf is over what was left)."""
    contact_policy: str = ""
    """The digest of the contact policy the decision was made under; empty: none."""

    def __post_init__(self) -> None:
        if len(self.treatments) != len(self.pmf):
            raise ValueError("a decision has one probability per treatment")
        check_pmf(self.pmf)
        if not 0 <= self.chosen < len(self.treatments):
            raise ValueError(f"chosen index {self.chosen} is out of range")
        if not self.pmf[self.chosen] > 0.0:
            raise ValueError("the chosen treatment has probability 0")

    @property
    def chosen_treatment(self) -> Treatment:
        return self.treatments[self.chosen]

    @property
    def propensity(self) -> float:
        return self.pmf[self.chosen]

    @property
    def is_control(self) -> bool:
        return self.treatments[self.chosen].is_control

    @property
    def control_index(self) -> int:
        for i, t in enumerate(self.treatments):
            if t.is_control:
                return i
        raise ValueError("decision has no control treatment")

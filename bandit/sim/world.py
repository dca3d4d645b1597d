"""A seeded marketing world whose truth is known: customers, triggers, offers, channels, outcomes.

The world generates customers with the features a retailer has (RFM, lifecycle stage, LTV,
age band, region, device, consents) plus hidden traits it never shows (price sensitivity, a
personal purchase propensity). Triggers arrive as a time-ordered event stream; a driver asks a
policy for a treatment, tells the world with :meth:`World.apply`, and gets a sampled outcome.
The truth API (:meth:`World.expected_values` and friends) gives the exact expected net value
of every treatment for any event, so policies can be scored without noise.

See ``docs/simulator.md`` for the response model and the cost model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bandit.sim import _catalog as cat
from bandit.sim._catalog import ChannelModel, DelayDistribution
from bandit.types import (
    CONTROL_TREATMENT,
    Channel,
    Context,
    Customer,
    FeatureValue,
    Offer,
    Treatment,
    TreatmentRef,
    Trigger,
    freeze_features,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

_CHUNK = 1024
_START_TIME = 1_700_000_000.0  # 2023-11-14T22:13:20Z, a Tuesday
_STREAM_CUSTOMERS, _STREAM_BACKGROUND, _STREAM_EVENTS, _STREAM_OUTCOMES = 1, 2, 3, 4


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True, slots=True)
class WorldConfig:
    """Knobs of the world's dynamics; the catalogue (offers, channels, effects) is fixed."""

    n_customers: int = 5000
    """How many customers the world generates."""
    start_time: float = _START_TIME
    """Seconds since the epoch (UTC) of the first moment of the simulation."""
    trigger_rate_scale: float = 1.0
    """Multiplies every customer's trigger rate (triggers per day)."""
    fatigue_window_days: float = 7.0
    """Contacts older than this no longer count (``contacts_7d``)."""
    fatigue_per_contact: float = 0.35
    """Each recent contact multiplies a delivered offer's lift by ``exp(-fatigue_per_contact)``."""
    annoyance_per_contact: float = 0.06
    """Each recent contact lowers a delivered treatment's purchase logit by this much."""
    background_contacts_per_week: float = 1.0
    """Mean contacts from other campaigns already in each customer's history at the start."""

    def __post_init__(self) -> None:
        if self.n_customers < 1:
            raise ValueError("n_customers must be at least 1")
        if self.trigger_rate_scale <= 0.0 or self.fatigue_window_days <= 0.0:
            raise ValueError("trigger_rate_scale and fatigue_window_days must be positive")
        if min(self.fatigue_per_contact, self.annoyance_per_contact) < 0.0:
            raise ValueError("fatigue_per_contact and annoyance_per_contact must be >= 0")
        if self.background_contacts_per_week < 0.0:
            raise ValueError("background_contacts_per_week must be >= 0")


@dataclass(frozen=True, slots=True)
class WorldEvent:
    """One trigger firing for one customer at one time: the context of one decision.

    ``customer`` and ``trigger`` are what the service sees. The other fields are the world's
    bookkeeping for its truth: which customer row, which trigger, the expected basket value
    (EUR) and the number of contacts in the fatigue window when the event happened.
    """

    index: int
    event_id: str
    time: float
    """Seconds since the epoch (UTC)."""
    customer: Customer
    trigger: Trigger
    customer_index: int
    trigger_index: int
    expected_basket: float
    contacts_7d: int

    @property
    def context(self) -> Context:
        return Context(self.customer, self.trigger)


@dataclass(frozen=True, slots=True)
class ChooseInputs:
    """What one Choose call needs for an event: the context and the catalogue."""

    event_id: str
    customer: Customer
    trigger: Trigger
    offers: tuple[Offer, ...]
    channels: tuple[Channel, ...]
    treatments: tuple[Treatment, ...]
    """Every offer × channel plus control, control first (as :meth:`World.treatments`)."""
    campaign_id: str = ""
    """For a campaign's events: the campaign (the ChooseRequest's ``campaign_id``)."""
    campaign_holdout_share: float = 0.0


@dataclass(frozen=True, slots=True)
class SimulatedOutcome:
    """What happened after one decision.

    ``net_value`` is ``revenue - treatment.cost(revenue)`` when a purchase happened and
    ``-channel contact cost`` when none did (0 for control); ``purchased_at`` is
    ``time + delay_seconds`` of the event (only meaningful when ``purchased``).
    """

    event_id: str
    treatment: TreatmentRef
    delivered: bool
    purchased: bool
    revenue: float
    delay_seconds: float
    purchased_at: float
    cost: float
    net_value: float


@dataclass(frozen=True, slots=True)
class OutcomeBatch:
    """Vectorised outcomes, one row per (event, treatment) pair, as in :class:`SimulatedOutcome`."""

    delivered: NDArray[np.bool_]
    purchased: NDArray[np.bool_]
    revenue: FloatArray
    delay_seconds: FloatArray
    cost: FloatArray
    net_value: FloatArray


@dataclass(frozen=True, slots=True)
class WorldValues:
    """Expected net value per decision (EUR) of reference policies on a set of events."""

    n: int
    oracle: float
    """Each event gets its best treatment (knows the hidden traits)."""
    best_static: float
    """One treatment per lifecycle stage, the best one with hindsight."""
    control: float
    """Never contact anyone."""
    uniform: float
    """Every treatment (control included) equally likely."""
    best_static_rule: Mapping[str, Treatment] = field(default_factory=lambda: MappingProxyType({}))
    """The best static rule: lifecycle stage → treatment."""

    @property
    def oracle_gain_over_static(self) -> float:
        """``(oracle - control) / (best_static - control) - 1``: what context adds over the stage.

        Every policy earns the same baseline revenue (``control``), so gains are compared on
        the incremental value above it.
        """
        static_gain = self.best_static - self.control
        if static_gain <= 0.0:
            return math.inf
        return (self.oracle - self.control) / static_gain - 1.0


@dataclass(slots=True)
class _Customers:
    """Column store of the generated customers (hidden traits included)."""

    stage: IntArray
    age: IntArray
    region: IntArray
    device: IntArray
    has_app: NDArray[np.bool_]
    recency: FloatArray
    frequency: FloatArray
    aov: FloatArray
    consent: NDArray[np.bool_]  # (n, n_channels); True for channels needing no consent
    price_sensitivity: FloatArray  # hidden
    propensity: FloatArray  # hidden, logit shift
    loyalty: FloatArray
    trigger_rate: FloatArray  # per second
    trigger_cdf: FloatArray  # (n, n_triggers)


_CAMPAIGN_INDEX = 1 << 40
"""Campaign events' indexes start here (triggered events count up from 0)."""


class World:
    """A seeded, deterministic marketing world with a known truth.

    Every random number comes from ``seed``: the customers, the event stream and the outcomes
    (each event's outcome from its own stream, so two policies that pick the same treatment for
    the same event see the same outcome).

    >>> world = World(seed=7, config=WorldConfig(n_customers=300))
    >>> event = next(world.events(1))
    >>> event.trigger.type in world.trigger_types
    True
    >>> len(world.treatments()), world.treatments()[0].is_control
    (43, True)
    >>> values = world.expected_values([event])
    >>> values.shape
    (1, 43)
    >>> best = world.oracle_treatment(event)
    >>> world.expected_value(event, best) >= world.expected_value(event, CONTROL_TREATMENT)
    True
    >>> outcome = world.apply(event, best)
    >>> outcome.treatment == best.ref
    True
    """

    def __init__(self, seed: int = 0, config: WorldConfig | None = None) -> None:
        if seed < 0:
            raise ValueError("seed must be >= 0")
        self.seed = seed
        self.config = config if config is not None else WorldConfig()
        self.offers: tuple[Offer, ...] = cat.OFFERS
        self.channel_models: tuple[ChannelModel, ...] = cat.CHANNELS
        self.channels: tuple[Channel, ...] = tuple(m.channel for m in cat.CHANNELS)
        self.trigger_types: tuple[str, ...] = cat.TRIGGERS
        self.stages: tuple[str, ...] = cat.STAGES
        self.baseline_delay: DelayDistribution = cat.BASELINE_DELAY
        offered = (Treatment(o, c) for o in self.offers for c in self.channels)
        self._treatments = (CONTROL_TREATMENT, *offered)
        self._index = {t.ref: i for i, t in enumerate(self._treatments)}
        self._rate = np.array([o.discount_rate for o in self.offers])
        self._fixed = np.array([o.fixed_cost for o in self.offers])
        self._contact = np.array([c.contact_cost for c in self.channels])
        self._basket_mult = np.array(
            [
                cat.BUNDLE_BASKET_MULT
                if o.id == "bundle"
                else cat.FREE_SHIPPING_BASKET_MULT
                if o.id == "free_shipping"
                else 1.0
                for o in self.offers
            ]
        )
        self._c = self._generate_customers()
        self.customers: tuple[Customer, ...] = self._build_customers()
        self.reset()

    # --- catalogue ---------------------------------------------------------------------------

    def treatments(self) -> tuple[Treatment, ...]:
        """Control first, then every offer × channel (offer-major): the truth API's columns."""
        return self._treatments

    def treatment_index(self, treatment: Treatment | TreatmentRef) -> int:
        """The column of ``treatment`` in :meth:`treatments`; ``KeyError`` if unknown."""
        ref = treatment.ref if isinstance(treatment, Treatment) else treatment
        return self._index[ref]

    def stage_of(self, event: WorldEvent) -> str:
        """The lifecycle stage of the event's customer."""
        return self.stages[int(self._c.stage[event.customer_index])]

    def choose_inputs(
        self, event: WorldEvent, campaign_id: str = "", campaign_holdout_share: float = 0.0
    ) -> ChooseInputs:
        """The event and the catalogue as a Choose call takes them (a campaign's events: with
        its id and holdout share)."""
        return ChooseInputs(
            event.event_id,
            event.customer,
            event.trigger,
            self.offers,
            self.channels,
            self._treatments,
            campaign_id,
            campaign_holdout_share,
        )

    def campaign_events(self, time: float, number: int) -> list[WorldEvent]:
        """An outbound campaign at ``time`` (a :data:`~bandit.sim._catalog.CAMPAIGN_TRIGGER`
        event for every customer, in customer order); ``number`` tells campaigns apart.

        The triggered stream is left as it was (no random numbers drawn from it); each event's
        outcome draws come from its own index, above every triggered event's."""
        ti = len(cat.TRIGGERS)  # the campaign trigger's row in the parameter arrays
        since = time - self.config.fatigue_window_days * cat.DAY
        hour = (time % cat.DAY) / cat.HOUR
        weekday = cat.WEEKDAYS[int((time // cat.DAY + 3) % 7)]
        trigger = Trigger(
            cat.CAMPAIGN_TRIGGER,
            freeze_features({"hour_of_day": round(hour, 2), "weekday": weekday}),
        )
        out = []
        for ci, customer in enumerate(self.customers):
            history = self._history[ci]
            while history and history[0] <= since:
                history.pop(0)
            features = dict(self._static_features[ci])
            features["contacts_7d"] = float(len(history))
            index = _CAMPAIGN_INDEX + number * self.config.n_customers + ci
            out.append(
                WorldEvent(
                    index=index,
                    event_id=f"sim{self.seed}-campaign{number}-{ci:06d}",
                    time=time,
                    customer=Customer(customer.id, freeze_features(features)),
                    trigger=trigger,
                    customer_index=ci,
                    trigger_index=ti,
                    expected_basket=float(self._c.aov[ci]),
                    contacts_7d=len(history),
                )
            )
        return out

    # --- customers ---------------------------------------------------------------------------

    def _generate_customers(self) -> _Customers:
        rng = np.random.default_rng([self.seed, _STREAM_CUSTOMERS])
        n = self.config.n_customers
        stage = rng.choice(len(cat.STAGES), size=n, p=cat.STAGE_SHARE)
        age = rng.choice(len(cat.AGE_BANDS), size=n, p=cat.AGE_SHARE)
        region = rng.choice(len(cat.REGIONS), size=n, p=cat.REGION_SHARE)
        p_desktop = 0.15 + 0.08 * age
        device = np.where(rng.random(n) < p_desktop, 2, np.where(rng.random(n) < 0.55, 0, 1))
        has_app = rng.random(n) < np.where(device == 2, 0.25, 0.7) * (1.1 - 0.12 * age)
        lo = np.array([0.0, 0.0, 60.0, 180.0, 0.0])[stage]
        hi = np.array([30.0, 60.0, 180.0, 720.0, 45.0])[stage]
        recency = np.floor(lo + (hi - lo) * rng.random(n))
        extra = rng.poisson(np.array([0.0, 4.0, 2.0, 1.0, 14.0])[stage])
        frequency = (np.array([1.0, 2.0, 1.0, 1.0, 10.0])[stage] + extra).astype(np.float64)
        aov = 55.0 * cat.STAGE_AOV_MULT[stage] * rng.lognormal(0.0, 0.45, n)
        consent = np.ones((n, len(cat.CHANNELS)), dtype=np.bool_)
        consent[:, 0] = rng.random(n) < 0.7
        consent[:, 1] = rng.random(n) < 0.35 + 0.05 * age
        consent[:, 2] = has_app & (rng.random(n) < 0.6)
        consent[:, 5] = rng.random(n) < 0.15 + 0.05 * age
        ps_logit = (
            -0.6
            + cat.STAGE_PRICE_SENS[stage]
            + cat.AGE_PRICE_SENS[age]
            + 0.6 * np.log(55.0 / aov)
            + 1.1 * rng.standard_normal(n)
        )
        propensity = 0.35 * rng.standard_normal(n) + 0.15 * (np.log1p(frequency) - math.log(4.0))
        loyalty = np.clip(np.log1p(frequency) / math.log(31.0), 0.0, 1.0)
        rate_per_day = cat.STAGE_TRIGGER_RATE[stage] * (1.0 + 0.5 * has_app)
        weights = np.empty((n, len(cat.TRIGGERS)))
        weights[:, 0] = 0.15
        weights[:, 1] = 0.30
        weights[:, 2] = 0.30 * has_app
        weights[:, 3] = np.where(recency > 30.0, 0.35, 0.0)
        weights[:, 4] = 0.005
        weights[:, 5] = 0.15 * consent[:, 0]
        cdf = np.cumsum(weights, axis=1)
        cdf /= cdf[:, -1:]
        return _Customers(
            stage=stage.astype(np.intp),
            age=age.astype(np.intp),
            region=region.astype(np.intp),
            device=device.astype(np.intp),
            has_app=has_app,
            recency=recency,
            frequency=frequency,
            aov=aov,
            consent=consent,
            price_sensitivity=_sigmoid(ps_logit),
            propensity=propensity,
            loyalty=loyalty,
            trigger_rate=rate_per_day * self.config.trigger_rate_scale / cat.DAY,
            trigger_cdf=cdf,
        )

    def _build_customers(self) -> tuple[Customer, ...]:
        c = self._c
        ltv_mult = np.array([2.5, 3.0, 1.5, 0.8, 4.0])
        self._static_features: list[dict[str, FeatureValue]] = []
        out = []
        for i in range(len(c.stage)):
            monetary = round(float(c.frequency[i] * c.aov[i]), 2)
            features: dict[str, FeatureValue] = {
                "stage": cat.STAGES[c.stage[i]],
                "recency_days": float(c.recency[i]),
                "frequency": float(c.frequency[i]),
                "monetary": monetary,
                "ltv": round(monetary * float(ltv_mult[c.stage[i]]), 2),
                "age_band": cat.AGE_BANDS[c.age[i]],
                "region": cat.REGIONS[c.region[i]],
                "device": cat.DEVICES[c.device[i]],
                "has_app": bool(c.has_app[i]),
            }
            for m, allowed in zip(cat.CHANNELS, c.consent[i], strict=True):
                if m.consent_feature is not None:
                    features[m.consent_feature] = bool(allowed)
            self._static_features.append(features)
            out.append(Customer(f"c{i:06d}", freeze_features(features)))
        return tuple(out)

    # --- event stream ------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the start: clock, event stream and contact histories as when created."""
        rng = np.random.default_rng([self.seed, _STREAM_BACKGROUND])
        start, window = self.config.start_time, self.config.fatigue_window_days * cat.DAY
        counts = rng.poisson(
            self.config.background_contacts_per_week * window / (7 * cat.DAY),
            self.config.n_customers,
        )
        self._history: list[list[float]] = [
            sorted((start - window * rng.random(int(k))).tolist()) for k in counts
        ]
        self._stream = np.random.default_rng([self.seed, _STREAM_EVENTS])
        self._clock = start
        self._next_index = 0
        self._buffer: dict[str, FloatArray] = {}
        self._pos = _CHUNK
        self._applied: set[int] = set()
        self._rate_cdf = np.cumsum(self._c.trigger_rate)

    @property
    def clock(self) -> float:
        """Time (seconds since the epoch) of the latest generated event."""
        return self._clock

    @property
    def event_rate(self) -> float:
        """Events (triggers) per second of simulated time, over all customers.

        ``n / event_rate`` is how much simulated time ``n`` events span on average, which is
        what a time-compressing driver needs to pick its speed-up.
        """
        return float(self._rate_cdf[-1])

    def contacts_at(self, customer_index: int, time: float) -> int:
        """Recorded contacts of a customer in the fatigue window ending at ``time``.

        Contacts that left the window before the customer's latest event are forgotten, so
        ``time`` should not lie more than a window before :attr:`clock`.
        """
        since = time - self.config.fatigue_window_days * cat.DAY
        return sum(1 for t in self._history[customer_index] if since < t <= time)

    def events(self, n: int) -> Iterator[WorldEvent]:
        """The next ``n`` events of the stream, in time order, generated lazily.

        The stream continues across calls (call :meth:`reset` to start over) and depends only
        on the seed; an event's ``contacts_7d`` reflects every :meth:`apply` made before it
        was generated.
        """
        for _ in range(n):
            yield self._next_event()

    def _refill(self) -> None:
        r = self._stream
        self._buffer = {
            "gap": r.standard_exponential(_CHUNK),
            "u_customer": r.random(_CHUNK),
            "u_trigger": r.random(_CHUNK),
            "z1": r.standard_normal(_CHUNK),
            "z2": r.standard_normal(_CHUNK),
            "u3": r.random(_CHUNK),
        }
        self._pos = 0

    def _next_event(self) -> WorldEvent:
        if self._pos >= _CHUNK:
            self._refill()
        b, j = self._buffer, self._pos
        self._pos += 1
        total = float(self._rate_cdf[-1])
        self._clock += float(b["gap"][j]) / total
        ci = int(np.searchsorted(self._rate_cdf, b["u_customer"][j] * total, side="right"))
        ci = min(ci, len(self._rate_cdf) - 1)
        ti = int(np.searchsorted(self._c.trigger_cdf[ci], b["u_trigger"][j], side="right"))
        ti = min(ti, len(cat.TRIGGERS) - 1)
        t = self._clock
        trig_features, basket = self._trigger_features(
            ci, ti, t, float(b["z1"][j]), float(b["z2"][j]), float(b["u3"][j])
        )
        since = t - self.config.fatigue_window_days * cat.DAY
        history = self._history[ci]
        while history and history[0] <= since:
            history.pop(0)
        contacts = len(history)
        features = dict(self._static_features[ci])
        features["contacts_7d"] = float(contacts)
        index = self._next_index
        self._next_index += 1
        return WorldEvent(
            index=index,
            event_id=f"sim{self.seed}-{index:08d}",
            time=t,
            customer=Customer(self.customers[ci].id, freeze_features(features)),
            trigger=Trigger(cat.TRIGGERS[ti], freeze_features(trig_features)),
            customer_index=ci,
            trigger_index=ti,
            expected_basket=basket,
            contacts_7d=contacts,
        )

    def _trigger_features(
        self, ci: int, ti: int, t: float, z1: float, z2: float, u3: float
    ) -> tuple[dict[str, FeatureValue], float]:
        aov = float(self._c.aov[ci])
        hour = (t % cat.DAY) / cat.HOUR
        weekday = cat.WEEKDAYS[int((t // cat.DAY + 3) % 7)]  # 1970-01-01 was a Thursday
        features: dict[str, FeatureValue] = {
            "hour_of_day": round(hour, 2),
            "weekday": weekday,
        }
        trigger = cat.TRIGGERS[ti]
        basket = aov
        if trigger == "cart_abandoned":
            basket = round(aov * math.exp(0.5 * z1 - 0.125), 2)
            features["cart_value"] = basket
            features["cart_items"] = float(1 + int(u3 * 4))
        elif trigger == "product_browsed":
            k = int(u3 * len(cat.CATEGORIES))
            price = round(cat.CATEGORY_PRICE[k] * math.exp(0.4 * z1 - 0.08), 2)
            features["category"] = cat.CATEGORIES[k]
            features["product_price"] = price
            basket = 0.5 * aov + 0.5 * price
        elif trigger == "inactive_30d":
            elapsed = (t - self.config.start_time) / cat.DAY
            features["days_inactive"] = float(round(self._c.recency[ci] + elapsed))
        elif trigger == "birthday":
            basket = 1.1 * aov
        elif trigger == "newsletter_opened":
            features["topic"] = cat.TOPICS[int(u3 * len(cat.TOPICS))]
        elif trigger == "app_login":
            features["session_minutes"] = round(2.0 * math.exp(0.6 * z2), 1)
        return features, basket

    def apply(self, event: WorldEvent, treatment: Treatment) -> SimulatedOutcome:
        """Record that ``treatment`` was applied to ``event`` and sample what happened.

        A non-control treatment adds a contact to the customer's history at the event's time
        (whether or not it was delivered), which tires later offers. Each event may be applied
        once.
        """
        column = self.treatment_index(treatment)
        if event.index in self._applied:
            raise ValueError(f"event {event.event_id} was already applied")
        self._applied.add(event.index)
        if column != 0:
            history = self._history[event.customer_index]
            history.append(event.time)
            if len(history) > 1 and history[-2] > event.time:
                history.sort()
        return self.sample_outcome(event, treatment)

    # --- truth -------------------------------------------------------------------------------

    def _arrays(
        self, events: Sequence[WorldEvent] | WorldEvent
    ) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
        if isinstance(events, WorldEvent):
            events = (events,)
        n = len(events)
        ci = np.fromiter((e.customer_index for e in events), np.intp, n)
        ti = np.fromiter((e.trigger_index for e in events), np.intp, n)
        basket = np.fromiter((e.expected_basket for e in events), np.float64, n)
        contacts = np.fromiter((e.contacts_7d for e in events), np.float64, n)
        return ci, ti, basket, contacts

    def _response(
        self, events: Sequence[WorldEvent] | WorldEvent
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """``(p0 [n], p1 [n, O, C], reach [n, C], basket [n])`` for the events.

        ``p0`` is the purchase probability without a delivered treatment, ``p1`` with one.
        """
        ci, ti, basket, contacts = self._arrays(events)
        c = self._c
        stage = c.stage[ci]
        resp = cat.STAGE_RESPONSE[stage]
        ps = c.price_sensitivity[ci]
        logit0 = cat.TRIGGER_BASE_LOGIT[ti] + cat.STAGE_BASE_LOGIT[stage] + c.propensity[ci]
        attention = cat.ATTENTION_LIFT * resp
        lift = np.empty((len(ci), len(self.offers)))
        for k, offer in enumerate(self.offers):
            if offer.id in cat.DISCOUNT_LIFT:
                lift[:, k] = cat.DISCOUNT_LIFT[offer.id] * ps * resp + attention
            elif offer.id == "free_shipping":
                small = _sigmoid((cat.FREE_SHIPPING_PIVOT - basket) / 12.0)
                lift[:, k] = cat.FREE_SHIPPING_LIFT * small * (0.3 + ps) * resp + attention
            elif offer.id == "double_points":
                lift[:, k] = cat.DOUBLE_POINTS_LIFT * c.loyalty[ci] ** 2 + attention
            elif offer.id == "bundle":
                lift[:, k] = cat.BUNDLE_LIFT * cat.BUNDLE_BOOST[ti] * resp + attention
            else:  # content
                lift[:, k] = cat.CONTENT_LIFT * cat.CONTENT_NOVELTY[stage] * cat.CONTENT_BOOST[ti]
        affinity = cat.AGE_AFFINITY[c.age[ci]] * cat.DEVICE_AFFINITY[c.device[ci]]
        fatigue = np.exp(-self.config.fatigue_per_contact * contacts)
        annoyance = self.config.annoyance_per_contact * contacts
        delta = (
            lift[:, :, None] * (affinity * fatigue[:, None])[:, None, :] - annoyance[:, None, None]
        )
        p0 = _sigmoid(logit0)
        p1 = _sigmoid(logit0[:, None, None] + delta)
        needs_app = np.array([m.needs_app for m in self.channel_models])
        reachable = c.consent[ci] & (~needs_app | c.has_app[ci][:, None])
        base_reach = np.array([m.base_reach for m in self.channel_models])
        reach = np.clip(base_reach * cat.PRESENCE[ti], 0.0, 1.0) * reachable
        return p0, p1, reach, basket

    def price_sensitivity(self, events: Sequence[WorldEvent] | WorldEvent) -> FloatArray:
        """The hidden price sensitivity (0..1) of each event's customer: truth, not a feature."""
        return self._c.price_sensitivity[self._arrays(events)[0]]

    def _columns(self, treatments: Sequence[Treatment] | None) -> IntArray | None:
        if treatments is None:
            return None
        return np.array([self.treatment_index(t) for t in treatments], dtype=np.intp)

    def purchase_probabilities(
        self,
        events: Sequence[WorldEvent] | WorldEvent,
        treatments: Sequence[Treatment] | None = None,
    ) -> FloatArray:
        """``P(purchase)`` per event × treatment, baseline purchases included: ``[n, K]``."""
        p0, p1, reach, _ = self._response(events)
        r = reach[:, None, :]
        p = r * p1 + (1.0 - r) * p0[:, None, None]
        out = np.concatenate((p0[:, None], p.reshape(len(p0), -1)), axis=1)
        cols = self._columns(treatments)
        return out if cols is None else out[:, cols]

    def expected_values(
        self,
        events: Sequence[WorldEvent] | WorldEvent,
        treatments: Sequence[Treatment] | None = None,
        *,
        window_seconds: float | None = None,
    ) -> FloatArray:
        """Expected net value (EUR) per event × treatment: ``[n, K]``, columns as ``treatments``.

        ``E[revenue] - fixed_cost * P(purchase) - discount_rate * E[revenue] - contact_cost``
        for an offer through a channel, ``E[revenue]`` for control (all treatments by default).
        With ``window_seconds``, only purchases within that attribution window count (and
        their offer costs; the contact cost always does): the value a log's rewards measure.
        """
        p0, p1, reach, basket = self._response(events)
        r = reach[:, None, :]
        p0b = p0[:, None, None]
        if window_seconds is not None:
            f0 = self.baseline_delay.cdf(window_seconds)
            f1 = np.array([m.delay.cdf(window_seconds) for m in self.channel_models])
            p0 = p0 * f0
            p0b = p0b * f0
            p1 = p1 * f1[None, None, :]
        p_buy = r * p1 + (1.0 - r) * p0b
        revenue = basket[:, None, None] * (
            r * p1 * self._basket_mult[None, :, None] + (1 - r) * p0b
        )
        value = (
            revenue * (1.0 - self._rate[None, :, None])
            - self._fixed[None, :, None] * p_buy
            - self._contact[None, None, :]
        )
        out = np.concatenate(((p0 * basket)[:, None], value.reshape(len(p0), -1)), axis=1)
        cols = self._columns(treatments)
        return out if cols is None else out[:, cols]

    def expected_revenues(
        self,
        events: Sequence[WorldEvent] | WorldEvent,
        treatments: Sequence[Treatment] | None = None,
    ) -> FloatArray:
        """Expected gross revenue (EUR, before any cost) per event × treatment: ``[n, K]``.

        Incremental revenue is this minus the control column; the net value subtracts the
        offer and contact costs (:meth:`expected_values`).
        """
        p0, p1, reach, basket = self._response(events)
        r = reach[:, None, :]
        p0b = p0[:, None, None]
        revenue = basket[:, None, None] * (
            r * p1 * self._basket_mult[None, :, None] + (1 - r) * p0b
        )
        out = np.concatenate(((p0 * basket)[:, None], revenue.reshape(len(p0), -1)), axis=1)
        cols = self._columns(treatments)
        return out if cols is None else out[:, cols]

    def expected_values_within(
        self, events: Sequence[WorldEvent] | WorldEvent, window_seconds: float
    ) -> FloatArray:
        """:meth:`expected_values` counting only purchases within ``window_seconds`` of the
        decision: the expectation of the reward the service logs (a purchase after the
        attribution window is late and never part of the reward). ``[n, K]``, all treatments.

        A purchase's delay follows the delivering channel's distribution, or the baseline one
        when nothing was delivered (control included); the offer cost is paid only on an
        attributed purchase, the contact cost always.
        """
        if not window_seconds > 0.0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds!r}")
        p0, p1, reach, basket = self._response(events)

        def within(d: DelayDistribution) -> float:
            return NormalDist().cdf(math.log(window_seconds / d.median_seconds) / d.sigma)

        f0 = within(self.baseline_delay)
        fk = np.array([within(m.delay) for m in self.channel_models])[None, None, :]
        r = reach[:, None, :]
        p0b = p0[:, None, None]
        p_buy = r * p1 * fk + (1.0 - r) * p0b * f0
        revenue = basket[:, None, None] * (
            r * p1 * self._basket_mult[None, :, None] * fk + (1 - r) * p0b * f0
        )
        value = (
            revenue * (1.0 - self._rate[None, :, None])
            - self._fixed[None, :, None] * p_buy
            - self._contact[None, None, :]
        )
        out: FloatArray = np.concatenate(
            ((p0 * basket * f0)[:, None], value.reshape(len(p0), -1)), axis=1
        )
        return out

    def expected_value(self, event: WorldEvent, treatment: Treatment) -> float:
        """Expected net value (EUR) of one treatment for one event."""
        return float(self.expected_values(event)[0, self.treatment_index(treatment)])

    def incremental_value(
        self, events: Sequence[WorldEvent] | WorldEvent, treatment: Treatment
    ) -> FloatArray:
        """True incremental net value of ``treatment`` over control, per event: ``[n]``."""
        values = self.expected_values(events)
        return values[:, self.treatment_index(treatment)] - values[:, 0]

    def oracle_treatment(
        self, event: WorldEvent, treatments: Sequence[Treatment] | None = None
    ) -> Treatment:
        """The treatment with the highest expected net value for ``event`` (first on ties)."""
        candidates = self._treatments if treatments is None else tuple(treatments)
        values = self.expected_values(event, candidates)
        return candidates[int(np.argmax(values[0]))]

    def oracle_value(
        self,
        events: Sequence[WorldEvent],
        treatments: Sequence[Treatment] | None = None,
    ) -> float:
        """Mean expected net value per decision when each event gets its best treatment."""
        return float(self.expected_values(events, treatments).max(axis=1).mean())

    def true_value(
        self,
        events: Sequence[WorldEvent],
        pmf: ArrayLike,
        treatments: Sequence[Treatment] | None = None,
    ) -> float:
        """Mean expected net value per decision of a policy given by its pmf.

        ``pmf`` is ``[K]`` (one distribution for every event) or ``[n, K]`` (one per event),
        over ``treatments`` (all of :meth:`treatments` by default); rows must sum to 1.
        """
        values = self.expected_values(events, treatments)
        probs = np.asarray(pmf, dtype=np.float64)
        if probs.ndim == 1:
            probs = np.broadcast_to(probs, values.shape)
        if probs.shape != values.shape:
            raise ValueError(f"pmf has shape {probs.shape}, expected {values.shape}")
        if np.any(probs < 0.0) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-6):
            raise ValueError("every pmf row must be non-negative and sum to 1")
        return float((values * probs).sum(axis=1).mean())

    def uniform_value(self, events: Sequence[WorldEvent]) -> float:
        """Mean expected net value of picking every treatment (control included) uniformly."""
        return float(self.expected_values(events).mean())

    def control_value(self, events: Sequence[WorldEvent]) -> float:
        """Mean expected net value of never contacting anyone (baseline revenue)."""
        return float(self.expected_values(events)[:, 0].mean())

    def best_static_rule(self, events: Sequence[WorldEvent]) -> dict[str, Treatment]:
        """Per lifecycle stage, the single treatment with the highest mean value (hindsight)."""
        return self._static(events, self.expected_values(events))[0]

    def best_static_rule_value(self, events: Sequence[WorldEvent]) -> float:
        """Mean expected net value per decision of :meth:`best_static_rule` on ``events``."""
        return self._static(events, self.expected_values(events))[1]

    def _static(
        self, events: Sequence[WorldEvent], values: FloatArray
    ) -> tuple[dict[str, Treatment], float]:
        stage = self._c.stage[self._arrays(events)[0]]
        rule: dict[str, Treatment] = {}
        total = 0.0
        for s, name in enumerate(self.stages):
            mask = stage == s
            if not mask.any():
                continue
            sums = values[mask].sum(axis=0)
            best = int(np.argmax(sums))
            rule[name] = self._treatments[best]
            total += float(sums[best])
        return rule, total / max(len(events), 1)

    def values(self, events: Sequence[WorldEvent]) -> WorldValues:
        """The reference policies' values on ``events`` in one pass."""
        v = self.expected_values(events)
        rule, static = self._static(events, v)
        return WorldValues(
            n=len(events),
            oracle=float(v.max(axis=1).mean()),
            best_static=static,
            control=float(v[:, 0].mean()),
            uniform=float(v.mean()),
            best_static_rule=MappingProxyType(rule),
        )

    # --- sampling ----------------------------------------------------------------------------

    def sample_outcome(self, event: WorldEvent, treatment: Treatment) -> SimulatedOutcome:
        """Sample what happens after ``treatment`` for ``event``; does not change the world.

        The random numbers come from ``(seed, event.index)`` alone, so the same event and
        treatment always give the same outcome, and different treatments share them.
        """
        column = self.treatment_index(treatment)
        rng = np.random.default_rng([self.seed, _STREAM_OUTCOMES, event.index])
        batch = self._sample([event], np.array([column], dtype=np.intp), rng)
        purchased = bool(batch.purchased[0])
        delay = float(batch.delay_seconds[0])
        return SimulatedOutcome(
            event_id=event.event_id,
            treatment=treatment.ref,
            delivered=bool(batch.delivered[0]),
            purchased=purchased,
            revenue=float(batch.revenue[0]),
            delay_seconds=delay,
            purchased_at=event.time + delay,
            cost=float(batch.cost[0]),
            net_value=float(batch.net_value[0]),
        )

    def sample_outcomes(
        self,
        events: Sequence[WorldEvent],
        treatments: Iterable[Treatment] | IntArray,
        rng: np.random.Generator,
    ) -> OutcomeBatch:
        """Sample one outcome per (event, treatment) pair at once, from ``rng``.

        ``treatments`` holds one treatment (or column of :meth:`treatments`) per event.
        """
        if isinstance(treatments, np.ndarray):
            cols = treatments.astype(np.intp)
        else:
            cols = np.array([self.treatment_index(t) for t in treatments], dtype=np.intp)
        if len(cols) != len(events):
            raise ValueError("one treatment per event")
        return self._sample(events, cols, rng)

    def _sample(
        self, events: Sequence[WorldEvent], cols: IntArray, rng: np.random.Generator
    ) -> OutcomeBatch:
        n = len(events)
        u = rng.random((n, 2))
        z = rng.standard_normal((n, 2))
        p0, p1, reach, basket = self._response(events)
        rows = np.arange(n)
        treated = cols > 0
        o = np.where(treated, (cols - 1) // len(self.channels), 0)
        ch = np.where(treated, (cols - 1) % len(self.channels), 0)
        delivered = treated & (u[:, 0] < reach[rows, ch])
        p = np.where(delivered, p1[rows, o, ch], p0)
        purchased = u[:, 1] < p
        mult = np.where(delivered, self._basket_mult[o], 1.0)
        sigma = cat.BASKET_SIGMA
        revenue = np.where(purchased, basket * mult * np.exp(sigma * z[:, 0] - sigma**2 / 2), 0.0)
        delay = self.baseline_delay.from_normal(z[:, 1])
        for k, model in enumerate(self.channel_models):
            on = delivered & (ch == k)
            delay[on] = model.delay.from_normal(z[on, 1])
        offer_cost = np.where(purchased, self._fixed[o] + self._rate[o] * revenue, 0.0)
        cost = np.where(treated, offer_cost + self._contact[ch], 0.0)
        return OutcomeBatch(
            delivered=delivered,
            purchased=purchased,
            revenue=revenue,
            delay_seconds=delay,
            cost=cost,
            net_value=revenue - cost,
        )

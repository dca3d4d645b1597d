"""The default world's catalogue: vocabularies, offers, channels and the true-response tables.

Everything here is a constant; :mod:`bandit.sim.world` turns it into customers, events and
truth. Numbers are in euros, seconds and logit units (``logit(p) = log(p / (1 - p))``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bandit.types import Channel, Offer, freeze_features

STAGES: tuple[str, ...] = ("new", "active", "at_risk", "lapsed", "vip")
STAGE_SHARE = (0.15, 0.35, 0.20, 0.20, 0.10)
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_SHARE = (0.12, 0.24, 0.22, 0.18, 0.14, 0.10)
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "capital")
REGION_SHARE = (0.18, 0.22, 0.17, 0.18, 0.25)
DEVICES: tuple[str, ...] = ("ios", "android", "desktop")
TRIGGERS: tuple[str, ...] = (
    "cart_abandoned",
    "product_browsed",
    "app_login",
    "inactive_30d",
    "birthday",
    "newsletter_opened",
)
CATEGORIES: tuple[str, ...] = ("fashion", "home", "electronics", "beauty", "sports")
CATEGORY_PRICE = (45.0, 60.0, 140.0, 30.0, 70.0)
TOPICS: tuple[str, ...] = ("sale", "new_arrivals", "inspiration")
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

HOUR = 3600.0
DAY = 86400.0


def _a(values: object) -> NDArray[np.float64]:
    return np.asarray(values, dtype=np.float64)


# --- customers (per stage, in STAGES order) -------------------------------------------------
STAGE_BASE_LOGIT = _a([0.0, 0.4, -0.4, -1.0, 1.3])
"""Baseline purchase propensity by stage (added to the trigger's base logit)."""
STAGE_RESPONSE = _a([1.0, 0.55, 1.7, 0.9, 0.12])
"""How much a delivered offer moves a customer of this stage (multiplies the offer lift)."""
STAGE_PRICE_SENS = _a([0.0, -0.4, 0.9, 0.5, -1.6])
"""Shift of the hidden price sensitivity (logit scale) by stage."""
STAGE_TRIGGER_RATE = _a([0.30, 0.35, 0.22, 0.08, 0.35])
"""Triggers per customer per day, before the app-user boost."""
STAGE_AOV_MULT = _a([0.9, 1.0, 0.95, 0.85, 1.7])
AGE_PRICE_SENS = _a([0.6, 0.3, 0.0, -0.1, -0.2, -0.3])
CONTENT_NOVELTY = _a([1.0, 0.3, 0.5, 0.6, 0.1])
"""How much content (guides, inspiration) still moves a customer of this stage."""

CAMPAIGN_TRIGGER = "campaign"
"""The trigger of an outbound campaign (the simulator's outbound mode): everybody at once, with
no intent of their own; only outbound channels reach them. Not in :data:`TRIGGERS` (the
triggered stream never draws it); its parameters follow the triggers' in the arrays below."""
ALL_TRIGGERS: tuple[str, ...] = (*TRIGGERS, CAMPAIGN_TRIGGER)

# --- triggers (in ALL_TRIGGERS order) --------------------------------------------------------
TRIGGER_BASE_LOGIT = _a([-1.0, -2.3, -2.6, -3.6, -2.6, -2.9, -3.4])
BUNDLE_BOOST = _a([1.3, 1.5, 0.7, 0.5, 0.8, 0.7, 0.6])
CONTENT_BOOST = _a([0.3, 1.0, 0.8, 1.0, 0.6, 1.6, 0.9])

# --- channels -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DelayDistribution:
    """A log-normal delay in seconds, given by its median and log-scale spread ``sigma``.

    Drivers that time-compress divide the samples (or the median) by their speed-up.

    >>> d = DelayDistribution(median_seconds=3600.0, sigma=1.0)
    >>> round(d.quantile(0.5))
    3600
    >>> d.sample(np.random.default_rng(0), 3).shape
    (3,)
    """

    median_seconds: float
    sigma: float

    @property
    def mean_seconds(self) -> float:
        return self.median_seconds * math.exp(self.sigma**2 / 2.0)

    def quantile(self, q: float) -> float:
        """The ``q``-quantile, e.g. ``quantile(0.95)`` to size an attribution window."""
        from statistics import NormalDist

        return self.median_seconds * math.exp(self.sigma * NormalDist().inv_cdf(q))

    def cdf(self, seconds: float) -> float:
        """The probability of a delay shorter than ``seconds`` (a window holds that share).

        >>> DelayDistribution(median_seconds=3600.0, sigma=1.0).cdf(3600.0)
        0.5
        """
        if seconds <= 0:
            return 0.0
        from statistics import NormalDist

        return NormalDist().cdf(math.log(seconds / self.median_seconds) / self.sigma)

    def from_normal(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """Delays for standard-normal draws ``z`` (lets callers share random numbers)."""
        return self.median_seconds * np.exp(self.sigma * z)

    def sample(self, rng: np.random.Generator, size: int) -> NDArray[np.float64]:
        return self.from_normal(rng.standard_normal(size))


@dataclass(frozen=True, slots=True)
class ChannelModel:
    """A channel as the world sees it: the public :class:`Channel` plus how it reaches people.

    ``base_reach`` is the chance a treatment sent through the channel is actually seen
    (opened, displayed, answered) by a consenting customer who can be reached there;
    ``consent_feature`` names the customer flag without which nothing is delivered
    (``None``: no consent needed, e.g. a banner on our own site); ``needs_app`` channels reach
    only customers with the app installed; ``delay`` is the purchase delay after a delivered
    treatment.
    """

    channel: Channel
    base_reach: float
    delay: DelayDistribution
    consent_feature: str | None
    needs_app: bool = False


def _channel(cid: str, cost: float, kind: str, realtime: bool) -> Channel:
    return Channel(cid, freeze_features({"kind": kind, "realtime": realtime}), contact_cost=cost)


CHANNELS: tuple[ChannelModel, ...] = (
    ChannelModel(
        _channel("email", 0.01, "outbound", False),
        base_reach=0.30,
        delay=DelayDistribution(8 * HOUR, 1.0),
        consent_feature="consent_email",
    ),
    ChannelModel(
        _channel("sms", 0.08, "outbound", True),
        base_reach=0.90,
        delay=DelayDistribution(1 * HOUR, 1.0),
        consent_feature="consent_sms",
    ),
    ChannelModel(
        _channel("push", 0.005, "outbound", True),
        base_reach=0.55,
        delay=DelayDistribution(30 * 60.0, 1.0),
        consent_feature="consent_push",
        needs_app=True,
    ),
    ChannelModel(
        _channel("web_banner", 0.002, "inbound", True),
        base_reach=0.85,
        delay=DelayDistribution(5 * 60.0, 0.8),
        consent_feature=None,
    ),
    ChannelModel(
        _channel("in_app", 0.002, "inbound", True),
        base_reach=0.90,
        delay=DelayDistribution(10 * 60.0, 0.8),
        consent_feature=None,
        needs_app=True,
    ),
    ChannelModel(
        _channel("call_center", 4.0, "outbound", True),
        base_reach=0.35,
        delay=DelayDistribution(2 * HOUR, 1.2),
        consent_feature="consent_call_center",
    ),
)
CHANNEL_IDS: tuple[str, ...] = tuple(m.channel.id for m in CHANNELS)
BASELINE_DELAY = DelayDistribution(6 * HOUR, 1.2)
"""Delay of a purchase that was not caused by a delivered treatment (it happens anyway)."""

PRESENCE = _a(
    # email sms   push  web   in_app call   (rows: ALL_TRIGGERS)
    [
        [1.0, 1.0, 1.0, 0.10, 0.05, 1.0],  # cart_abandoned: the customer just left the site
        [1.0, 1.0, 1.0, 1.00, 0.10, 1.0],  # product_browsed: on the web site now
        [1.0, 1.0, 1.0, 0.05, 1.00, 1.0],  # app_login: in the app now
        [0.6, 1.0, 0.6, 0.02, 0.02, 1.0],  # inactive_30d: not around, reads little
        [1.0, 1.0, 1.0, 0.10, 0.10, 1.0],  # birthday
        [1.6, 1.0, 1.0, 0.30, 0.05, 1.0],  # newsletter_opened: reading e-mail right now
        [1.0, 1.0, 1.0, 0.02, 0.02, 1.0],  # campaign: sent to them, wherever they are
    ]
)
"""Multiplier of a channel's reach by trigger: inbound channels only reach people who are there."""
AGE_AFFINITY = _a(
    # email sms  push web  in_app call  (rows: AGE_BANDS)
    [
        [0.6, 0.7, 1.4, 1.0, 1.4, 0.2],
        [0.8, 0.9, 1.2, 1.0, 1.2, 0.3],
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.6],
        [1.1, 1.0, 0.8, 1.0, 0.8, 1.0],
        [1.2, 1.1, 0.6, 0.9, 0.6, 1.5],
        [1.2, 1.1, 0.5, 0.8, 0.5, 1.9],
    ]
)
"""Multiplier of a delivered offer's lift by age band and channel."""
DEVICE_AFFINITY = _a(
    # email sms  push web  in_app call  (rows: DEVICES)
    [
        [0.9, 1.0, 1.2, 0.8, 1.2, 1.0],
        [0.9, 1.1, 1.0, 0.8, 1.0, 1.0],
        [1.2, 0.9, 1.0, 1.3, 1.0, 1.0],
    ]
)

# --- offers ---------------------------------------------------------------------------------


def _offer(oid: str, kind: str, pct: float, fixed: float = 0.0, rate: float = 0.0) -> Offer:
    features = freeze_features({"kind": kind, "discount_pct": pct})
    return Offer(oid, features, fixed_cost=fixed, discount_rate=rate)


OFFERS: tuple[Offer, ...] = (
    _offer("discount_5", "discount", 5.0, rate=0.05),
    _offer("discount_10", "discount", 10.0, rate=0.10),
    _offer("discount_20", "discount", 20.0, rate=0.20),
    _offer("free_shipping", "shipping", 0.0, fixed=4.5),
    _offer("double_points", "loyalty", 0.0, rate=0.03),
    _offer("bundle", "bundle", 10.0, rate=0.10),
    _offer("content", "content", 0.0),
)
OFFER_IDS: tuple[str, ...] = tuple(o.id for o in OFFERS)
DISCOUNT_LIFT = {"discount_5": 0.8, "discount_10": 1.4, "discount_20": 2.1}
"""Logit lift of a delivered discount for a fully price-sensitive customer (sensitivity 1)."""
ATTENTION_LIFT = 0.08
"""Logit lift any delivered commercial offer gets from the reminder alone (times stage response)."""
FREE_SHIPPING_LIFT = 1.1
FREE_SHIPPING_PIVOT = 45.0
"""Free shipping matters for baskets below about this value (EUR)."""
DOUBLE_POINTS_LIFT = 0.45
BUNDLE_LIFT = 0.25
BUNDLE_BASKET_MULT = 1.15
FREE_SHIPPING_BASKET_MULT = 1.05
CONTENT_LIFT = 0.35
BASKET_SIGMA = 0.4
"""Log-scale spread of a realised basket around its expected value."""

"""Validating a Choose request and building its candidate treatments.

Candidates are every offer × every channel (or the explicit ``treatments`` list), minus
``excluded``, minus channels the customer has not consented to, plus the control treatment,
which is always a candidate and always comes first (index 0).

Consent rule: a customer feature ``consent_<channel id>`` set to the flag ``false`` removes
that channel. A missing consent feature means consent is not the caller's concern here.

Every problem raises :class:`~bandit.errors.InvalidRequest` naming the field, before
anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from bandit.catalogue import Catalogue
from bandit.errors import InvalidRequest, TooLarge, quote
from bandit.numbers import check_number
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


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one request may carry. Defaults are documented in the settings."""

    max_treatments: int = 1000
    max_offers: int = 1000
    max_channels: int = 100
    max_features: int = 200
    """Per entity (customer, trigger, each offer, each channel)."""
    max_feature_name_length: int = 128
    max_text_length: int = 1024
    max_tags: int = 100
    max_id_length: int = 256


@dataclass(frozen=True, slots=True)
class ChooseInput:
    """A Choose request in domain terms, before validation."""

    customer: Customer | None
    trigger: Trigger | None
    offers: Sequence[Offer] = ()
    channels: Sequence[Channel] = ()
    treatments: Sequence[TreatmentRef] = ()
    excluded: Sequence[TreatmentRef] = ()
    defer_activation: bool = False
    request_id: str = ""
    campaign_id: str = ""
    """The outbound campaign the decision belongs to (added to the trigger's features as
    ``campaign``)."""
    campaign_holdout_share: float = 0.0
    """The campaign's own holdout share (:func:`bandit.choose.in_holdout` keyed by the
    campaign id)."""
    catalogue: Catalogue | None = field(default=None, compare=False, repr=False)
    """The offers and channels as an interned :class:`~bandit.catalogue.Catalogue` (the
    adapter's, from :class:`~bandit.catalogue.Catalogues`); ``offers`` and ``channels`` are
    then its own (left empty, they are filled from it). Without one, the Choose path
    interns the lists by their values."""

    def __post_init__(self) -> None:
        cat = self.catalogue
        if cat is not None and (self.offers is not cat.offers or self.channels is not cat.channels):
            if self.offers or self.channels:
                raise ValueError("a ChooseInput with a catalogue takes its offers and channels")
            object.__setattr__(self, "offers", cat.offers)
            object.__setattr__(self, "channels", cat.channels)


@dataclass(frozen=True, slots=True)
class Candidates:
    """A validated request: its context and candidate treatments (control first)."""

    context: Context
    treatments: tuple[Treatment, ...]


def _check_id(value: str, field_name: str, limits: Limits, *, required: bool = True) -> None:
    if required and not value:
        raise InvalidRequest(field_name, "is required")
    if len(value) > limits.max_id_length:
        raise InvalidRequest(field_name, f"is longer than {limits.max_id_length} characters")


def check_features(features: Mapping[str, FeatureValue], where: str, limits: Limits) -> None:
    """Names non-empty and bounded, numbers within the number policy
    (:mod:`bandit.numbers`), texts and tag lists bounded."""
    if len(features) > limits.max_features:
        raise TooLarge(
            f"{where}.features", f"has {len(features)} features; the limit is {limits.max_features}"
        )
    for name, value in features.items():
        if not name:
            raise InvalidRequest(f"{where}.features", "a feature name is empty")
        if len(name) > limits.max_feature_name_length:
            raise InvalidRequest(
                f"{where}.features[{quote(name, 32)}]",
                f"the name is longer than {limits.max_feature_name_length} characters",
            )
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            check_number(value, f"{where}.features[{quote(name)}]")
        elif isinstance(value, str):
            if len(value) > limits.max_text_length:
                raise InvalidRequest(
                    f"{where}.features[{quote(name)}]",
                    f"is longer than {limits.max_text_length} characters",
                )
        else:
            if len(value) > limits.max_tags:
                raise TooLarge(
                    f"{where}.features[{quote(name)}]",
                    f"has {len(value)} tags; the limit is {limits.max_tags}",
                )
            for tag in value:
                if len(tag) > limits.max_text_length:
                    raise InvalidRequest(
                        f"{where}.features[{quote(name)}]",
                        f"a tag is longer than {limits.max_text_length} characters",
                    )


def check_customer(customer: Customer | None, limits: Limits) -> None:
    """A request's customer: present, its id and features within ``limits`` (what
    :func:`build_candidates` checks first; the batch path checks each customer with it)."""
    if customer is None:
        raise InvalidRequest("customer", "is required")
    _check_id(customer.id, "customer.id", limits)
    check_features(customer.features, "customer", limits)


def check_request_id(request_id: str, limits: Limits) -> None:
    """A request id: optional, bounded."""
    _check_id(request_id, "request_id", limits, required=False)


def _check_cost(value: float, path: str, *, at_most_one: bool = False) -> None:
    check_number(value, path)
    if value < 0:
        raise InvalidRequest(path, f"must not be negative, got {value}")
    if at_most_one and value > 1:
        raise InvalidRequest(path, f"must be within [0, 1], got {value}")


_Item = TypeVar("_Item", Offer, Channel)


def _index_unique(items: Sequence[_Item], what: str, limits: Limits) -> dict[str, _Item]:
    by_id: dict[str, _Item] = {}
    for i, item in enumerate(items):
        _check_id(item.id, f"{what}[{i}].id", limits)
        if item.id in by_id:
            raise InvalidRequest(f"{what}[{i}].id", f"duplicate id {quote(item.id)}")
        by_id[item.id] = item
    return by_id


def _resolve(
    ref: TreatmentRef, path: str, offers: Mapping[str, Offer], channels: Mapping[str, Channel]
) -> Treatment:
    if ref.is_control:
        return CONTROL_TREATMENT
    if ref.offer_id not in offers:
        raise InvalidRequest(f"{path}.offer_id", f"names unknown offer {quote(ref.offer_id)}")
    if ref.channel_id not in channels:
        raise InvalidRequest(f"{path}.channel_id", f"names unknown channel {quote(ref.channel_id)}")
    return Treatment(offers[ref.offer_id], channels[ref.channel_id])


def consented(customer: Customer, channel_id: str) -> bool:
    """False only when the customer carries the flag ``consent_<channel_id> = false``.

    >>> consented(Customer("c", {"consent_sms": False}), "sms")
    False
    >>> consented(Customer("c", {}), "sms")
    True
    """
    return customer.features.get(f"consent_{channel_id}", True) is not False


def build_candidates(
    req: ChooseInput,
    limits: Limits,
    *,
    consent: bool = True,
    catalogue: Catalogue | None = None,
) -> Candidates:
    """Validate ``req`` and return its candidates, control first.

    ``catalogue``: ``req``'s offers and channels, interned (by default ``req.catalogue``,
    or a catalogue of its own made here): checked once under the same limits, and crossed
    once. ``consent=False``: keep the channels the customer has not consented to (a later
    step removes them with :func:`without_channels`)."""
    check_customer(req.customer, limits)
    assert req.customer is not None
    if req.trigger is None:
        raise InvalidRequest("trigger", "is required")
    _check_id(req.trigger.type, "trigger.type", limits)
    check_features(req.trigger.features, "trigger", limits)
    _check_id(req.request_id, "request_id", limits, required=False)
    trigger = req.trigger
    if req.campaign_id or req.campaign_holdout_share:
        trigger = _campaign_trigger(req, limits)

    if len(req.offers) > limits.max_offers:
        raise TooLarge("offers", f"has {len(req.offers)} offers; the limit is {limits.max_offers}")
    if len(req.channels) > limits.max_channels:
        raise TooLarge(
            "channels", f"has {len(req.channels)} channels; the limit is {limits.max_channels}"
        )
    cat = catalogue or req.catalogue or Catalogue(req.offers, req.channels)
    check_catalogue(cat, limits)
    if not req.treatments and not req.excluded:
        n_offers, n_channels = len(cat.offers), len(cat.channels)
        if not n_offers:
            raise InvalidRequest(
                "offers", "at least one offer is required (or explicit treatments)"
            )
        if not n_channels:
            raise InvalidRequest(
                "channels", "at least one channel is required (or explicit treatments)"
            )
        n = n_offers * n_channels
        if n > limits.max_treatments:
            raise TooLarge(
                "offers",
                f"{n_offers} offers × {n_channels} channels make {n} treatments; "
                f"the limit is {limits.max_treatments}",
            )
        treatments = cat.treatments
        if consent:
            customer = req.customer
            declined = frozenset(c.id for c in cat.channels if not consented(customer, c.id))
            treatments = cat.without_channels(declined)
    else:
        offers = {o.id: o for o in cat.offers}
        channels = {c.id: c for c in cat.channels}
        treatments = _filtered(req, offers, channels, limits, consent)
    return Candidates(context=Context(req.customer, trigger), treatments=treatments)


CAMPAIGN_FEATURE = "campaign"
"""The trigger feature a Choose's ``campaign_id`` is logged as."""


def _campaign_trigger(req: ChooseInput, limits: Limits) -> Trigger:
    """The request's trigger with its campaign as a feature (the campaign fields checked)."""
    assert req.trigger is not None
    share = req.campaign_holdout_share
    if not 0.0 <= share <= 1.0:  # NaN fails too
        raise InvalidRequest("campaign_holdout_share", f"must be within [0, 1], not {share!r}")
    if not req.campaign_id:
        raise InvalidRequest("campaign_id", "is required with a campaign_holdout_share")
    _check_id(req.campaign_id, "campaign_id", limits)
    features = req.trigger.features
    known = features.get(CAMPAIGN_FEATURE)
    if known is not None and known != req.campaign_id:
        raise InvalidRequest(
            f"trigger.features.{CAMPAIGN_FEATURE}", "differs from the request's campaign_id"
        )
    return Trigger(
        req.trigger.type, freeze_features({**features, CAMPAIGN_FEATURE: req.campaign_id})
    )


def without_channels(
    req: ChooseInput,
    treatments: tuple[Treatment, ...],
    channel_ids: Sequence[str],
    catalogue: Catalogue | None = None,
) -> tuple[Treatment, ...]:
    """``req``'s candidates ``treatments`` without those through ``channel_ids`` (control
    stays): what :func:`build_candidates` with ``consent=True`` gives when those are the
    channels the customer has not consented to. ``catalogue``: ``req``'s (by default
    ``req.catalogue``), whose filtered crossings are made once.

    >>> req = ChooseInput(Customer("c", {}), Trigger("t"), [Offer("o")],
    ...                   [Channel("sms"), Channel("email")])
    >>> cands = build_candidates(req, Limits()).treatments
    >>> [t.ref.channel_id for t in without_channels(req, cands, ["sms"])]
    ['', 'email']
    """
    drop = frozenset(channel_ids)
    if not req.treatments and not req.excluded:  # the catalogue's crossing, filtered
        cat = catalogue or req.catalogue or Catalogue(req.offers, req.channels)
        return cat.without_channels(drop)
    return tuple(t for t in treatments if t.ref.is_control or t.ref.channel_id not in drop)


def check_catalogue(cat: Catalogue, limits: Limits) -> None:
    """Ids present, bounded and unique, features and costs within bounds; a catalogue that
    passed under these limits before is not checked again."""
    if cat.checked_under == limits:
        return
    _index_unique(cat.offers, "offers", limits)
    _index_unique(cat.channels, "channels", limits)
    for i, o in enumerate(cat.offers):
        check_features(o.features, f"offers[{i}]", limits)
        _check_cost(o.fixed_cost, f"offers[{i}].fixed_cost")
        _check_cost(o.discount_rate, f"offers[{i}].discount_rate", at_most_one=True)
    for i, c in enumerate(cat.channels):
        check_features(c.features, f"channels[{i}]", limits)
        _check_cost(c.contact_cost, f"channels[{i}].contact_cost")
    cat.checked_under = limits


def _filtered(
    req: ChooseInput,
    offers: Mapping[str, Offer],
    channels: Mapping[str, Channel],
    limits: Limits,
    consent: bool = True,
) -> tuple[Treatment, ...]:
    """Candidates from an explicit list and/or exclusions."""
    assert req.customer is not None
    if req.treatments:
        if len(req.treatments) > limits.max_treatments:
            raise TooLarge(
                "treatments",
                f"has {len(req.treatments)} treatments; the limit is {limits.max_treatments}",
            )
        listed = [
            _resolve(ref, f"treatments[{i}]", offers, channels)
            for i, ref in enumerate(req.treatments)
        ]
    else:
        if not offers:
            raise InvalidRequest(
                "offers", "at least one offer is required (or explicit treatments)"
            )
        if not channels:
            raise InvalidRequest(
                "channels", "at least one channel is required (or explicit treatments)"
            )
        n = len(offers) * len(channels)
        if n > limits.max_treatments:
            raise TooLarge(
                "offers",
                f"{len(offers)} offers × {len(channels)} channels make {n} treatments; "
                f"the limit is {limits.max_treatments}",
            )
        listed = [Treatment(o, c) for o in offers.values() for c in channels.values()]

    excluded: set[TreatmentRef] = set()
    for i, ref in enumerate(req.excluded):
        _resolve(ref, f"excluded[{i}]", offers, channels)
        if ref.is_control:
            raise InvalidRequest(f"excluded[{i}]", "control cannot be excluded")
        excluded.add(ref)

    seen: set[TreatmentRef] = set()
    kept: list[Treatment] = [CONTROL_TREATMENT]
    any_left = False
    for t in listed:
        ref = t.ref
        if ref.is_control or ref in seen:
            continue
        seen.add(ref)
        if ref in excluded:
            continue
        any_left = True
        if not consent or consented(req.customer, ref.channel_id):
            kept.append(t)
    if not any_left and seen:
        raise InvalidRequest("excluded", "every treatment is excluded")
    return tuple(kept)

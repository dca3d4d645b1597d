"""The simulated world: determinism, the truth API, the cost model and its heterogeneity."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pytest

from bandit.sim import DelayDistribution, World, WorldConfig, WorldEvent
from bandit.types import CONTROL_TREATMENT, Channel, Offer, Treatment

SMALL = WorldConfig(n_customers=1500)


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=11, config=SMALL)


@pytest.fixture(scope="module")
def events(world: World) -> list[WorldEvent]:
    world.reset()
    return list(world.events(6000))


@pytest.fixture(scope="module")
def default_world_events() -> tuple[World, list[WorldEvent]]:
    world = World(seed=0)
    return world, list(world.events(10000))


def _treatment(world: World, key: str) -> Treatment:
    return next(t for t in world.treatments() if t.ref.key == key)


def _snapshot(world: World, n: int) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for e in world.events(n):
        treatment = world.treatments()[e.index % len(world.treatments())]
        o = world.apply(e, treatment)
        out.append((e.event_id, e.time, e.customer, e.trigger, o))
    return out


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_identical_customers_events_and_outcomes() -> None:
    a, b = World(seed=3, config=SMALL), World(seed=3, config=SMALL)
    assert a.customers == b.customers
    assert _snapshot(a, 300) == _snapshot(b, 300)


def test_reset_replays_the_same_stream() -> None:
    w = World(seed=3, config=SMALL)
    first = _snapshot(w, 200)
    w.reset()
    assert _snapshot(w, 200) == first


def test_different_seeds_differ() -> None:
    a, b = World(seed=3, config=SMALL), World(seed=4, config=SMALL)
    assert a.customers != b.customers
    assert [e.trigger for e in a.events(50)] != [e.trigger for e in b.events(50)]


def test_outcome_depends_only_on_seed_event_and_treatment(
    world: World, events: Sequence[WorldEvent]
) -> None:
    t = _treatment(world, "discount_10@sms")
    assert world.sample_outcome(events[5], t) == world.sample_outcome(events[5], t)


# --- the data the service sees ----------------------------------------------------------------


def test_features_have_the_types_the_service_accepts(events: Sequence[WorldEvent]) -> None:
    allowed = (float, str, bool, tuple)
    for e in events[:500]:
        for features in (e.customer.features, e.trigger.features):
            for name, value in features.items():
                assert type(value) in allowed, (name, type(value))
    names = set(events[0].customer.features)
    assert {"recency_days", "frequency", "monetary", "stage", "ltv", "age_band", "region"} <= names
    assert {"device", "consent_email", "consent_sms", "consent_push", "contacts_7d"} <= names
    assert not any("sensitiv" in n or "propensity" in n for n in names)


def test_events_are_time_ordered_and_cover_every_trigger(
    world: World, events: Sequence[WorldEvent]
) -> None:
    times = [e.time for e in events]
    assert times == sorted(times)
    assert {e.trigger.type for e in events} == set(world.trigger_types)
    cart = [e for e in events if e.trigger.type == "cart_abandoned"]
    assert all(e.trigger.features["cart_value"] == e.expected_basket for e in cart)


def test_treatments_are_control_plus_every_offer_through_every_channel(world: World) -> None:
    ts = world.treatments()
    assert ts[0] is CONTROL_TREATMENT
    assert len(ts) == 1 + len(world.offers) * len(world.channels) == 43
    assert len({t.ref for t in ts}) == len(ts)
    assert all(world.treatment_index(t) == i for i, t in enumerate(ts))


def test_choose_inputs_carry_the_event_and_the_catalogue(
    world: World, events: Sequence[WorldEvent]
) -> None:
    inputs = world.choose_inputs(events[0])
    assert inputs.event_id == events[0].event_id
    assert inputs.customer == events[0].customer
    assert inputs.trigger == events[0].trigger
    assert all(isinstance(o, Offer) for o in inputs.offers)
    assert all(isinstance(c, Channel) for c in inputs.channels)
    assert inputs.treatments == world.treatments()


# --- truth API --------------------------------------------------------------------------------


def test_oracle_is_never_beaten_in_expectation(world: World, events: Sequence[WorldEvent]) -> None:
    values = world.expected_values(events)
    for i, e in enumerate(events[:300]):
        best = world.expected_value(e, world.oracle_treatment(e))
        assert best == pytest.approx(values[i].max())
        assert np.all(values[i] <= best)
    assert world.oracle_value(events) == pytest.approx(values.max(axis=1).mean())
    assert world.oracle_value(events) >= values.mean(axis=0).max()


def test_expected_value_follows_the_documented_cost_model(
    world: World, events: Sequence[WorldEvent]
) -> None:
    t = _treatment(world, "free_shipping@email")
    assert t.offer is not None
    assert t.channel is not None
    e = events[0]
    p_buy = world.purchase_probabilities(e, [t])[0, 0]
    value = world.expected_value(e, t)
    # E[net] = E[revenue] (1 - rate) - fixed * P(purchase) - contact cost
    revenue = (value + t.channel.contact_cost + t.offer.fixed_cost * p_buy) / (
        1 - t.offer.discount_rate
    )
    assert 0.0 < revenue <= p_buy * e.expected_basket * 1.05 + 1e-9


def test_control_costs_nothing(world: World, events: Sequence[WorldEvent]) -> None:
    batch = world.sample_outcomes(events, np.zeros(len(events), np.intp), np.random.default_rng(0))
    assert not batch.cost.any()
    assert not batch.delivered.any()
    assert np.array_equal(batch.net_value, batch.revenue)
    p0 = world.purchase_probabilities(events)[:, 0]
    basket = np.array([e.expected_basket for e in events])
    assert np.allclose(world.expected_values(events)[:, 0], p0 * basket)


def test_uniform_value_is_the_average_over_treatments(
    world: World, events: Sequence[WorldEvent]
) -> None:
    values = world.expected_values(events)
    k = len(world.treatments())
    assert world.uniform_value(events) == pytest.approx(values.mean(axis=1).mean())
    assert world.true_value(events, np.full(k, 1.0 / k)) == pytest.approx(
        world.uniform_value(events)
    )
    one_hot = np.zeros(k)
    one_hot[0] = 1.0
    assert world.true_value(events, one_hot) == pytest.approx(world.control_value(events))


@pytest.mark.parametrize(
    ("pmf", "match"),
    [
        (np.full(43, 0.5), "sum to 1"),
        (np.full(42, 1 / 42), "shape"),
        (np.r_[-0.5, 1.5, np.zeros(41)], "non-negative"),
    ],
)
def test_true_value_rejects_bad_pmfs(
    world: World, events: Sequence[WorldEvent], pmf: np.ndarray, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        world.true_value(events[:10], pmf)


def test_truth_on_a_subset_of_treatments(world: World, events: Sequence[WorldEvent]) -> None:
    subset = [CONTROL_TREATMENT, _treatment(world, "content@email")]
    full = world.expected_values(events[:50])
    sub = world.expected_values(events[:50], subset)
    assert np.array_equal(sub, full[:, [0, world.treatment_index(subset[1])]])
    assert world.oracle_treatment(events[0], subset) in subset


# --- sampling matches the truth ---------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["control", "discount_20@sms", "free_shipping@email", "bundle@web_banner", "content@push"],
)
def test_realised_net_value_matches_expected(
    world: World, events: Sequence[WorldEvent], key: str
) -> None:
    t = CONTROL_TREATMENT if key == "control" else _treatment(world, key)
    repeats = 20
    sample = list(events) * repeats
    rng = np.random.default_rng([ord(ch) for ch in key])
    batch = world.sample_outcomes(sample, [t] * len(sample), rng)
    expected = world.expected_values(events, [t])[:, 0].mean()
    se = batch.net_value.std(ddof=1) / math.sqrt(len(sample))
    assert abs(batch.net_value.mean() - expected) < 4 * se
    p = world.purchase_probabilities(events, [t])[:, 0].mean()
    assert abs(batch.purchased.mean() - p) < 4 * math.sqrt(p * (1 - p) / len(sample))


def test_per_event_outcomes_match_expected(world: World, events: Sequence[WorldEvent]) -> None:
    t = _treatment(world, "discount_10@in_app")
    nets = np.array([world.sample_outcome(e, t).net_value for e in events[:3000]])
    expected = world.expected_values(events[:3000], [t])[:, 0].mean()
    assert abs(nets.mean() - expected) < 4 * nets.std(ddof=1) / math.sqrt(len(nets))


def test_outcome_fields_are_consistent(world: World, events: Sequence[WorldEvent]) -> None:
    t = _treatment(world, "discount_10@sms")
    assert t.channel is not None
    for e in events[:300]:
        o = world.sample_outcome(e, t)
        assert o.treatment == t.ref
        assert o.event_id == e.event_id
        if o.purchased:
            assert o.revenue > 0
            assert o.cost == pytest.approx(t.cost(o.revenue))
            assert o.net_value == pytest.approx(t.net_value(o.revenue))
            assert o.purchased_at == pytest.approx(e.time + o.delay_seconds)
        else:
            assert o.revenue == 0
            assert o.net_value == pytest.approx(-t.channel.contact_cost)
        assert o.delay_seconds > 0


def test_delays_follow_the_channel_when_delivered(
    world: World, events: Sequence[WorldEvent]
) -> None:
    banner = _treatment(world, "content@web_banner")
    browsed = [e for e in events if e.trigger.type == "product_browsed"] * 10
    batch = world.sample_outcomes(browsed, [banner] * len(browsed), np.random.default_rng(1))
    on, off = batch.delivered & batch.purchased, ~batch.delivered & batch.purchased
    assert on.sum() > 100
    assert off.sum() > 20
    assert np.median(batch.delay_seconds[on]) < 15 * 60 < np.median(batch.delay_seconds[off])
    email = next(m for m in world.channel_models if m.channel.id == "email")
    assert email.delay.median_seconds > 3600 > world.channel_models[3].delay.median_seconds


def test_delay_distribution_quantiles() -> None:
    d = DelayDistribution(median_seconds=600.0, sigma=0.5)
    assert d.quantile(0.5) == pytest.approx(600.0)
    assert d.quantile(0.95) > d.mean_seconds > d.median_seconds
    draws = d.sample(np.random.default_rng(0), 20000)
    assert np.median(draws) == pytest.approx(600.0, rel=0.05)


# --- heterogeneity ----------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["email", "sms", "push", "call_center"])
def test_no_consent_means_no_lift_but_the_decision_still_costs(
    world: World, events: Sequence[WorldEvent], channel: str
) -> None:
    model = next(m for m in world.channel_models if m.channel.id == channel)
    assert model.consent_feature is not None
    refused = [e for e in events if not e.customer.features[model.consent_feature]]
    assert len(refused) > 100
    p0 = world.purchase_probabilities(refused)[:, 0]
    basket = np.array([e.expected_basket for e in refused])
    for offer in world.offers:
        t = Treatment(offer, model.channel)
        assert np.array_equal(world.purchase_probabilities(refused, [t])[:, 0], p0)
        # the contact is paid; a baseline purchase after the decision redeems the offer
        cost = model.channel.contact_cost + p0 * (offer.fixed_cost + offer.discount_rate * basket)
        assert np.allclose(world.incremental_value(refused, t), -cost)
        batch = world.sample_outcomes(refused, [t] * len(refused), np.random.default_rng(2))
        assert not batch.delivered.any()


def test_vip_discounts_destroy_value(world: World, events: Sequence[WorldEvent]) -> None:
    vips = [e for e in events if world.stage_of(e) == "vip"]
    assert len(vips) > 100
    for offer in ("discount_5", "discount_10", "discount_20"):
        for channel in ("email", "sms", "web_banner"):
            inc = world.incremental_value(vips, _treatment(world, f"{offer}@{channel}"))
            assert inc.mean() < 0, (offer, channel)


def test_price_sensitive_at_risk_customers_want_bigger_discounts(
    world: World, events: Sequence[WorldEvent]
) -> None:
    at_risk = [
        e for e in events if world.stage_of(e) == "at_risk" and e.customer.features["consent_sms"]
    ]
    ps = world.price_sensitivity(at_risk)
    sensitive = [e for e, s in zip(at_risk, ps, strict=True) if s > 0.7]
    insensitive = [e for e, s in zip(at_risk, ps, strict=True) if s < 0.3]
    assert len(sensitive) > 30
    assert len(insensitive) > 10
    lifts = [
        world.incremental_value(sensitive, _treatment(world, f"discount_{d}@sms")).mean()
        for d in (5, 10, 20)
    ]
    assert 0 < lifts[0] < lifts[1] < lifts[2]
    d20 = _treatment(world, "discount_20@sms")
    assert world.incremental_value(insensitive, d20).mean() < lifts[2] / 3


def test_channel_affinity_depends_on_age(world: World, events: Sequence[WorldEvent]) -> None:
    call = _treatment(world, "content@call_center")
    assert call.channel is not None
    young = [e for e in events if e.customer.features["age_band"] in ("18-24", "25-34")]
    old = [e for e in events if e.customer.features["age_band"] in ("55-64", "65+")]
    p_young = (
        world.purchase_probabilities(young, [call])[:, 0]
        - world.purchase_probabilities(young)[:, 0]
    )
    p_old = (
        world.purchase_probabilities(old, [call])[:, 0] - world.purchase_probabilities(old)[:, 0]
    )
    assert p_old.mean() > 2 * p_young.mean()


def test_recent_contacts_lower_the_lift() -> None:
    w = World(seed=5, config=WorldConfig(n_customers=50, background_contacts_per_week=0.0))
    t = _treatment(w, "discount_20@sms")
    seen: dict[int, list[WorldEvent]] = {}
    for e in w.events(2000):
        seen.setdefault(e.customer_index, []).append(e)
        w.apply(e, t)
    tired = [
        e
        for es in seen.values()
        for e in es
        if e.contacts_7d >= 3 and e.customer.features["consent_sms"]
    ]
    assert tired
    fresh = [dataclasses.replace(e, contacts_7d=0) for e in tired]
    assert np.all(w.incremental_value(tired, t) < w.incremental_value(fresh, t))


def test_apply_records_contacts_once(world: World) -> None:
    w = World(seed=6, config=WorldConfig(n_customers=1, background_contacts_per_week=0.0))
    first, second = list(w.events(2))
    assert first.contacts_7d == 0
    w.apply(first, _treatment(w, "content@push"))
    assert w.contacts_at(0, first.time) == 1
    with pytest.raises(ValueError, match="already applied"):
        w.apply(first, CONTROL_TREATMENT)
    third = next(w.events(1))
    assert second.contacts_7d == 0
    assert third.contacts_7d == 1
    assert third.customer.features["contacts_7d"] == 1.0


# --- the default world makes learning worth it ------------------------------------------------


def test_default_world_reference_values(
    default_world_events: tuple[World, list[WorldEvent]],
) -> None:
    world, events = default_world_events
    v = world.values(events)
    assert v.uniform < v.control < v.best_static < v.oracle
    assert v.oracle >= 1.15 * v.best_static
    assert v.control - v.uniform > 0.5
    assert v.best_static == pytest.approx(world.best_static_rule_value(events))
    assert dict(v.best_static_rule) == world.best_static_rule(events)
    assert set(v.best_static_rule) == set(world.stages)
    assert v.oracle_gain_over_static > 1.0


def test_the_world_imports_no_transport_or_tracking_code() -> None:
    code = (
        "import sys, bandit.sim; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('grpc', 'mlflow', 'google')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

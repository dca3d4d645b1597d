"""The world's truth within an attribution window: what a log's rewards measure (only
purchases inside the window count, with their offer costs; the contact cost always does)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bandit.sim import DelayDistribution, World, WorldConfig
from bandit.types import CONTROL_TREATMENT

HOUR = 3600.0


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=13, config=WorldConfig(n_customers=1500))


@pytest.mark.parametrize(
    "key", ["control", "discount_20@sms", "free_shipping@email", "bundle@push"]
)
@pytest.mark.parametrize("window", [6 * HOUR, 48 * HOUR])
def test_the_windowed_truth_is_the_mean_of_what_a_window_sees(
    world: World, key: str, window: float
) -> None:
    world.reset()
    events = list(world.events(4000))
    t = next(t for t in world.treatments() if t.ref.key == key)
    sample = events * 10
    rng = np.random.default_rng([int(window), len(key)])
    batch = world.sample_outcomes(sample, [t] * len(sample), rng)
    contact = 0.0 if t.channel is None else t.channel.contact_cost
    late = batch.purchased & (batch.delay_seconds >= window)
    seen = np.where(late, -contact, batch.net_value)
    se = seen.std(ddof=1) / math.sqrt(len(seen))
    expected = world.expected_values(events, [t], window_seconds=window)[:, 0].mean()
    assert abs(seen.mean() - expected) < 4 * se
    full = world.expected_values(events, [t])[:, 0].mean()
    assert expected < full  # a window always misses some purchases
    if window == 6 * HOUR:  # and this test can tell the two apart
        assert full - expected > 4 * se


def test_an_endless_window_sees_everything(world: World) -> None:
    world.reset()
    events = list(world.events(500))
    full = world.expected_values(events)
    assert np.allclose(world.expected_values(events, window_seconds=1e12), full, rtol=1e-12)
    assert world.expected_values(events[:3], [CONTROL_TREATMENT], window_seconds=0.0).max() == 0


def test_delay_cdf_matches_its_quantiles() -> None:
    d = DelayDistribution(median_seconds=6 * HOUR, sigma=1.2)
    for q in (0.05, 0.5, 0.96):
        assert d.cdf(d.quantile(q)) == pytest.approx(q, abs=1e-12)
    assert d.cdf(0.0) == 0.0

"""The minimum detectable gain GetStats reports (``Incremental.detectable``) means what it says:
a true gain of that size shows above 0 with the stated power — checked on simulated scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bandit.records import Incremental


def _estimates(gain: float, sd: float, n: int, reps: int, seed: int) -> list[Incremental]:
    rng = np.random.default_rng(seed)
    scores = rng.normal(gain, sd, size=(reps, n))
    return [Incremental.from_sums(n, float(row.sum()), float((row * row).sum())) for row in scores]


@pytest.mark.parametrize("power", [0.5, 0.8, 0.9])
def test_a_gain_of_the_detectable_size_shows_with_the_stated_power(power: float) -> None:
    n, sd, reps = 400, 20.0, 4000
    # The detectable gain of an estimate of this spread (from one pilot estimate at gain 0).
    pilot = _estimates(0.0, sd, n, 1, seed=1)[0]
    gain = pilot.detectable(power)
    shown = sum(e.ci_low > 0.0 for e in _estimates(gain, sd, n, reps, seed=2))
    # The pilot's spread is itself estimated (400 scores: ~3.5% relative error of the sd),
    # which moves the true power by up to ~±0.05; plus the binomial noise of 4,000 runs.
    tolerance = 0.06 + 3 * math.sqrt(power * (1 - power) / reps)
    assert abs(shown / reps - power) < tolerance


def test_decisions_to_detect_scales_with_the_inverse_square_of_the_gain() -> None:
    e = Incremental(10_000, 0.1, -0.9, 1.1)
    assert e.decisions_to_detect(e.detectable()) == pytest.approx(10_000)
    assert e.decisions_to_detect(e.detectable() / 2) == pytest.approx(40_000)
    with pytest.raises(ValueError, match="gain"):
        e.decisions_to_detect(0.0)


def test_no_interval_no_detectable_gain() -> None:
    assert math.isnan(Incremental.from_sums(1, 1.0, 1.0).detectable())

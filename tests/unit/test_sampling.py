"""Control share and seeded sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.sampling import (
    derive_seed,
    floored_pmf,
    mix_control,
    normalise,
    sample_index,
    uniform_from_seed,
)

pmfs = st.lists(st.floats(0.0, 1.0), min_size=2, max_size=20).filter(lambda p: sum(p) > 1e-6)


@given(pmfs, st.floats(0.0, 1.0))
def test_mixing_keeps_a_pmf_with_the_control_floor(raw: list[float], floor: float) -> None:
    pmf = normalise(raw)
    mixed = mix_control(pmf, 0, floor)
    assert math.isclose(sum(mixed), 1.0, abs_tol=1e-9)
    assert mixed[0] >= floor - 1e-12
    if pmf[0] < floor and pmf[0] < 1:
        ratios = {round(m / p, 9) for m, p in zip(mixed[1:], pmf[1:], strict=True) if p > 1e-9}
        assert len(ratios) <= 1  # the rest is scaled, not reshuffled


@given(
    st.lists(st.floats(-1e-9, 10.0), min_size=1, max_size=60).filter(lambda p: sum(p) > 1e-6),
    st.floats(0.0, 1.0),
    st.data(),
)
def test_floored_pmf_is_exactly_normalise_mix_normalise(
    scores: list[float], floor: float, data: st.DataObject
) -> None:
    control = data.draw(st.integers(0, len(scores) - 1))
    assert floored_pmf(scores, control, floor) == normalise(
        mix_control(normalise(scores), control, floor)
    )


@pytest.mark.parametrize("scores", [[0.5, math.inf, 0.1], [math.nan, 1.0, 0.5], [0.2, 0.0]])
def test_floored_pmf_matches_the_composition_on_odd_scores_too(scores: list[float]) -> None:
    assert floored_pmf(scores, 0, 0.05) == normalise(mix_control(normalise(scores), 0, 0.05))


@pytest.mark.parametrize("floor", [-0.1, 1.1])
def test_control_share_outside_unit_interval_is_rejected(floor: float) -> None:
    with pytest.raises(ValueError, match="control share"):
        mix_control([0.5, 0.5], 0, floor)
    with pytest.raises(ValueError, match="control share"):
        floored_pmf([0.5, 0.5], 0, floor)


def test_sampling_frequencies_match_the_pmf() -> None:
    pmf = (0.05, 0.5, 0.0, 0.25, 0.2)
    n = 40_000
    counts = np.zeros(len(pmf))
    for i in range(n):
        counts[sample_index(pmf, uniform_from_seed(derive_seed(7, f"event-{i}")))] += 1
    assert counts[2] == 0  # never a zero-probability treatment
    expected = np.array(pmf) * n
    nz = expected > 0
    chi2 = float((((counts - expected) ** 2)[nz] / expected[nz]).sum())
    assert chi2 < 18.5  # chi-square, 3 degrees of freedom, p = 0.0003


def test_seeds_depend_on_server_seed_and_event() -> None:
    seeds = {derive_seed(s, e) for s in range(5) for e in ("a", "b", "c")}
    assert len(seeds) == 15

"""The uplift decider's fast scoring against a plain reference computed from the posterior.

The decider gathers a packed float32 table per catalogue and context (bandit/uplift/policy.py);
the reference here builds each treatment's design row token by token and evaluates the net
uplift in float64 straight from the published means and draws. Their values agree to float32
rounding; their pmfs are equal wherever the decision is not a near-tie (the float32 table
can only flip a tie closer than its rounding), and the test checks that nearly all are.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from bandit.sim import World, WorldConfig
from bandit.sim.driver import eligible_mask
from bandit.types import Context, Treatment
from bandit.uplift import UpliftPolicy, uplift_arguments

FloatArray = NDArray[np.float64]


def _predictors(
    p: UpliftPolicy, context: Context, t: Treatment | None
) -> tuple[FloatArray, FloatArray]:
    """Both targets' linear predictors ``[1 + S]`` (the means', then each draw's) for the
    context with treatment ``t`` (``None``: the baseline), from the published posterior."""
    index, post = p.index, p.posterior
    dim = len(post.means[0])
    ck, cv = index.context(context)
    ids, vals = list(index.base[ck]), list(cv)
    if t is not None:
        ej, ev = index.effects(t)
        for j, v in zip(ej, ev, strict=True):
            for k, x in zip(ck, cv, strict=True):
                ids.append(index.cross[j, k])
                vals.append(v * x)
    out = []
    for target in range(2):
        total = np.zeros(1 + post.samples[target].shape[1])
        for i, v in zip(ids, vals, strict=True):
            if 0 < i < dim:
                m = float(post.means[target][i])
                total[0] += v * m
                total[1:] += v * (m + post.samples[target][i].astype(np.float64))
        out.append(total)
    return out[0], out[1]


def _reference_values(
    p: UpliftPolicy, context: Context, treatments: tuple[Treatment, ...]
) -> FloatArray:
    """``[K, 1 + S]`` net uplift over control (the means', then each draw's)."""
    b0, b1 = _predictors(p, context, None)
    rows = []
    for t in treatments:
        if t.offer is None or t.channel is None:
            rows.append(np.zeros_like(b0))
            continue
        d, f, c = t.offer.discount_rate, t.offer.fixed_cost, t.channel.contact_cost
        t0, t1 = _predictors(p, context, t)
        if p.settings.form == "product":  # targets: purchase, basket
            prob, basket = np.clip(t0, 0, 1), np.maximum(t1, 0)
            prob0, basket0 = np.clip(b0, 0, 1), np.maximum(b1, 0)
            rows.append(prob * ((1 - d) * basket - f) - c - prob0 * basket0)
        else:  # targets: revenue, purchase
            rows.append((1 - d) * (t0 - b0) - d * b0 - f * t1 - c)
    return np.array(rows)


def _reference_pmf(
    p: UpliftPolicy, values: FloatArray, treatments: tuple[Treatment, ...]
) -> tuple[FloatArray, float]:
    """The pmf of the module docstring from ``values``, and its decision's margin (how far
    the closest comparison it rests on is from a tie, in EUR)."""
    s = p.settings
    mean, draws = values[:, 0], values[:, 1:]
    kappa = s.kappa * np.sqrt(1 + s.evidence / p.posterior.n)
    lower = mean - kappa * np.sqrt(np.mean((draws - mean[:, None]) ** 2, axis=1))
    control = np.array([t.is_control for t in treatments])
    lower[control] = -np.inf
    order = np.sort(lower)[::-1]
    best = int(np.argmax(lower))
    greedy = best if lower[best] > 0 else int(np.argmax(control))
    margin = min(abs(lower[best]), order[0] - order[1] if len(order) > 1 else np.inf)
    top = np.sort(draws, axis=0)
    margin = min(margin, float(np.min(top[-1] - top[-2])))
    pmf = s.explore * np.bincount(np.argmax(draws, axis=0), minlength=len(treatments))
    pmf = pmf / draws.shape[1]
    pmf[greedy] += 1 - s.explore
    return pmf, float(margin)


@pytest.mark.parametrize("form", ["product", "additive"])
def test_the_fast_scorer_is_the_posterior_evaluated_plainly(form: str) -> None:
    world = World(seed=5, config=WorldConfig(n_customers=400))
    treatments = world.treatments()
    p = UpliftPolicy.from_args(uplift_arguments(f"--form {form} --samples 16", seed=2))
    rng = np.random.default_rng(9)
    events = list(world.events(2_600))
    for ev in events[:2_400]:
        t = treatments[int(rng.integers(len(treatments)))]
        o = world.apply(ev, t)
        p.learn(ev.context, t, o.revenue, o.purchased)
    p.publish()
    for ev in events[2_400:2_450]:  # learned after the publication: scoring must ignore it
        p.learn(ev.context, treatments[1], 30.0, True)
    compared = 0
    for ev in events[2_450:]:
        cand = tuple(treatments[c] for c in np.flatnonzero(eligible_mask(world, ev)))
        mean, dev = p.uplift(ev.context, cand)
        ref = _reference_values(p, ev.context, cand)
        fast = np.column_stack([mean, mean[:, None] + dev])
        # float32 weights and sums: a relative 1e-5 of the magnitudes summed, and a floor
        np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=2e-3)
        expected, margin = _reference_pmf(p, ref, cand)
        if margin > 1e-2:
            assert p.scores(ev.context, cand) == pytest.approx(list(expected), abs=1e-12)
            compared += 1
    assert compared >= 140  # of 150: near-ties are rare


def test_a_decider_from_bytes_and_the_learner_that_published_agree_exactly() -> None:
    world = World(seed=6, config=WorldConfig(n_customers=300))
    treatments = world.treatments()
    p = UpliftPolicy.from_args(uplift_arguments("--samples 8", seed=1))
    rng = np.random.default_rng(3)
    events = list(world.events(1_300))
    for ev in events[:1_200]:
        t = treatments[int(rng.integers(len(treatments)))]
        o = world.apply(ev, t)
        p.learn(ev.context, t, o.revenue, o.purchased)
    decider = UpliftPolicy.from_args(p.args, p.serialize())
    for ev in events[1_200:]:
        assert decider.scores(ev.context, treatments) == p.scores(ev.context, treatments)
        m1, d1 = decider.uplift(ev.context, treatments)
        m0, d0 = p.uplift(ev.context, treatments)
        assert np.array_equal(m1, m0)
        assert np.array_equal(d1, d0)

"""Confidence intervals: normal, vectorised bootstrap and empirical likelihood."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import optimize, stats

from offline_eval.estimators import (
    DR,
    IPS,
    SNIPS,
    BanditData,
    OffPolicyEstimator,
    importance_weights,
)
from offline_eval.estimators.intervals import (
    BootstrapInterval,
    EmpiricalLikelihoodInterval,
    ImportanceSample,
    Interval,
    NormalInterval,
    Scores,
    empirical_likelihood_bounds,
)

FloatArray = NDArray[np.float64]

K = 10


def heavy_log(
    n: int, rng: np.random.Generator, p_target: float = 0.05, mu_target: float = 0.3
) -> tuple[BanditData, FloatArray, float]:
    """K actions; logging plays action 0 with probability ``p_target``, the target always.

    Importance weights are 0 or ``1/p_target`` (20): at n=100 only ~5 rows inform the
    estimate. Rewards are Bernoulli; the target's true value is ``mu_target``.
    """
    logging = np.full(K, (1.0 - p_target) / (K - 1))
    logging[0] = p_target
    chosen = rng.choice(K, size=n, p=logging)
    mu = np.full(K, 0.5)
    mu[0] = mu_target
    rewards = (rng.random(n) < mu[chosen]).astype(np.float64)
    pmf = np.tile(logging, (n, 1))
    data = BanditData(rewards, chosen, logging[chosen], logging_pmf=pmf)
    target = np.zeros((n, K))
    target[:, 0] = 1.0
    return data, target, mu_target


def gentle_log(n: int, rng: np.random.Generator) -> tuple[BanditData, FloatArray]:
    """Well-behaved data: weights in [0.5, 2], Gaussian rewards."""
    logging = np.full((n, 4), 0.25)
    chosen = rng.integers(0, 4, size=n)
    rewards = rng.normal(loc=1.0 + 0.5 * chosen, scale=1.0)
    data = BanditData(rewards, chosen, np.full(n, 0.25), logging_pmf=logging)
    target = np.tile([0.125, 0.125, 0.25, 0.5], (n, 1))
    return data, target


# --------------------------------------------------------------------------- empirical likelihood

EL_REPS = 300


@pytest.mark.parametrize("n", [50, 100, 200])
def test_el_interval_covers_at_small_n_with_heavy_weights_where_normal_does_not(n: int) -> None:
    # 300 repetitions: a 95% method covers Binomial(300, 0.95) times, mean 285, sd 3.8;
    # requiring >= 270 (90%) leaves ~4 sd. The normal interval's failure is structural:
    # with probability 0.9875**n (53% at n=50, 8% at n=200) no row has a non-zero reward
    # weight and the normal interval collapses to [0, 0].
    rng = np.random.default_rng(n)
    el = EmpiricalLikelihoodInterval(alpha=0.05, r_min=0.0, r_max=1.0)
    covered_el = covered_normal = 0
    for _ in range(EL_REPS):
        data, target, truth = heavy_log(n, rng)
        with_el = IPS().estimate(data, target, interval=el)
        normal = IPS().estimate(data, target)
        covered_el += with_el.ci_low <= truth <= with_el.ci_high
        covered_normal += normal.ci_low <= truth <= normal.ci_high
        assert 0.0 <= with_el.ci_low <= with_el.ci_high <= 1.0
    assert covered_el >= 0.90 * EL_REPS, f"EL covers {covered_el}/{EL_REPS}"
    assert covered_normal < 0.90 * EL_REPS, f"normal covers {covered_normal}/{EL_REPS}"
    assert covered_el > covered_normal


# Slack allowed on the reference's constraints: its points' objectives may beat the true
# bounds by a small multiple of it, no more.
FEASIBLE = 1e-9
# How much looser than the reference's points the dual's bounds may be. On these cases the
# reference comes within 1e-9 of the dual (1e-12 typically), with AVX-512, AVX2 or SSE
# kernels; a wrong dual is off by far more (the interval at alpha = 0.1 instead of 0.05
# differs by 0.03–0.06).
TIGHT = 1e-5


def _primal_el_bounds(
    w: FloatArray, r: FloatArray, alpha: float, w_max: float
) -> tuple[float, float]:
    """Brute force: the EL bounds by solving the primal over q (n rows + 2 corners) directly.

    SLSQP's own verdict is not used: whether it reports success at ``ftol=1e-14`` depends on
    the CPU's floating-point kernels. What it returns is checked instead. Every point must
    satisfy the constraints (to ``FEASIBLE``), so the returned values never beat the true
    bounds; and the likelihood floor comes from a Lagrangian upper bound on the maximum
    log-likelihood, so an MLE that is not quite converged can only shrink the feasible set.
    """
    n = w.shape[0]
    w_all = np.concatenate([w, [0.0, w_max]])  # the corners sit at w = 0 and w = w_max
    sum_one = {"type": "eq", "fun": lambda x: np.sum(x) - 1.0}
    mean_w = {"type": "eq", "fun": lambda x: x @ w_all - 1.0}
    box = [(1e-12, 1.0)] * (n + 2)
    start = np.full(n + 2, 1.0 / (n + 2))

    def loglik(x: FloatArray) -> float:
        return float(np.sum(np.log(x[:n])))

    mle = optimize.minimize(
        lambda x: -loglik(x),
        start,
        method="SLSQP",
        bounds=box,
        constraints=[sum_one, mean_w],
        options={"ftol": 1e-14, "maxiter": 2000},
    )
    # Weak duality: for any λ ≥ 0 and β with λ + β·w_max ≥ 0,
    # max Σ log q_i ≤ Σ (−log(λ + β·w_i) − 1) + λ + β; at the optimum q_i = 1/(λ + β·w_i),
    # so (λ, β) are read off SLSQP's point and clipped into the feasible set.
    (lam, beta), *_ = np.linalg.lstsq(np.column_stack([np.ones(n), w]), 1.0 / mle.x[:n])
    lam = max(float(lam), 0.0)
    beta = max(float(beta), -lam / w_max)
    max_loglik = float(np.sum(-np.log(lam + beta * w) - 1.0)) + lam + beta
    floor = max_loglik - 0.5 * stats.f.isf(alpha, 1, n - 1)
    likely = {"type": "ineq", "fun": lambda x: loglik(x) - floor}
    ends = []
    for sign in (1.0, -1.0):
        # Corner mass sits at (0, r_extreme) and (w_max, r_extreme); r in [0, 1].
        corner = 0.0 if sign > 0 else -1.0
        res = optimize.minimize(
            lambda x, s=sign, c=corner: x[:n] @ (w * r * s) + x[n + 1] * w_max * c,
            mle.x,
            method="SLSQP",
            bounds=box,
            constraints=[sum_one, mean_w, likely],
            options={"ftol": 1e-14, "maxiter": 5000},
        )
        x = res.x
        assert abs(np.sum(x) - 1.0) <= FEASIBLE, f"sum(q) = {np.sum(x)!r} ({res.message})"
        assert abs(x @ w_all - 1.0) <= FEASIBLE, f"E_q[w] = {x @ w_all!r} ({res.message})"
        assert loglik(x) >= floor - FEASIBLE, f"below the likelihood floor ({res.message})"
        ends.append(sign * float(res.fun))
    return ends[0], ends[1]


def _assert_matches_primal(dual: tuple[float, float], primal: tuple[float, float]) -> None:
    """The dual's bounds are valid (no feasible point beats them) and tight (to ``TIGHT``)."""
    (d_low, d_high), (p_low, p_high) = dual, primal
    assert d_low <= p_low + 10 * FEASIBLE, f"lower bound {d_low} is not valid: {p_low} is feasible"
    assert d_high >= p_high - 10 * FEASIBLE, (
        f"upper bound {d_high} is not valid: {p_high} is feasible"
    )
    assert p_low - d_low <= TIGHT, f"lower bound {d_low} is loose: {p_low} is feasible"
    assert d_high - p_high <= TIGHT, f"upper bound {d_high} is loose: {p_high} is feasible"


def _el_case(seed: int, n: int, w_max: float) -> tuple[FloatArray, FloatArray]:
    rng = np.random.default_rng(seed)
    w = np.where(rng.random(n) < 1.0 / w_max, w_max * rng.uniform(0.5, 1.0, n), rng.random(n))
    return w, rng.random(n)


# Cases where SLSQP reaches the primal's optimum (it stalls short of it on some others; the
# dual never did).
@pytest.mark.parametrize(
    ("seed", "n", "w_max"), [(2, 9, 10.0), (7, 12, 10.0), (6, 8, 3.0), (2, 15, 5.0)]
)
def test_el_dual_solution_matches_brute_force_primal(seed: int, n: int, w_max: float) -> None:
    w, r = _el_case(seed, n, w_max)
    dual = empirical_likelihood_bounds(w, r, alpha=0.05, w_max=w_max, r_min=0.0, r_max=1.0)
    _assert_matches_primal(dual, _primal_el_bounds(w, r, 0.05, w_max))


@pytest.mark.parametrize(("alpha", "match"), [(0.10, "is not valid"), (0.01, "is loose")])
def test_the_primal_check_catches_a_wrong_dual(alpha: float, match: str) -> None:
    # The dual solved at another alpha stands in for a wrong one: too narrow an interval is
    # beaten by a feasible point, too wide a one is loose.
    w, r = _el_case(7, 12, 10.0)
    wrong = empirical_likelihood_bounds(w, r, alpha=alpha, w_max=10.0, r_min=0.0, r_max=1.0)
    with pytest.raises(AssertionError, match=match):
        _assert_matches_primal(wrong, _primal_el_bounds(w, r, 0.05, 10.0))


def test_el_interval_matches_the_control_variate_normal_interval_on_large_samples() -> None:
    # EL uses the known moment E[w] = 1, so asymptotically it is the normal interval of the
    # optimal control-variate estimator mean(w·r − β(w − 1)), β = cov(w·r, w)/var(w)
    # (narrower than SNIPS's). Differences are O(1/n) relative: 2% of the width is ample.
    data, target = gentle_log(20_000, np.random.default_rng(5))
    el = SNIPS().estimate(data, target, interval=EmpiricalLikelihoodInterval(w_max=2.0))
    w = importance_weights(data, target)
    wr = w * data.rewards
    beta = np.cov(wr, w)[0, 1] / np.var(w, ddof=1)
    low, high = NormalInterval().bounds(Scores("CV", wr - beta * (w - 1.0)))
    assert el.ci_low == pytest.approx(low, abs=0.02 * (high - low))
    assert el.ci_high == pytest.approx(high, abs=0.02 * (high - low))
    snips = SNIPS().estimate(data, target)
    assert el.ci_high - el.ci_low < snips.ci_high - snips.ci_low


def test_el_uses_the_support_bound_of_the_logging_pmf() -> None:
    data, target, _ = heavy_log(60, np.random.default_rng(3))
    scores = IPS().scores(data, target)
    assert scores.importance is not None
    assert scores.importance.weight_bound == pytest.approx(20.0)
    default = EmpiricalLikelihoodInterval(r_min=0.0, r_max=1.0).bounds(scores)
    explicit = EmpiricalLikelihoodInterval(w_max=20.0, r_min=0.0, r_max=1.0).bounds(scores)
    assert default == pytest.approx(explicit)
    # A looser weight bound can only widen the interval.
    loose = EmpiricalLikelihoodInterval(w_max=100.0, r_min=0.0, r_max=1.0).bounds(scores)
    assert loose[0] <= default[0] + 1e-12
    assert loose[1] >= default[1] - 1e-12


def test_el_edge_cases() -> None:
    w = np.array([0.0, 2.0, 1.0])
    # Constant reward: V = c·E[w] = c exactly.
    assert empirical_likelihood_bounds(
        w, np.full(3, 0.4), alpha=0.05, w_max=2.0, r_min=0.4, r_max=0.4
    ) == (0.4, 0.4)
    # One row says nothing.
    assert empirical_likelihood_bounds(
        w[:1], np.ones(1), alpha=0.05, w_max=2.0, r_min=0.0, r_max=1.0
    ) == (0.0, 1.0)
    # No row with a non-zero weight: the reward range.
    low, high = empirical_likelihood_bounds(
        np.zeros(30), np.ones(30), alpha=0.05, w_max=20.0, r_min=0.0, r_max=1.0
    )
    assert (low, high) == (0.0, 1.0)


def test_el_interval_shrinks_with_n() -> None:
    rng = np.random.default_rng(8)
    el = EmpiricalLikelihoodInterval(r_min=0.0, r_max=1.0)
    widths = []
    for n in (100, 1000, 10_000):
        data, target, _ = heavy_log(n, rng, p_target=0.2)
        est = SNIPS().estimate(data, target, interval=el)
        widths.append(est.ci_high - est.ci_low)
        assert est.ci_low <= est.value <= est.ci_high
    assert widths[0] > widths[1] > widths[2]


@pytest.mark.parametrize(
    ("interval", "match"),
    [
        (EmpiricalLikelihoodInterval(w_max=5.0), r"w_max=5.0 is below the largest importance"),
        (EmpiricalLikelihoodInterval(r_max=0.5), r"r_max=0.5 is below the largest reward"),
        (EmpiricalLikelihoodInterval(r_min=0.5), r"r_min=0.5 is above the smallest reward"),
    ],
)
def test_el_rejects_inconsistent_bounds(interval: Interval, match: str) -> None:
    w = np.array([0.0, 10.0, 0.0, 0.0])
    r = np.array([0.0, 1.0, 0.0, 1.0])
    scores = Scores("IPS", w * r, importance=ImportanceSample(w, r, 10.0))
    with pytest.raises(ValueError, match=match):
        interval.bounds(scores)


def test_el_is_refused_for_model_based_estimators() -> None:
    data, target = gentle_log(50, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"applies to importance-weighted estimators.*not to DR"):
        DR().estimate(data, target, np.zeros_like(target), interval=EmpiricalLikelihoodInterval())


# --------------------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("estimator", [IPS(), SNIPS()])
def test_bootstrap_is_close_to_normal_on_a_large_gentle_sample(
    estimator: OffPolicyEstimator,
) -> None:
    # n=20000 makes the sampling law near-normal. With 2000 resamples the 2.5% quantile has
    # Monte Carlo sd ≈ sqrt(.025·.975/2000)/φ(1.96)·SE ≈ 0.06·SE, while 5% of the width is
    # 0.2·SE: over 3 Monte Carlo sd.
    data, target = gentle_log(20_000, np.random.default_rng(1))
    boot = estimator.estimate(data, target, interval=BootstrapInterval(n_resamples=2000, seed=3))
    normal = estimator.estimate(data, target)
    width = normal.ci_high - normal.ci_low
    assert boot.interval == "bootstrap"
    assert boot.value == normal.value
    assert boot.ci_low == pytest.approx(normal.ci_low, abs=0.05 * width)
    assert boot.ci_high == pytest.approx(normal.ci_high, abs=0.05 * width)


def test_bootstrap_replicates_have_the_standard_error_spread() -> None:
    data, target = gentle_log(5000, np.random.default_rng(2))
    scores = SNIPS().scores(data, target)
    reps = BootstrapInterval(n_resamples=4000, seed=0).replicates(scores)
    assert reps.shape == (4000,)
    # sd of 4000 replicates is known to ~1.1%.
    assert reps.std(ddof=1) == pytest.approx(scores.std_error, rel=0.05)
    assert reps.mean() == pytest.approx(scores.value, abs=0.1 * scores.std_error)


def test_bootstrap_is_seeded_and_chunking_does_not_change_the_law() -> None:
    data, target = gentle_log(2000, np.random.default_rng(4))
    scores = SNIPS().scores(data, target)
    a = BootstrapInterval(n_resamples=500, seed=7).bounds(scores)
    assert a == BootstrapInterval(n_resamples=500, seed=7).bounds(scores)
    assert a != BootstrapInterval(n_resamples=500, seed=8).bounds(scores)
    # One resample per chunk (500 chunks) gives an interval of the same law.
    tiny = BootstrapInterval(n_resamples=500, seed=7, max_chunk_bytes=1).bounds(scores)
    width = a[1] - a[0]
    assert tiny == pytest.approx(a, abs=0.1 * width)


def test_bootstrap_recomputes_the_ratio() -> None:
    # All the signal in one row: a linearised bootstrap would be symmetric, the real one
    # is not (resamples without row 0 give a self-normalised value of exactly 0).
    w = np.array([10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    r = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    scores = Scores("SNIPS", np.zeros(10), w * r, w)
    reps = BootstrapInterval(n_resamples=2000, seed=0).replicates(scores)
    assert reps.min() == 0.0
    assert 0.3 < np.mean(reps == 0.0) < 0.45  # P(Poisson(1) = 0) = e^-1 ≈ 0.37
    assert reps.max() <= 1.0


# --------------------------------------------------------------------------- normal + validation


def test_normal_interval_formula() -> None:
    psi = np.random.default_rng(0).normal(size=400)
    low, high = NormalInterval(alpha=0.1).bounds(Scores("IPS", psi))
    half = stats.norm.ppf(0.95) * psi.std(ddof=1) / math.sqrt(400)
    assert (low, high) == pytest.approx((psi.mean() - half, psi.mean() + half), rel=1e-12)


def test_normal_interval_with_one_row_is_nan() -> None:
    low, high = NormalInterval().bounds(Scores("IPS", np.array([1.0])))
    assert math.isnan(low)
    assert math.isnan(high)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: NormalInterval(alpha=0.0), r"alpha must be in \(0, 1\)"),
        (lambda: NormalInterval(alpha=1.0), r"alpha must be in \(0, 1\)"),
        (lambda: BootstrapInterval(alpha=-0.1), r"alpha must be in \(0, 1\)"),
        (lambda: BootstrapInterval(n_resamples=5), r"n_resamples must be >= 10"),
        (lambda: BootstrapInterval(max_chunk_bytes=0), r"max_chunk_bytes must be > 0"),
        (lambda: EmpiricalLikelihoodInterval(alpha=2.0), r"alpha must be in \(0, 1\)"),
        (lambda: EmpiricalLikelihoodInterval(w_max=1.0), r"w_max must be > 1"),
        (lambda: EmpiricalLikelihoodInterval(r_min=1.0, r_max=0.0), r"r_min must be <= r_max"),
    ],
)
def test_invalid_interval_parameters_are_rejected(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_scores_need_numerator_and_denominator_together() -> None:
    with pytest.raises(ValueError, match=r"numerator and denominator must be given together"):
        Scores("SNIPS", np.zeros(2), numerator=np.ones(2))

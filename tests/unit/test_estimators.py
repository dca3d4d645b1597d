"""Off-policy estimators: formulas, diagnostics, input checks and statistical behaviour.

The statistical tests draw logged datasets from a synthetic world whose true expected reward
of every (context, action) is known, so the target policy's value is known exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from offline_eval.estimators import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    BanditData,
    Estimate,
    OffPolicyEstimator,
    SwitchDR,
    importance_weights,
)
from offline_eval.estimators.reward_models import cross_fit_q_hat

FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------- synthetic world


@dataclass(frozen=True)
class World:
    """A finite population of contexts, each with 5..K_MAX actions, drawn uniformly."""

    mu: FloatArray  # (M, K) true expected Bernoulli reward, 0 where padded
    mask: NDArray[np.bool_]  # (M, K)
    logging: FloatArray  # (M, K) logging pmf
    target: FloatArray  # (M, K) target pmf
    features: FloatArray  # (M, K, d) reward-model features

    @property
    def truth(self) -> float:
        """Exact value of the target policy: contexts are uniform."""
        return float(np.mean(np.sum(self.target * self.mu, axis=1)))


def _masked_softmax(logits: FloatArray, mask: NDArray[np.bool_]) -> FloatArray:
    z = np.where(mask, logits, -np.inf)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    pmf: FloatArray = z / z.sum(axis=1, keepdims=True)
    return pmf


def make_world(seed: int, n_contexts: int = 60, k_max: int = 8) -> World:
    rng = np.random.default_rng(seed)
    n_actions = rng.integers(5, k_max + 1, size=n_contexts)
    mask = np.arange(k_max) < n_actions[:, None]
    x = rng.normal(size=(n_contexts, 3))
    emb = rng.normal(size=(k_max, 3))
    logits = x @ emb.T
    mu = np.where(mask, 1.0 / (1.0 + np.exp(-logits)), 0.0)
    uniform = mask / mask.sum(axis=1, keepdims=True)
    logging = 0.7 * _masked_softmax(0.5 * logits, mask) + 0.3 * uniform
    target = _masked_softmax(2.0 * logits, mask)
    # Misspecified on purpose: linear in x*emb_a plus a per-action offset.
    features = np.concatenate(
        [
            x[:, None, :] * emb[None, :, :],
            np.broadcast_to(np.eye(k_max), (n_contexts, k_max, k_max)),
        ],
        axis=2,
    )
    return World(mu, mask, logging, target, features)


def sample(
    world: World, n: int, rng: np.random.Generator
) -> tuple[BanditData, FloatArray, FloatArray]:
    """Log ``n`` decisions of the logging policy; return (data, target_pmf, features)."""
    ctx = rng.integers(world.mu.shape[0], size=n)
    pmf = world.logging[ctx]
    cdf = np.cumsum(pmf, axis=1)
    chosen = np.argmax(cdf > rng.random((n, 1)) * cdf[:, -1:], axis=1)
    rows = np.arange(n)
    rewards = (rng.random(n) < world.mu[ctx, chosen]).astype(np.float64)
    data = BanditData(
        rewards=rewards,
        chosen=chosen,
        propensities=pmf[rows, chosen],
        logging_pmf=pmf,
        action_mask=world.mask[ctx],
    )
    return data, world.target[ctx], world.features[ctx]


REPS = 200
N_ROWS = 3000


@dataclass(frozen=True)
class Simulation:
    truth: float
    estimates: dict[str, list[Estimate]]


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    """``REPS`` independent logged datasets from one world, estimated by every estimator."""
    world = make_world(seed=7)
    rng = np.random.default_rng(2024)
    estimators: list[OffPolicyEstimator] = [IPS(), SNIPS(), DM(), DR(), SNDR(), SwitchDR(tau=2.0)]
    out: dict[str, list[Estimate]] = {e.label: [] for e in estimators}
    for rep in range(REPS):
        data, target, features = sample(world, N_ROWS, rng)
        q_hat = cross_fit_q_hat(features, data, folds=5, ridge=1.0, seed=rep)
        for estimator in estimators:
            out[estimator.label].append(estimator.estimate(data, target, q_hat))
    return Simulation(world.truth, out)


# --------------------------------------------------------------------------- statistical tests


@pytest.mark.parametrize("label", ["SNIPS", "DR", "SNDR"])
def test_95_percent_intervals_cover_the_true_value(simulation: Simulation, label: str) -> None:
    # With nominal coverage 0.95 the number of covering intervals out of REPS=200 is
    # Binomial(200, 0.95): mean 190, sd sqrt(200*0.95*0.05) = 3.1. Requiring >= 180 (90%)
    # leaves 3 sd for chance plus the O(1/n) bias and non-normality at n=3000, while a
    # method with true coverage <= 0.85 would pass with probability < 1e-3.
    estimates = simulation.estimates[label]
    covered = sum(e.ci_low <= simulation.truth <= e.ci_high for e in estimates)
    assert covered >= 0.90 * REPS, f"{label}: {covered}/{REPS} intervals cover"


def test_dr_mean_absolute_error_is_below_its_reported_standard_error(
    simulation: Simulation,
) -> None:
    # For a well-calibrated normal estimator E|V̂ − V| = sqrt(2/π)·SE ≈ 0.80·SE, so the mean
    # absolute error over 200 repetitions falls below the mean reported SE unless the SE is
    # underestimated by ~20% or more.
    estimates = simulation.estimates["DR"]
    mae = np.mean([abs(e.value - simulation.truth) for e in estimates])
    mean_se = np.mean([e.std_error for e in estimates])
    assert mae < mean_se


def test_switch_dr_reported_error_ignores_the_model_error(simulation: Simulation) -> None:
    # Rows with w > 2 fall back on the model: the reported standard error shrinks, but it
    # treats q̂ as fixed, so it understates the real spread of the estimates (its 95%
    # intervals cover only ~80% here). The sd of 200 estimates is known to ~5%.
    switch = simulation.estimates["SwitchDR(tau=2)"]
    dr = simulation.estimates["DR"]
    switch_se = np.mean([e.std_error for e in switch])
    assert switch_se < 0.8 * np.mean([e.std_error for e in dr])
    assert switch_se < 0.85 * np.std([e.value for e in switch], ddof=1)


def test_ips_is_unbiased(simulation: Simulation) -> None:
    values = np.array([e.value for e in simulation.estimates["IPS"]])
    se_of_mean = values.std(ddof=1) / math.sqrt(REPS)
    assert abs(values.mean() - simulation.truth) < 4.0 * se_of_mean


def test_dr_beats_ips_and_dm_is_biased_but_precise(simulation: Simulation) -> None:
    def rmse(label: str) -> float:
        values = np.array([e.value for e in simulation.estimates[label]])
        return float(np.sqrt(np.mean((values - simulation.truth) ** 2)))

    assert rmse("DR") < rmse("IPS")
    assert rmse("SNIPS") < rmse("IPS")
    dm = np.array([e.value for e in simulation.estimates["DM"]])
    # The (misspecified) model's bias dominates DM's spread: its intervals are overconfident.
    assert abs(dm.mean() - simulation.truth) > 4.0 * dm.std(ddof=1) / math.sqrt(REPS)


def test_reported_standard_errors_match_the_spread_of_estimates(simulation: Simulation) -> None:
    # The sd of 200 estimates is known to ~5% (relative sd of a sample sd ≈ 1/sqrt(2·199)).
    for label in ("IPS", "SNIPS", "DR", "SNDR"):
        values = np.array([e.value for e in simulation.estimates[label]])
        mean_se = np.mean([e.std_error for e in simulation.estimates[label]])
        assert 0.8 < mean_se / values.std(ddof=1) < 1.25, label


# --------------------------------------------------------------------------- formulas


@pytest.fixture
def logged() -> tuple[BanditData, FloatArray, FloatArray]:
    world = make_world(seed=1)
    data, target, features = sample(world, 500, np.random.default_rng(3))
    return data, target, cross_fit_q_hat(features, data, seed=0)


def test_formulas_match_plain_numpy(logged: tuple[BanditData, FloatArray, FloatArray]) -> None:
    data, target, q_hat = logged
    rows = np.arange(data.n)
    w = target[rows, data.chosen] / data.propensities
    r = data.rewards
    dm = np.sum(target * q_hat, axis=1)
    resid = r - q_hat[rows, data.chosen]
    expected = {
        IPS(): np.mean(w * r),
        IPS(max_weight=2.0): np.mean(np.minimum(w, 2.0) * r),
        SNIPS(): np.sum(w * r) / np.sum(w),
        DM(): np.mean(dm),
        DR(): np.mean(dm + w * resid),
        SNDR(): np.mean(dm) + np.sum(w * resid) / np.sum(w),
        SwitchDR(tau=2.0): np.mean(dm + np.where(w <= 2.0, w * resid, 0.0)),
    }
    for estimator, value in expected.items():
        assert estimator.estimate(data, target, q_hat).value == pytest.approx(value, rel=1e-12)


def test_special_cases_coincide(logged: tuple[BanditData, FloatArray, FloatArray]) -> None:
    data, target, q_hat = logged
    zeros = np.zeros_like(q_hat)

    def value(estimator: OffPolicyEstimator, q: FloatArray) -> float:
        return estimator.estimate(data, target, q).value

    assert value(SwitchDR(), q_hat) == pytest.approx(value(DR(), q_hat), rel=1e-12)
    assert value(SwitchDR(tau=0.0), q_hat) == pytest.approx(value(DM(), q_hat), rel=1e-12)
    assert value(DR(), zeros) == pytest.approx(value(IPS(), zeros), rel=1e-12)
    assert value(SNDR(), zeros) == pytest.approx(value(SNIPS(), zeros), rel=1e-12)


@pytest.mark.parametrize("estimator", [IPS(), SNIPS(), DM(), DR(), SNDR(), SwitchDR(tau=3.0)])
def test_influence_scores_average_to_the_estimate(
    logged: tuple[BanditData, FloatArray, FloatArray], estimator: OffPolicyEstimator
) -> None:
    data, target, q_hat = logged
    scores = estimator.scores(data, target, q_hat)
    estimate = estimator.estimate(data, target, q_hat)
    psi = scores.influence()
    assert psi.shape == (data.n,)
    assert psi.mean() == pytest.approx(estimate.value, rel=1e-12)
    assert estimate.std_error == pytest.approx(psi.std(ddof=1) / math.sqrt(data.n), rel=1e-12)
    half = estimate.ci_high - estimate.value
    assert half == pytest.approx(1.959964 * estimate.std_error, rel=1e-6)


def test_snips_delta_method_scores() -> None:
    data = BanditData(np.array([1.0, 0.0, 0.5]), np.array([0, 1, 0]), np.array([0.5, 0.5, 0.25]))
    target = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    w = np.array([2.0, 1.0, 2.0])
    v = (2.0 * 1.0 + 0.0 + 2.0 * 0.5) / w.sum()
    psi = SNIPS().scores(data, target).influence()
    np.testing.assert_allclose(psi, v + w * (data.rewards - v) / w.mean())


def test_diagnostics() -> None:
    pmf = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
    data = BanditData(
        rewards=np.array([1.0, 0.0, 1.0, 1.0]),
        chosen=np.array([0, 1, 0, 2]),
        propensities=np.array([0.5, 0.5, 1.0, 0.5]),
        logging_pmf=pmf,
    )
    # Rows 0 and 1 put 0.5 on action 2, which their logging pmf never plays.
    target = np.array([[0.5, 0.0, 0.5], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    est = IPS().estimate(data, target)
    w = np.array([1.0, 1.0, 1.0, 2.0])
    assert est.ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert est.max_weight == 2.0
    assert est.mean_weight == pytest.approx(1.25)
    assert est.unsupported_mass == pytest.approx((0.5 + 0.5) / 4)
    assert (est.n, est.alpha, est.interval, est.estimator) == (4, 0.05, "normal", "IPS")
    no_pmf = dataclasses.replace(data, logging_pmf=None)
    assert math.isnan(IPS().estimate(no_pmf, target).unsupported_mass)


def test_estimate_is_a_frozen_dataclass(logged: tuple[BanditData, FloatArray, FloatArray]) -> None:
    data, target, _ = logged
    est = SNIPS().estimate(data, target)
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.value = 0.0  # type: ignore[misc]
    assert {f.name for f in dataclasses.fields(Estimate)} >= {"value", "ci_low", "ci_high", "ess"}


def test_importance_weights() -> None:
    data = BanditData(np.zeros(2), np.array([1, 0]), np.array([0.25, 0.5]))
    np.testing.assert_allclose(
        importance_weights(data, np.array([[0.5, 0.5], [0.0, 1.0]])), [2.0, 0.0]
    )


def test_rows_with_fewer_actions_are_padded() -> None:
    mask = np.array([[True, True, False], [True, True, True]])
    pmf = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    data = BanditData(np.array([1.0, 0.0]), np.array([1, 2]), np.array([0.5, 0.5]), pmf, mask)
    target = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert IPS().estimate(data, target).value == pytest.approx(1.0)
    assert data.n_actions == 3


# --------------------------------------------------------------------------- invalid input


def _good() -> dict[str, Any]:
    return {
        "rewards": np.array([1.0, 0.0, 1.0]),
        "chosen": np.array([0, 1, 1]),
        "propensities": np.array([0.5, 0.25, 0.25]),
        "logging_pmf": np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.75, 0.25, 0.0]]),
        "action_mask": np.array([[True, True, True], [True, True, True], [True, True, False]]),
    }


def test_good_data_is_accepted() -> None:
    data = BanditData(**_good())
    assert data.n == 3
    assert data.chosen.dtype == np.int64


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"propensities": np.array([0.5, 0.0, 0.25])}, r"propensities must be in \(0, 1\]; row 1"),
        ({"propensities": np.array([0.5, 1.5, 0.25])}, r"propensities must be in \(0, 1\]; row 1"),
        (
            {"propensities": np.array([0.5, 0.25, 0.5])},
            r"propensities must equal logging_pmf.*row 2",
        ),
        ({"chosen": np.array([0, 1, 2])}, r"chosen must be an existing action.*row 2"),
        ({"chosen": np.array([0, 1, 3])}, r"chosen must be < K=3; row 2"),
        ({"chosen": np.array([0, -1, 1])}, r"chosen must be >= 0; row 1"),
        ({"chosen": np.array([0.0, 1.0, 1.0])}, r"chosen must hold integer"),
        ({"rewards": np.array([1.0, np.nan, 1.0])}, r"rewards must be finite; row 1"),
        ({"rewards": np.array([1.0, np.inf, 1.0])}, r"rewards must be finite; row 1"),
        ({"rewards": np.array([1.0, 0.0])}, r"chosen must have shape \(2,\)"),
        ({"rewards": np.ones((3, 1))}, r"rewards must be 1-D"),
        ({"rewards": np.array([])}, r"rewards must hold at least one row"),
        ({"propensities": np.array([0.5, 0.25])}, r"propensities must have shape \(3,\)"),
        ({"logging_pmf": np.full((3, 4), 0.25)}, r"logging_pmf must have shape \(3, 3\)"),
        ({"action_mask": np.ones((2, 3), dtype=bool)}, r"action_mask must have shape \(3, K\)"),
        ({"action_mask": np.ones((3, 3))}, r"action_mask must be boolean"),
        (
            {"logging_pmf": np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.5, 0.25, 0.0]])},
            r"logging_pmf rows must sum to 1.*row 2",
        ),
        (
            {"logging_pmf": np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])},
            r"logging_pmf must be 0 on padded actions; row 2",
        ),
        (
            {"logging_pmf": np.array([[1.0, 0.25, -0.25], [0.5, 0.25, 0.25], [0.75, 0.25, 0.0]])},
            r"logging_pmf must be >= 0; row 0",
        ),
    ],
)
def test_invalid_data_is_rejected(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BanditData(**(_good() | change))


@pytest.mark.parametrize(
    ("target", "match"),
    [
        (
            np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.4, 0.0]]),
            r"target_pmf rows must sum to 1.*row 2",
        ),
        (
            np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5]]),
            r"target_pmf must be 0 on padded actions; row 2",
        ),
        (
            np.array([[1.0, 0.0, 0.0], [1.5, -0.5, 0.0], [1.0, 0.0, 0.0]]),
            r"target_pmf must be >= 0; row 1",
        ),
        (
            np.array([[1.0, 0.0, 0.0], [np.nan, 0.5, 0.5], [1.0, 0.0, 0.0]]),
            r"target_pmf must be finite; row 1",
        ),
        (np.full((3, 2), 0.5), r"target_pmf must have shape \(3, 3\)"),
        (np.full((2, 3), 1 / 3), r"target_pmf must have shape \(3, 3\)"),
        (np.full(3, 1 / 3), r"target_pmf must be 2-D"),
    ],
)
def test_invalid_target_is_rejected(target: FloatArray, match: str) -> None:
    data = BanditData(**_good())
    for estimator in (IPS(), SNIPS()):
        with pytest.raises(ValueError, match=match):
            estimator.estimate(data, target)


def test_target_pmf_width_is_checked_without_logging_pmf() -> None:
    data = BanditData(np.zeros(2), np.array([0, 2]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"target_pmf has 2 actions but chosen goes up to 2"):
        IPS().estimate(data, np.full((2, 2), 0.5))


@pytest.mark.parametrize(
    ("q_hat", "match"),
    [
        (None, r"q_hat is required by DR"),
        (np.zeros((3, 2)), r"q_hat must have the shape of target_pmf \(3, 3\)"),
        (
            np.array([[0.0, 0.0, 0.0], [0.0, np.nan, 0.0], [0.0, 0.0, 0.0]]),
            r"q_hat must be finite; row 1",
        ),
    ],
)
def test_invalid_q_hat_is_rejected(q_hat: FloatArray | None, match: str) -> None:
    data = BanditData(**_good())
    target = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    with pytest.raises(ValueError, match=match):
        DR().estimate(data, target, q_hat)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: IPS(max_weight=0.0), r"max_weight must be > 0"),
        (lambda: SwitchDR(tau=-1.0), r"tau must be >= 0"),
        (lambda: SwitchDR(tau=math.nan), r"tau must be >= 0"),
    ],
)
def test_invalid_hyper_parameters_are_rejected(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_snips_with_no_target_mass_on_logged_actions_fails_loudly() -> None:
    data = BanditData(np.ones(2), np.array([0, 0]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"SNIPS is undefined"):
        SNIPS().estimate(data, np.array([[0.0, 1.0], [0.0, 1.0]]))


# --------------------------------------------------------------------------- reward model


def test_cross_fitted_prediction_of_a_row_ignores_its_own_reward() -> None:
    world = make_world(seed=5)
    data, _, features = sample(world, 300, np.random.default_rng(11))
    base = cross_fit_q_hat(features, data, folds=5, ridge=1.0, seed=3)
    for row in (0, 17, 299):
        rewards = data.rewards.copy()
        rewards[row] += 1000.0
        changed = dataclasses.replace(data, rewards=rewards)
        q_hat = cross_fit_q_hat(features, changed, folds=5, ridge=1.0, seed=3)
        np.testing.assert_allclose(q_hat[row], base[row], rtol=0, atol=1e-9)
        # ... while the rows of the other folds, whose model saw that reward, do move.
        moved = np.abs(q_hat - base).max(axis=1) > 1e-6
        assert 0.7 * data.n < moved.sum() < 0.9 * data.n


def test_cross_fit_matches_a_direct_ridge_fit_on_the_other_folds() -> None:
    world = make_world(seed=5)
    data, _, features = sample(world, 120, np.random.default_rng(4))
    q_hat = cross_fit_q_hat(features, data, folds=3, ridge=0.5, seed=9, fit_intercept=False)
    fold_of = np.random.default_rng(9).permutation(data.n) % 3
    x = features[np.arange(data.n), data.chosen]
    for f in range(3):
        train = fold_of != f
        d = x.shape[1]
        theta = np.linalg.solve(
            x[train].T @ x[train] + 0.5 * np.eye(d), x[train].T @ data.rewards[train]
        )
        np.testing.assert_allclose(q_hat[fold_of == f], features[fold_of == f] @ theta, atol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"features": np.zeros((3, 3))}, r"features must have shape \(3, K, d\)"),
        ({"features": np.zeros((3, 2, 2))}, r"features must have one row per action"),
        ({"features": np.full((3, 3, 2), np.nan)}, r"features must be finite"),
        ({"folds": 1}, r"folds must be in \[2, n=3\]"),
        ({"folds": 4}, r"folds must be in \[2, n=3\]"),
        ({"ridge": -1.0}, r"ridge must be >= 0"),
    ],
)
def test_cross_fit_rejects_invalid_input(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {
        "features": np.zeros((3, 3, 2)),
        "data": BanditData(**_good()),
        "folds": 2,
    }
    with pytest.raises(ValueError, match=match):
        cross_fit_q_hat(**(args | kwargs))

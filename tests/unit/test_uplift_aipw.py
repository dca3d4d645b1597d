"""The uplift report's AIPW scores are the estimators' DR, and its reward model is the
reward-model family's cell means (:mod:`offline_eval.estimators.reward_models`).

The references below are the formulas the uplift module used to spell out itself: the DR
path gives the same scores (to rounding: a sum of products divided once instead of per
term) and the same candidate estimates (bit for bit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from bandit.sim import World, WorldConfig
from bench.bench_uplift import SimulatedLog, simulated_log, stage_policy
from offline_eval.estimators import DR, BanditData
from offline_eval.estimators.reward_models import CellMeans, fold_assignment
from offline_eval.uplift.analysis import UpliftAnalysis, UpliftSettings

FloatArray = NDArray[np.float64]
KEYS = ("discount_20@sms", "discount_10@email", "free_shipping@web_banner", "content@in_app")


@dataclass(frozen=True)
class Fitted:
    log: SimulatedLog
    analysis: UpliftAnalysis


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    world = World(seed=5, config=WorldConfig(n_customers=800))
    events = list(world.events(3000))
    by_key = {t.ref.key: t for t in world.treatments()}
    treatments = (world.treatments()[0], *(by_key[k] for k in KEYS))
    pmf = stage_policy(world, events, len(treatments), control=0.25)
    sms = np.array([t.channel is not None and t.channel.id == "sms" for t in treatments])
    consent = np.array([bool(e.customer.features["consent_sms"]) for e in events])
    eligible = ~(sms[None, :] & ~consent[:, None])  # some rows cannot get sms at all
    log = simulated_log(
        world, events, treatments, pmf, np.random.default_rng(1), eligible=eligible,
        holdout_share=0.1,
    )  # fmt: skip
    return Fitted(log, UpliftAnalysis.fit(log.log, UpliftSettings(folds=4, seed=2)))


def _reference_psi(a: UpliftAnalysis, members: list[int]) -> FloatArray:
    """The AIPW score as the uplift module wrote it before it called DR."""
    mu_g = np.zeros(a.m)
    num = np.zeros(a.m)
    for t in members:
        mu_g += a.mu[t]
        num += a.mu[t] * a.q_of(t)
    member = np.zeros(len(a.refs) + 1, dtype=bool)
    member[members] = True
    in_group = member[a.chosen]
    with np.errstate(divide="ignore", invalid="ignore"):
        psi: FloatArray = (num + np.where(in_group, a.rewards - a.q_logged, 0.0)) / mu_g
    psi[mu_g <= 0.0] = np.nan
    return psi


def _groups(a: UpliftAnalysis) -> list[list[int]]:
    singles = [[t] for t in range(len(a.refs))]
    offers: dict[str, list[int]] = {}
    channels: dict[str, list[int]] = {}
    for t, ref in enumerate(a.refs):
        if t:
            offers.setdefault(ref.offer_id, []).append(t)
            channels.setdefault(ref.channel_id, []).append(t)
    return singles + list(offers.values()) + list(channels.values()) + [list(range(len(a.refs)))]


def test_aipw_scores_are_the_dr_scores(fitted: Fitted) -> None:
    a = fitted.analysis
    groups = _groups(a)
    assert len(groups) > len(a.refs)
    unsupported = 0
    for members in groups:
        got = a._psi(members)
        want = _reference_psi(a, members)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-12, atol=1e-12)
        unsupported += int((~ok).sum())
    assert unsupported > 0  # the sms treatments had no support on some rows


def test_the_control_score_is_dr_of_all_control(fitted: Fitted) -> None:
    """ψ(control) is DR of "always control" over the global treatments, row for row."""
    a = fitted.analysis
    k = len(a.refs)
    target = np.zeros((a.m, k + 1))
    target[:, 0] = 1.0
    q_hat = np.stack([a.q_of(t) for t in range(k + 1)], axis=1)
    data = BanditData(a.rewards, a.chosen, a.propensity)
    np.testing.assert_allclose(
        a.psi_control, DR().scores(data, target, q_hat).additive, rtol=1e-12, atol=1e-12
    )


def test_candidate_estimates_are_dr_bit_for_bit(fitted: Fitted) -> None:
    log, a = fitted.log, fitted.analysis
    rng = np.random.default_rng(4)
    raw = rng.random(log.log.pmf.shape) * (log.log.pmf > 0)
    target = raw / raw.sum(axis=1, keepdims=True)
    result = a.policy_incremental(target, "random")
    keep = a.keep
    q_local = a.q_table[a.fold[:, None], a.gmap, a.cell[:, None]]
    w = target[keep][np.arange(a.m), a.chosen_local] / a.propensity
    psi = np.einsum("ij,ij->i", target[keep], q_local) + w * (a.rewards - a.q_logged)
    assert result.policy_value == float(np.mean(psi))
    assert result.per_decision == float(np.mean(psi - a.psi_control))
    dr = DR().estimate(BanditData(a.rewards, a.chosen_local, a.propensity), target[keep], q_local)
    assert math.isclose(result.policy_value, dr.value, rel_tol=1e-15)


def _reference_cell_means(
    chosen: NDArray[np.int64],
    rewards: FloatArray,
    seg: NDArray[np.int64],
    trig: NDArray[np.int64],
    n_actions: int,
    model: CellMeans,
) -> FloatArray:
    """The shrinkage hierarchy written out with loops (slow, for small data)."""
    k = model.prior_strength
    fold = fold_assignment(len(chosen), model.folds, model.seed)
    out = np.empty(len(chosen))
    for i in range(len(chosen)):
        other = fold != fold[i]
        r, c, s, t = rewards[other], chosen[other], seg[other], trig[other]
        grand = float(r.mean())
        a = chosen[i]
        top_rows = c == a
        top = (r[top_rows].sum() + k * grand) / (top_rows.sum() + k) if top_rows.any() else grand
        mid_rows = top_rows & (s == seg[i])
        mid = (r[mid_rows].sum() + k * top) / (mid_rows.sum() + k) if mid_rows.any() else top
        cell_rows = mid_rows & (t == trig[i])
        out[i] = (r[cell_rows].sum() + k * mid) / (cell_rows.sum() + k) if cell_rows.any() else mid
    return out


@pytest.mark.parametrize("prior_strength", [0.0, 3.0, 20.0])
def test_cell_means_follow_the_shrinkage_hierarchy(prior_strength: float) -> None:
    rng = np.random.default_rng(8)
    n = 300
    chosen = rng.integers(0, 4, n)
    seg = rng.integers(0, 3, n)
    trig = rng.integers(0, 2, n)
    rewards = 1.0 * chosen + 0.5 * seg - trig + rng.normal(0.0, 1.0, n)
    model = CellMeans(prior_strength=prior_strength, folds=3, seed=1)
    fit = model.fit(chosen, rewards, seg, trig, n_actions=4)
    want = _reference_cell_means(chosen, rewards, seg, trig, 4, model)
    np.testing.assert_allclose(fit.q(chosen), want, rtol=1e-9, atol=1e-9)
    assert (fit.table[:, 4] == 0.0).all()  # the padding slot


def test_both_reward_models_share_the_fold_assignment(fitted: Fitted) -> None:
    a = fitted.analysis
    s: Any = a.settings
    np.testing.assert_array_equal(a.fold, fold_assignment(a.m, s.folds, s.seed))

"""Statistical behaviour of the evaluation pipeline on simulator logs with a known truth.

The contexts are a fixed set of simulated events (with the eligibility a CRM applies); every
repetition redraws the logged treatments from a known logging pmf and the outcomes from the
world, so the logged propensities are exactly the sampling probabilities. The target
policy's true value on these contexts is ``world.true_value``: the estimators are unbiased
for it given the contexts, and their intervals should cover it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from bandit.sim import World, WorldConfig, WorldEvent
from bandit.sim.driver import eligible_mask
from bandit.types import Treatment
from offline_eval.estimators import IPS
from offline_eval.io.logs import CUSTOMER_PREFIX, TRIGGER_PREFIX, LoggedBandit
from offline_eval.replay.policies import parse_treatment
from offline_eval.replay.rules import RuleTable
from offline_eval.study.study import RewardModel, Study

FloatArray = NDArray[np.float64]

N_EVENTS = 3000
REPETITIONS = 100

# What the logging policy plays on purpose per stage (the rest is exploration and control).
LOGGING_RULE = {
    "new": "discount_10@sms",
    "active": "content@web_banner",
    "at_risk": "discount_20@sms",
    "lapsed": "discount_20@email",
    "vip": "double_points@email",
}
# The campaign evaluated: agrees with the logging rule on some stages, not on others.
TARGET_RULES = {
    "name": "campaign",
    "rules": [
        {"when": {"customer.stage": {"in": ["at_risk", "lapsed"]}}, "then": "discount_20@sms"},
        {"when": {"customer.stage": "active"}, "then": "content@web_banner"},
    ],
    "default": "control",
}
# The reward model a data scientist would configure here: the key features (faster than
# every column, which the default uses).
KEY_FEATURES = (
    "c.stage",
    "trigger_type",
    "c.age_band",
    "c.device",
    "c.has_app",
    "c.consent_sms",
    "c.monetary",
    "c.frequency",
)


@dataclass
class WorldLog:
    """Fixed contexts of a world with their catalogues; :meth:`draw` logs one repetition."""

    world: World
    events: list[WorldEvent]
    frame: pd.DataFrame
    catalogues: dict[int, tuple[Treatment, ...]]
    columns: NDArray[np.intp]
    """``(n, K)`` column of each catalogue entry in ``world.treatments()`` (0 where padded)."""
    sizes: NDArray[np.int64]

    def bandit(
        self,
        pmf: FloatArray,
        chosen: NDArray[np.int64],
        rewards: FloatArray,
        **extra: Any,
    ) -> LoggedBandit:
        n = len(self.events)
        frame = self.frame.assign(
            chosen=chosen,
            propensity=pmf[np.arange(n), chosen],
            reward=rewards,
            is_control=chosen == 0,
            **extra,
        )
        return LoggedBandit(frame, pmf, self.catalogues, source="world")

    def draw(self, pmf: FloatArray, rng: np.random.Generator) -> LoggedBandit:
        """Sample treatments from ``pmf`` and outcomes from the world."""
        n = len(self.events)
        u = rng.random(n)
        chosen = np.minimum((np.cumsum(pmf, axis=1) < u[:, None]).sum(axis=1), self.sizes - 1)
        cols = self.columns[np.arange(n), chosen]
        outcome = self.world.sample_outcomes(self.events, cols, rng)
        return self.bandit(pmf, chosen.astype(np.int64), outcome.net_value)

    def full(self, pmf: FloatArray) -> FloatArray:
        """A catalogue-aligned pmf spread over all of ``world.treatments()``."""
        out = np.zeros((len(self.events), len(self.world.treatments())))
        np.add.at(out, (np.arange(len(self.events))[:, None], self.columns), pmf)
        return out


def world_log(seed: int, n: int, customers: int = 2000) -> WorldLog:
    """Contexts of ``n`` events with per-row eligible catalogues (control first)."""
    world = World(seed=seed, config=WorldConfig(n_customers=customers))
    events = list(world.events(n))
    treatments = world.treatments()
    ids: dict[tuple[bool, ...], int] = {}
    catalogues: dict[int, tuple[Treatment, ...]] = {}
    rows: list[dict[str, Any]] = []
    masks = []
    for i, e in enumerate(events):
        mask = eligible_mask(world, e)
        key = tuple(bool(x) for x in mask)
        if key not in ids:
            ids[key] = len(ids)
            catalogues[ids[key]] = tuple(t for t, ok in zip(treatments, key, strict=True) if ok)
        masks.append(mask)
        row: dict[str, Any] = {
            "seq": i + 1,
            "event_id": e.event_id,
            "decided_at": e.time,
            "customer_id": e.customer.id,
            "trigger_type": e.trigger.type,
            "catalogue_id": ids[key],
            "n_treatments": int(mask.sum()),
            "holdout": False,
            "policy": "test-logging",
            "closed": True,
        }
        row.update({CUSTOMER_PREFIX + k: v for k, v in e.customer.features.items()})
        row.update({TRIGGER_PREFIX + k: v for k, v in e.trigger.features.items()})
        rows.append(row)
    k = max(len(c) for c in catalogues.values())
    columns = np.zeros((n, k), dtype=np.intp)
    for i, mask in enumerate(masks):
        cols = np.flatnonzero(mask)
        columns[i, : len(cols)] = cols
    frame = pd.DataFrame.from_records(rows)
    sizes = frame["n_treatments"].to_numpy(dtype=np.int64)
    return WorldLog(world, events, frame, catalogues, columns, sizes)


def logging_pmf(log: WorldLog) -> FloatArray:
    """0.3 uniform over the candidates + 0.3 control + 0.4 on the stage's logging rule."""
    k = log.columns.shape[1]
    mask = np.arange(k)[None, :] < log.sizes[:, None]
    pmf = 0.3 * mask / log.sizes[:, None] + 0.0
    pmf[:, 0] += 0.3
    for i, e in enumerate(log.events):
        ref = parse_treatment(LOGGING_RULE[str(e.customer.features["stage"])])
        column = log.world.treatment_index(ref)
        hit = np.flatnonzero(log.columns[i, : log.sizes[i]] == column)
        pmf[i, hit[0] if hit.size else 0] += 0.4
    return pmf


@pytest.fixture(scope="module")
def log() -> WorldLog:
    return world_log(seed=11, n=N_EVENTS)


def test_snips_and_dr_intervals_cover_the_true_value(log: WorldLog) -> None:
    """≥ 90 of 100 seeded repetitions cover the truth with 95% intervals (SNIPS and DR).

    With exact 95% coverage the count of covering repetitions is Binomial(100, 0.95): mean
    95, sd 2.2, so 90 sits 2.3 sd below. n = 3000 rows keep the normal approximation honest:
    the campaign's treatments get ≥ 0.3/K of the logging mass (weights ≤ K/0.3 ≈ 140 on the
    rare disagreements, ≤ 2.5 where the campaign and the logging rule agree), so a few
    hundred rows carry each weight. (A VIP rule with weights ~40 on VIP baskets of ~300 EUR
    needs far more rows: its normal intervals under-cover at this n.) DR's mean error over the
    repetitions has a standard deviation of about s.e./√100 = s.e./10, so requiring it below
    one reported standard error leaves a wide margin for an unbiased estimator while catching
    any systematic bias of that size.
    """
    pmf = logging_pmf(log)
    table = RuleTable.from_dict(TARGET_RULES)
    target = table.target(log.bandit(pmf, np.zeros(N_EVENTS, np.int64), np.zeros(N_EVENTS))).pmf
    truth = log.world.true_value(log.events, log.full(target))
    covered = {"SNIPS": 0, "DR": 0}
    errors, std_errors = [], []
    for rep in range(REPETITIONS):
        lb = log.draw(pmf, np.random.default_rng([2024, rep]))
        study = Study(lb, estimators="snips,dr", reward_model=RewardModel(features=KEY_FEATURES))
        result = study.compare([table], include_logged=False)
        ests = result[table.name].estimates
        for name in covered:
            covered[name] += ests[name].ci_low <= truth <= ests[name].ci_high
        errors.append(ests["DR"].value - truth)
        std_errors.append(ests["DR"].std_error)
    assert covered["SNIPS"] >= 90, covered
    assert covered["DR"] >= 90, covered
    assert abs(np.mean(errors)) < np.mean(std_errors), (np.mean(errors), np.mean(std_errors))


def test_the_logged_policy_is_worth_its_mean_reward(log: WorldLog) -> None:
    lb = log.draw(logging_pmf(log), np.random.default_rng(7))
    result = Study(lb, estimators="ips,snips").compare([])
    logged = result["logged"]
    mean = float(lb.frame["reward"].mean())
    assert result.logged_value == pytest.approx(mean)
    assert logged.estimate("IPS").value == pytest.approx(mean)
    assert logged.estimate("SNIPS").value == pytest.approx(mean)


def test_holdout_rows_are_excluded_and_reported(log: WorldLog) -> None:
    lb = log.draw(logging_pmf(log), np.random.default_rng(8))
    holdout = np.zeros(lb.n, dtype=bool)
    holdout[::10] = True
    pmf = lb.pmf.copy()
    pmf[holdout] = 0.0
    pmf[holdout, 0] = 1.0
    frame = lb.frame.assign(holdout=holdout, chosen=np.where(holdout, 0, lb.frame["chosen"]))
    frame["propensity"] = pmf[np.arange(lb.n), frame["chosen"].to_numpy()]
    result = Study(LoggedBandit(frame, pmf, lb.catalogues), estimators="ips").compare([])
    assert result.evaluated == lb.n - holdout.sum()
    assert result.holdout_excluded == holdout.sum()
    assert any("holdout" in note for note in result.notes())
    assert "holdout" in result.summary()


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        ("zero", r"propensities must be in \(0, 1\]; row 3"),
        ("mislabelled", r"propensities must equal logging_pmf\[i, chosen\[i\]\].*row 5"),
        ("nan_reward", r"rewards must be finite|no decision"),
    ],
)
def test_a_broken_log_fails_loudly(log: WorldLog, corrupt: str, match: str) -> None:
    lb = log.draw(logging_pmf(log), np.random.default_rng(9))
    frame = lb.frame.copy()
    if corrupt == "zero":
        frame.loc[3, "propensity"] = 0.0
    elif corrupt == "mislabelled":
        halved = frame["propensity"].to_numpy(dtype=np.float64).copy()
        halved[5] /= 2
        frame["propensity"] = halved
    else:
        frame["reward"] = np.nan
    broken = LoggedBandit(frame, lb.pmf, lb.catalogues)
    with pytest.raises(ValueError, match=match):
        Study(broken, estimators="ips").compare([])
    if corrupt != "nan_reward":
        with pytest.raises(ValueError, match=match):
            IPS().estimate(broken.bandit_data(), lb.pmf)

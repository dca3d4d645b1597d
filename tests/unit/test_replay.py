"""Counterfactual replay of VW settings: progressive validation and its estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bandit.learner import VWPolicy, describe_policy, vw_arguments
from bandit.sim.driver import SimulationConfig, simulate_in_process
from bandit.vwformat import reward_to_cost
from offline_eval.io.logs import LoggedBandit, load_sqlite
from offline_eval.replay.policies import catalogue_lines, shared_lines
from offline_eval.replay.vw_replay import VWReplay, progressive_replay, settings_grid
from offline_eval.study.study import Study
from tests.unit.test_eval_statistics import world_log

SCALE = 0.01


@pytest.fixture(scope="module")
def lb(tmp_path_factory: pytest.TempPathFactory) -> LoggedBandit:
    data = tmp_path_factory.mktemp("sim")
    config = SimulationConfig(
        seed=9, customers=400, decisions=1500, policy="vw", exploration="--epsilon 0.2"
    )
    simulate_in_process(config, data_dir=data)
    return load_sqlite(data, progress=False)


def test_predict_then_learn_equals_predict_followed_by_learn(lb: LoggedBandit) -> None:
    args = vw_arguments("--squarecb", ["co", "ch"], seed=1)
    fast = progressive_replay(args, lb)
    seen: list[int] = []
    slow = progressive_replay(args, lb, on_row=seen.append)
    np.testing.assert_allclose(fast.pmf, slow.pmf, atol=1e-7)
    assert fast.learned == slow.learned == lb.n
    assert seen == np.argsort(lb.frame["seq"].to_numpy(), kind="stable").tolist()
    a, b = VWPolicy(args, fast.model), VWPolicy(args, slow.model)
    shared, actions = shared_lines(lb), catalogue_lines(lb)
    for i in range(0, lb.n, 50):
        cat = actions[int(lb.frame["catalogue_id"].iloc[i])]
        assert a.predict(shared[i], cat) == pytest.approx(b.predict(shared[i], cat), abs=1e-7)


def test_a_row_is_predicted_before_its_reward_is_learned(lb: LoggedBandit) -> None:
    """Row i's target pmf must not depend on row i's reward (nor on any later one)."""
    args = vw_arguments("--epsilon 0.1", ["co"], seed=2)
    base = progressive_replay(args, lb).pmf
    i = 300
    changed = lb.frame.copy()
    changed.loc[i:, "reward"] = changed.loc[i:, "reward"] + 500.0
    after = progressive_replay(args, LoggedBandit(changed, lb.pmf, lb.catalogues)).pmf
    np.testing.assert_array_equal(after[: i + 1], base[: i + 1])
    assert not np.allclose(after[i + 1 :], base[i + 1 :])  # ... but later rows learn from it


def test_open_decisions_are_predicted_and_not_learned(lb: LoggedBandit) -> None:
    frame = lb.frame.copy()
    frame.loc[10:19, "closed"] = False
    frame.loc[10:19, "reward"] = np.nan
    run = progressive_replay(
        vw_arguments("--epsilon 0.1", [], seed=0), LoggedBandit(frame, lb.pmf, lb.catalogues)
    )
    assert run.learned == lb.n - 10
    np.testing.assert_allclose(run.pmf.sum(axis=1), 1.0)


def test_replaying_an_online_learner_reproduces_its_log() -> None:
    """A log written by an online VW learner (predict, sample, learn at once) is reproduced
    exactly by replaying its settings: same pmfs, so the replay's value is the on-policy
    value (the mean reward) and every importance weight is 1."""
    log = world_log(seed=4, n=600, customers=300)
    args = vw_arguments("--epsilon 0.1", ["co", "ch"], seed=7)
    learner = VWPolicy(args)
    zero = np.zeros(600, dtype=np.int64)
    lb0 = log.bandit(np.eye(log.columns.shape[1])[zero], zero, np.zeros(600))
    shared, actions = shared_lines(lb0), catalogue_lines(lb0)
    rng = np.random.default_rng(0)
    pmf = np.zeros(log.columns.shape)
    chosen = np.zeros(600, dtype=np.int64)
    rewards = np.zeros(600)
    treatments = log.world.treatments()
    for i, event in enumerate(log.events):
        cat = actions[int(lb0.frame["catalogue_id"].iloc[i])]
        p = np.array(learner.predict(shared[i], cat))
        p = 0.9 * p / p.sum()
        p[0] += 0.1  # the service's control share
        pmf[i, : len(p)] = p
        chosen[i] = min(int((np.cumsum(p) < rng.random()).sum()), len(p) - 1)
        treatment = treatments[log.columns[i, chosen[i]]]
        rewards[i] = log.world.sample_outcome(event, treatment).net_value
        learner.learn(
            shared[i], cat, int(chosen[i]), reward_to_cost(rewards[i], SCALE), float(p[chosen[i]])
        )
    lb = log.bandit(pmf, chosen, rewards, policy=describe_policy(args))
    replay = VWReplay.logged(lb, control_share=0.1, seed=7)
    assert replay.vw_args == args
    target = replay.target(lb)
    np.testing.assert_allclose(target.pmf, pmf, atol=1e-6)
    result = Study(lb, estimators="ips,snips,dr").compare([replay])
    assert result[replay.name].estimate("IPS").value == pytest.approx(rewards.mean(), rel=1e-5)
    assert result[replay.name].estimate("IPS").max_weight == pytest.approx(1.0, abs=1e-4)


def test_replaying_the_services_settings_is_close_to_the_logged_value(lb: LoggedBandit) -> None:
    """The service learned with attribution delay and published weights every 500 learns;
    the replay learns at once, so its pmfs differ a little, and its estimated value must
    agree with the logged on-policy value within their combined 3-sigma noise."""
    replay = VWReplay.logged(lb, control_share=0.05)
    result = Study(lb, estimators="dr,snips").compare([replay])
    dr = result[replay.name].estimate("DR")
    gap = abs(dr.value - result.logged_value)
    assert gap < 3 * math.hypot(dr.std_error, result.logged_std_error), (gap, dr)
    assert result[replay.name].curves["running.DR"][-1][0] == result.evaluated


def test_search_ranks_settings_by_the_dr_lower_bound(lb: LoggedBandit) -> None:
    grid = settings_grid(["--epsilon 0.1", "--squarecb"], [(), ("co",)], [0.5])
    result = Study(lb, estimators="snips,dr").search(grid, baselines=[])
    assert result.results[0].name == "logged"
    ranked = result.results[1:]
    assert {r.name for r in ranked} == {g.name for g in grid}
    lows = [r.estimate("DR").ci_low for r in ranked]
    assert lows == sorted(lows, reverse=True)
    assert all(r.model is not None and r.learned == lb.n for r in ranked)
    assert result.best("DR").name == ranked[0].name
    assert set(ranked[0].curves) == {"running.SNIPS", "running.DR"}


@pytest.mark.parametrize(
    ("spec", "args"),
    [
        ("--squarecb", ["--squarecb"]),
        ("vw:--epsilon 0.05 -q co -q ch", ["--epsilon", "0.05", "-q", "co", "-q", "ch"]),
        ("--cb_explore_adf --quiet --random_seed 4 -qco --learning_rate 0.25", None),
    ],
)
def test_vw_settings_parse(spec: str, args: list[str] | None) -> None:
    replay = VWReplay.parse(spec)
    if args is not None:
        assert replay.vw_args[4:] == args
    else:
        assert replay.seed == 4
        assert replay.interactions == ("co",)
        assert replay.learning_rate == 0.25
        assert replay.vw_args[-2:] == ["-l", "0.25"]


def test_logged_settings_need_one_vw_policy(lb: LoggedBandit) -> None:
    frame = lb.frame.copy()
    frame.loc[:5, "policy"] = "vw:--squarecb"
    with pytest.raises(ValueError, match="holds 2 VW policies"):
        VWReplay.logged(LoggedBandit(frame, lb.pmf, lb.catalogues))

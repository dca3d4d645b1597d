"""Offline: the uplift policy replayed through a log, and saved uplift models scored on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bandit.checkpoint import Checkpoint, CheckpointStore
from bandit.sim.driver import SimulationConfig, simulate_in_process
from bandit.uplift import UpliftPolicy, uplift_arguments
from offline_eval.io.logs import LoggedBandit, load_sqlite
from offline_eval.replay.policies import SavedModel
from offline_eval.replay.uplift_replay import UpliftReplay, log_contexts
from offline_eval.study.study import parse_policy


@pytest.fixture(scope="module")
def lb(tmp_path_factory: pytest.TempPathFactory) -> LoggedBandit:
    data = tmp_path_factory.mktemp("sim")
    simulate_in_process(SimulationConfig(seed=6, customers=300, decisions=900), data_dir=data)
    return load_sqlite(data, progress=False)


def _check_pmf(lb: LoggedBandit, pmf: np.ndarray) -> None:
    assert pmf.shape == lb.pmf.shape
    np.testing.assert_allclose(pmf.sum(axis=1), 1.0, atol=1e-9)
    assert (pmf >= 0).all()
    assert (pmf[~lb.action_mask()] == 0).all()


def test_the_simulated_log_was_written_by_the_uplift_policy(lb: LoggedBandit) -> None:
    policies = set(lb.frame["policy"].unique().tolist()) - {"holdout"}
    assert policies
    assert all(str(p).startswith("uplift:") for p in policies)


def test_the_replay_scores_each_row_before_learning_it(lb: LoggedBandit) -> None:
    replay = parse_policy("uplift:--explore 0.2", lb=lb)
    assert isinstance(replay, UpliftReplay)
    target = replay.target(lb)
    _check_pmf(lb, target.pmf)
    assert target.learned == int(lb.frame["closed"].sum())
    # Before the first publication the model knows nothing: 0.8 on control, 0.2 spread.
    order = np.argsort(lb.frame["seq"].to_numpy(), kind="stable")
    first = order[0]
    k = int(lb.frame["n_treatments"].iloc[first])
    expected = np.full(k, 0.2 / k)
    expected[0] += 0.8
    np.testing.assert_allclose(target.pmf[first, :k], expected, atol=1e-12)
    # What it learned is what a policy that learns the closed rows in seq order holds.
    again = UpliftPolicy.from_args(replay.args, target.model)
    assert again.learned == target.learned


def test_a_saved_uplift_model_scores_like_the_decider(tmp_path: Path, lb: LoggedBandit) -> None:
    args = uplift_arguments("", seed=2)
    learner = UpliftPolicy.from_args(args)
    ctx = log_contexts(lb)
    frame = lb.frame
    for i in range(lb.n):
        cat = lb.catalogues[int(frame["catalogue_id"].iloc[i])]
        revenue = float(frame["revenue"].iloc[i])
        learner.learn(ctx[i], cat[int(frame["chosen"].iloc[i])], revenue, revenue > 0)
    model = learner.serialize()
    path = CheckpointStore(tmp_path).save(Checkpoint(1, 0, learner.learned, args, 0.0, model))
    target = SavedModel(str(path)).target(lb)
    _check_pmf(lb, target.pmf)
    assert target.vw_args == tuple(args)
    decider = UpliftPolicy.from_args(args, model)
    for i in range(0, lb.n, 37):
        cat = lb.catalogues[int(frame["catalogue_id"].iloc[i])]
        np.testing.assert_allclose(
            target.pmf[i, : len(cat)], decider.scores(ctx[i], cat), atol=1e-12
        )


def test_bad_uplift_options_are_refused_when_parsed() -> None:
    with pytest.raises(ValueError, match="unknown uplift options"):
        parse_policy("uplift:--kapa 3")

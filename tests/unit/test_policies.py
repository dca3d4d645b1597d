"""Target policies: pmfs aligned with the log's catalogues, rule tables, saved models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bandit.checkpoint import Checkpoint, CheckpointStore
from bandit.learner import VWPolicy, vw_arguments
from bandit.sim.driver import SimulationConfig, simulate_in_process
from bandit.types import CONTROL, TreatmentRef
from bandit.vwformat import action_lines, shared_line
from offline_eval.io.logs import LoggedBandit, contexts, load_sqlite
from offline_eval.replay.policies import (
    AllControl,
    FixedTreatment,
    LoggedPolicy,
    SavedModel,
    Uniform,
    mix_control_share,
    parse_treatment,
    shared_lines,
    treatment_matrix,
)
from offline_eval.replay.rules import RuleTable
from offline_eval.replay.vw_replay import VWReplay
from offline_eval.study.study import parse_estimators, parse_policy


@pytest.fixture(scope="module")
def lb(tmp_path_factory: pytest.TempPathFactory) -> LoggedBandit:
    data = tmp_path_factory.mktemp("sim")
    simulate_in_process(SimulationConfig(seed=5, customers=300, decisions=400), data_dir=data)
    return load_sqlite(data, progress=False)


def _refs(lb: LoggedBandit, pmf: np.ndarray, i: int) -> dict[str, float]:
    cat = lb.catalogues[int(lb.frame["catalogue_id"].iloc[i])]
    return {t.ref.key: float(p) for t, p in zip(cat, pmf[i], strict=False) if p > 0}


def _check_pmf(lb: LoggedBandit, pmf: np.ndarray) -> None:
    assert pmf.shape == lb.pmf.shape
    np.testing.assert_allclose(pmf.sum(axis=1), 1.0, atol=1e-9)
    assert (pmf >= 0).all()
    assert (pmf[~lb.action_mask()] == 0).all()


def test_shared_lines_equal_the_per_row_path(lb: LoggedBandit) -> None:
    lines = shared_lines(lb)
    for i in range(lb.n):
        customer, trig = contexts(lb, i)
        assert lines[i] == shared_line(customer, str(lb.frame["trigger_type"].iloc[i]), trig)


def test_treatment_matrix_names_every_catalogue_entry(lb: LoggedBandit) -> None:
    refs, matrix = treatment_matrix(lb)
    assert refs[0] == CONTROL
    for i in range(0, lb.n, 37):
        cat = lb.catalogues[int(lb.frame["catalogue_id"].iloc[i])]
        assert [refs[j] for j in matrix[i, : len(cat)]] == [t.ref for t in cat]
        assert (matrix[i, len(cat) :] == -1).all()


def test_simple_policies(lb: LoggedBandit) -> None:
    logged = LoggedPolicy().target(lb)
    np.testing.assert_array_equal(logged.pmf, lb.pmf)
    uniform = Uniform().target(lb).pmf
    _check_pmf(lb, uniform)
    sizes = lb.frame["n_treatments"].to_numpy()
    np.testing.assert_allclose(uniform[:, 0], 1.0 / sizes)
    control = AllControl().target(lb).pmf
    _check_pmf(lb, control)
    assert all(_refs(lb, control, i) == {"control": 1.0} for i in range(lb.n))


def test_fixed_treatment_falls_back_to_control_where_it_was_not_offered(lb: LoggedBandit) -> None:
    policy = FixedTreatment.parse("discount_20@sms")
    target = policy.target(lb)
    _check_pmf(lb, target.pmf)
    offered = 0
    for i in range(lb.n):
        cat = lb.catalogues[int(lb.frame["catalogue_id"].iloc[i])]
        if TreatmentRef("discount_20", "sms") in {t.ref for t in cat}:
            offered += 1
            assert _refs(lb, target.pmf, i) == {"discount_20@sms": 1.0}
        else:
            assert _refs(lb, target.pmf, i) == {"control": 1.0}
    assert 0 < offered < lb.n
    assert f"{lb.n - offered} of {lb.n} decisions" in target.notes[0]
    with pytest.raises(ValueError, match="not a candidate anywhere"):
        FixedTreatment.parse("nope@sms").target(lb)


RULES: dict[str, Any] = {
    "name": "campaign",
    "rules": [
        {"name": "sms win-back", "when": {"customer.stage": "at_risk"}, "then": "discount_20@sms"},
        {
            "name": "at-risk without sms",
            "when": {"customer.stage": {"in": ["at_risk", "lapsed"]}},
            "then": "discount_20@email",
        },
        {
            "when": {"trigger.type": "cart_abandoned", "trigger.cart_value": {"<": 45}},
            "then": "free_shipping@web_banner",
        },
        {"when": {"customer.stage": "vip"}, "then": {"double_points@email": 3, "control": 1}},
    ],
    "default": "content@web_banner",
}


def test_rule_table_first_applicable_rule_wins(lb: LoggedBandit) -> None:
    table = RuleTable.from_dict(RULES)
    target = table.target(lb)
    _check_pmf(lb, target.pmf)
    f = lb.frame
    for i in range(lb.n):
        cat = {t.ref.key for t in lb.catalogues[int(f["catalogue_id"].iloc[i])]}
        stage, kind, cart = (
            f["c.stage"].iloc[i],
            f["trigger_type"].iloc[i],
            f["t.cart_value"].iloc[i],
        )
        if stage == "at_risk" and "discount_20@sms" in cat:
            expected = {"discount_20@sms": 1.0}
        elif stage in ("at_risk", "lapsed") and "discount_20@email" in cat:
            expected = {"discount_20@email": 1.0}
        elif kind == "cart_abandoned" and cart < 45 and "free_shipping@web_banner" in cat:
            expected = {"free_shipping@web_banner": 1.0}
        elif stage == "vip" and "double_points@email" in cat:
            expected = {"double_points@email": 0.75, "control": 0.25}
        elif stage == "vip":
            expected = {"control": 1.0}  # the split's eligible part
        elif "content@web_banner" in cat:
            expected = {"content@web_banner": 1.0}
        else:
            expected = {"control": 1.0}
        assert _refs(lb, target.pmf, i) == pytest.approx(expected), i
    assert any(n.startswith("sms win-back:") for n in target.notes)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"customer.stage": "vip"}, lambda f: f["c.stage"] == "vip"),
        ({"customer.stage": {"!=": "vip"}}, lambda f: f["c.stage"] != "vip"),
        ({"customer.ltv": {">=": 1000}}, lambda f: f["c.ltv"] >= 1000),
        (
            {"customer.ltv": {"gt": 1000, "le": 5000}},
            lambda f: (f["c.ltv"] > 1000) & (f["c.ltv"] <= 5000),
        ),
        ({"customer.has_app": True}, lambda f: f["c.has_app"] == True),  # noqa: E712
        ({"trigger.type": {"not_in": ["app_login"]}}, lambda f: f["trigger_type"] != "app_login"),
        ({"trigger.cart_value": {"exists": True}}, lambda f: f["t.cart_value"].notna()),
        ({"trigger.cart_value": {"exists": False}}, lambda f: f["t.cart_value"].isna()),
        ({"trigger.cart_value": {"<": 50}}, lambda f: f["t.cart_value"] < 50),
        ({"customer.unknown": "x"}, lambda f: f["c.stage"] != f["c.stage"]),
    ],
)
def test_rule_conditions(lb: LoggedBandit, when: dict[str, Any], expected: Any) -> None:
    table = RuleTable.from_dict({"rules": [{"when": when, "then": "control"}], "default": "x@sms"})
    mask = np.ones(lb.n, dtype=bool)
    for c in table.rules[0].conditions:
        mask &= c.mask(lb.frame)
    np.testing.assert_array_equal(mask, expected(lb.frame).to_numpy(dtype=bool))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([], "a rule table is an object"),
        ({"rules": {}}, "'rules' must be a list"),
        ({"rules": [], "oops": 1}, "unknown rule table keys: oops"),
        ({"rules": [{"when": {}}]}, "rule 1: a rule is an object with 'when' and 'then'"),
        ({"rules": [{"then": "x@sms", "if": 1}]}, "rule 1: unknown keys if"),
        ({"rules": [{"then": "discount"}]}, "'offer@channel' or 'control'"),
        ({"rules": [{"when": {"stage": "vip"}, "then": "control"}]}, "rule field 'stage'"),
        ({"rules": [{"when": {"customer.x": {"~": 1}}, "then": "control"}]}, "unknown operator"),
        ({"rules": [{"when": {"customer.x": {"in": "a"}}, "then": "control"}]}, "needs a list"),
        ({"rules": [{"when": {"customer.x": {"<": "a"}}, "then": "control"}]}, "needs a number"),
        ({"rules": [{"then": {"x@sms": 0}}]}, "weight of 'x@sms' must be a positive number"),
        ({"rules": [], "default": 3}, "default: 'then' is a treatment"),
    ],
)
def test_bad_rule_tables_are_rejected(spec: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RuleTable.from_dict(spec)


def test_rule_files_json_and_yaml(tmp_path: Path, lb: LoggedBandit) -> None:
    path = tmp_path / "campaign.json"
    path.write_text(json.dumps(RULES))
    from_json = RuleTable.from_file(path)
    assert from_json == RuleTable.from_dict(RULES, source=str(path))
    assert from_json.name == "rules:campaign"
    yaml_path = tmp_path / "campaign.yaml"
    yaml_path.write_text(
        "name: campaign\nrules:\n  - when: {customer.stage: vip}\n    then: double_points@email\n"
    )
    table = RuleTable.from_file(yaml_path)
    assert table.rules[0].then == (("double_points@email", 1.0),)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        RuleTable.from_file(bad)
    assert json.loads(from_json.params()["rules"])["name"] == "campaign"


def test_saved_model_predicts_like_the_learner(tmp_path: Path, lb: LoggedBandit) -> None:
    args = vw_arguments("--squarecb", ["co"], seed=3)
    learner = VWPolicy(args)
    shared = shared_lines(lb)
    for i in range(200):
        cat = lb.catalogues[int(lb.frame["catalogue_id"].iloc[i])]
        learner.learn(
            shared[i],
            action_lines(cat),
            int(lb.frame["chosen"].iloc[i]),
            -float(lb.frame["reward"].iloc[i]) * 0.01,
            float(lb.frame["propensity"].iloc[i]),
        )
    path = CheckpointStore(tmp_path).save(Checkpoint(1, 0, 200, args, 0.0, learner.serialize()))
    target = SavedModel(str(path)).target(lb)
    _check_pmf(lb, target.pmf)
    assert target.vw_args == tuple(args)
    fresh = VWPolicy(args, learner.serialize())
    for i in range(0, lb.n, 25):
        customer, trig = contexts(lb, i)
        cat = lb.catalogues[int(lb.frame["catalogue_id"].iloc[i])]
        line = shared_line(customer, str(lb.frame["trigger_type"].iloc[i]), trig)
        expected = fresh.predict_public(line, action_lines(cat))
        np.testing.assert_allclose(target.pmf[i, : len(cat)], expected, atol=1e-6)
    mixed = SavedModel(str(path), control_share=0.1).target(lb).pmf
    np.testing.assert_allclose(mixed[:, 0], 0.9 * target.pmf[:, 0] + 0.1, atol=1e-9)


def test_policy_specs() -> None:
    assert parse_policy("uniform") == Uniform()
    assert parse_policy("control") == AllControl()
    assert parse_policy("logged") == LoggedPolicy()
    assert parse_policy("fixed:discount_10@sms") == FixedTreatment(
        TreatmentRef("discount_10", "sms")
    )
    assert parse_policy("model:x.ckpt", control_share=0.05) == SavedModel("x.ckpt", None, 0.05)
    replay = parse_policy("vw:--squarecb -q co")
    assert isinstance(replay, VWReplay)
    assert replay.vw_args[-3:] == ["--squarecb", "-q", "co"]
    for bad, match in [("random", "unknown policy"), ("fixed:x", "offer@channel")]:
        with pytest.raises(ValueError, match=match):
            parse_policy(bad)
    with pytest.raises(ValueError, match="unknown estimator"):
        parse_estimators("ips,magic")
    assert parse_treatment(" Control ") == CONTROL


def test_mix_control_share_rejects_bad_shares() -> None:
    with pytest.raises(ValueError, match=r"control share must be in \[0, 1\]"):
        mix_control_share(np.ones((1, 1)), np.zeros(1, dtype=np.int64), 1.5)

"""A contact policy applied to a log offline (``offerbandit eval --contact-policy``).

The strongest check there is: a log written *under* a policy, replayed offline with the same
policy, must show exactly the removals the live gate logged, decision by decision — the same
caps, repeats, suppressions (after outcomes), quiet hours in the customer's zone and count
budgets, judged against the same history.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bandit.contact import ContactPolicy
from bandit.eligibility import ChooseInput
from bandit.records import OutcomeInput
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Channel, Customer, Offer, TreatmentRef, Trigger
from offline_eval.io.logs import LoggedBandit, load_sqlite, open_log
from offline_eval.replay.contact import (
    ContactMask,
    WithContactPolicy,
    negative_outcomes,
    situations,
)
from offline_eval.replay.policies import LoggedPolicy, Uniform, control_columns

POLICY = """
version = "replay test"
[[cap]]
name = "two in three days"
max = 2
days = 3
[[repeat]]
name = "no repeat"
days = 2
[[suppression]]
name = "unsubscribed"
outcomes = ["unsubscribe"]
scope = "channel"
days = 5
[[quiet_hours]]
name = "quiet sms"
channel = "sms"
start = "22:00"
end = "07:00"
[[budget]]
name = "coupons"
offer = "c"
count = 12
per_day = 3
"""

START = 1_800_000_000.0
HOUR = 3600.0
ZONES = ("Europe/Berlin", "America/New_York", None)


def _write_log(data: Path, policy: ContactPolicy | None) -> None:
    clock = ManualClock(START)
    svc = DecisionService(
        ServiceConfig(
            data_dir=data,
            policy="vw",
            seed=7,
            background=False,
            event_id_prefix="00000000000000c7",
            contact_policy=policy,
        ),
        clock,
    )
    svc.start()
    rng = np.random.default_rng(11)
    deferred: list[tuple[str, float]] = []
    try:
        for i in range(400):
            clock.set(START + i * 0.7 * HOUR)
            c = int(rng.integers(15))
            zone = ZONES[c % 3]
            features = {"time_zone": zone} if zone else {}
            d = svc.choose(
                ChooseInput(
                    Customer(f"c{c}", features),
                    Trigger("login"),
                    (Offer("a"), Offer("b"), Offer("c")),
                    (Channel("email"), Channel("sms")),
                    defer_activation=bool(i % 5 == 0),
                )
            )
            if i % 5 == 0:
                deferred.append((d.event_id, clock.now() + 2 * HOUR))
            for eid, due in [x for x in deferred if x[1] <= clock.now()]:
                if rng.random() < 0.7:  # the send confirmation: activated as it arrives
                    svc.activate(eid, clock.now())
                deferred.remove((eid, due))
            if not d.chosen_treatment.ref.is_control and rng.random() < 0.08:
                svc.record_outcomes(
                    [OutcomeInput(f"o{i}", d.event_id, "", "unsubscribe", 0.0, None)]
                )
            if i == 200:  # one negative outcome naming only the customer
                svc.record_outcomes([OutcomeInput("oc", "", "c3", "unsubscribe", 0.0, None)])
        clock.set(clock.now() + 30 * 24 * HOUR)  # every window closed: all rewards final
        svc.close_due_windows()
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def capped_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("capped")
    _write_log(data, ContactPolicy.parse(POLICY))
    return data


def _mask(data: Path, lb: LoggedBandit, policy: ContactPolicy) -> ContactMask:
    reader = open_log(data)
    try:
        negatives = negative_outcomes(reader, policy, lb)
    finally:
        reader.close()
    return ContactMask.of(lb, policy, negatives)


def test_the_replayed_history_gives_every_logged_removal(capped_log: Path) -> None:
    """A log under a policy holds the candidates it kept and what it removed: the offline
    history judges the whole original set exactly as the live gate did, rule by rule."""
    policy = ContactPolicy.parse(POLICY)
    lb = load_sqlite(capped_log, closed_only=False, progress=False)
    reader = open_log(capped_log)
    try:
        negatives = negative_outcomes(reader, policy, lb)
    finally:
        reader.close()
    live_by_rule: Counter[str] = Counter()
    checked = 0
    for i, situation in situations(lb, policy, negatives):
        kept = [t.ref for t in lb.catalogues[int(lb.frame["catalogue_id"].iloc[i])]]
        logged = json.loads(lb.frame["removed"].iloc[i] or "[]")
        original = kept + [TreatmentRef(o, ch) for o, ch, _ in logged]
        verdict = policy.apply(original, situation)
        assert {(t.offer_id, t.channel_id, rule) for t, rule in verdict.removed} == {
            (o, ch, rule) for o, ch, rule in logged
        }, lb.frame["event_id"].iloc[i]
        live_by_rule.update(rule for _, _, rule in logged)
        checked += 1
    assert checked == lb.n == 400
    # every rule removed something, so each was exercised
    assert set(live_by_rule) == {r.name for r in policy.rules}, live_by_rule


def test_the_same_policy_moves_no_probability_of_the_logged_policy(capped_log: Path) -> None:
    policy = ContactPolicy.parse(POLICY)
    lb = load_sqlite(capped_log, closed_only=False, progress=False)
    wrapped = WithContactPolicy(LoggedPolicy(), _mask(capped_log, lb, policy), "same")
    got = wrapped.target(lb)
    np.testing.assert_allclose(got.pmf, lb.pmf, atol=1e-12)
    assert wrapped.name == "logged+same"
    assert wrapped.params()["contact_policy"] == policy.digest


def test_a_stricter_policy_moves_the_removed_probability_to_control(tmp_path: Path) -> None:
    _write_log(tmp_path, None)
    lb = load_sqlite(tmp_path, closed_only=False, progress=False)
    strict = ContactPolicy.parse("[[cap]]\nname = 'one a week'\nmax = 1\ndays = 7\n")
    mask = ContactMask.of(lb, strict, {})
    uniform = Uniform().target(lb).pmf
    got = WithContactPolicy(Uniform(), mask).target(lb).pmf
    np.testing.assert_allclose(got.sum(axis=1), 1.0)
    control = control_columns(lb)
    rows = np.arange(lb.n)
    # kept treatments keep their probability; control gains exactly what was removed
    kept_mass = np.where(mask.kept, uniform, 0.0)
    others = mask.kept.copy()
    others[rows, control] = False
    np.testing.assert_allclose(np.where(others, got - uniform, 0.0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.where(~mask.kept, got, 0.0), 0.0)
    lost = 1.0 - kept_mass.sum(axis=1)
    np.testing.assert_allclose(got[rows, control], uniform[rows, control] + lost)
    # a customer's first contact is never capped; after an activated contact the cap holds
    # for 7 days: every non-control candidate removed
    f = lb.frame.assign(capped=~mask.kept.any(axis=1) | (mask.kept.sum(axis=1) == 1))
    first = f.sort_values("decided_at").groupby("customer_id").head(1)
    assert not first["capped"].any()
    assert mask.removed_by_rule.get("one a week", 0) > 0


def test_money_budgets_and_suppressions_without_outcomes_are_refused(tmp_path: Path) -> None:
    _write_log(tmp_path, None)
    lb = load_sqlite(tmp_path, closed_only=False, progress=False)
    money = ContactPolicy.parse("[[budget]]\noffer = 'a'\nmoney = 10.0\n")
    with pytest.raises(ValueError, match="money budgets"):
        ContactMask.of(lb, money)
    sup = ContactPolicy.parse("[[suppression]]\noutcomes = ['complaint']\ndays = 0\n")
    with pytest.raises(ValueError, match="outcomes"):
        ContactMask.of(lb, sup)


def test_eval_compares_contact_policy_files(
    capped_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``offerbandit eval --contact-policy A --contact-policy B``: the logged policy and each
    --policy evaluated under each file (control is left alone), the removals reported."""
    from offline_eval.study.cli_eval import main

    strict = tmp_path / "strict.toml"
    strict.write_text('version = "one a week"\n[[cap]]\nname = "one a week"\nmax = 1\ndays = 7\n')
    same = tmp_path / "same.toml"
    same.write_text(POLICY)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[cap]]\nmax = -1\ndays = 7\n")
    args = ["--log", str(capped_log), "--no-track", "--no-progress", "--estimators", "snips"]
    assert main([*args, "--contact-policy", str(bad)]) == 2
    assert "cap[0].max" in capsys.readouterr().err
    code = main(
        [*args, "--policy", "uniform", "--policy", "control",
         "--contact-policy", str(strict), "--contact-policy", str(same)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    for name in ("logged+strict", "uniform+strict", "logged+same", "uniform+same"):
        assert f"\n{name} " in out, name
    assert "control+" not in out
    assert "contact policy one a week:" in out
    assert "removals by rule: one a week" in out
    assert "contact policy replay test: 0 of" in out  # the live policy again removes nothing

"""Retention (bandit/log/sqlite/retention.py) in process, on a real SQLite log with a manual
clock: exactly what may go is deleted — ages around the boundary, open windows, what the
learner's oldest kept checkpoint has not learned, recent contacts, suppressions for good,
coupons of count budgets — the export holds what went, and the file shrinks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bandit.contact import ContactPolicy
from bandit.eligibility import ChooseInput
from bandit.errors import UnknownEvent
from bandit.log.sqlite.retention import DAY, auto_vacuum_mode, convert_to_incremental
from bandit.records import OutcomeInput, Windows
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Channel, Customer, Decision, Offer, Trigger
from offerbandit.admin import vacuum_main

T0 = 1_800_000_000.0
OFFERS = (Offer("a", {"kind": "coupon"}), Offer("b", {"kind": "content"}))
CHANNELS = (Channel("email"), Channel("sms"))
POLICY = """
[[cap]]
name = "weekly"
max = 3
days = 7
[[suppression]]
name = "unsubscribed"
outcomes = ["unsubscribe"]
scope = "all"
days = 0
[[budget]]
name = "coupons"
offer = "a"
count = 100000
"""
PADDING = "x" * 600  # a customer feature: records of a realistic size


def _service(folder: Path, clock: ManualClock, **extra: object) -> DecisionService:
    config = ServiceConfig(
        data_dir=folder,
        policy="vw",
        exploration="--epsilon 0.5",
        background=False,
        event_id_prefix="00000000000000e7",
        windows=Windows(default=DAY),
        contact_policy=ContactPolicy.parse(POLICY),
        retention_days=30.0,
        checkpoints_kept=2,
        **extra,  # type: ignore[arg-type]
    )
    svc = DecisionService(config, clock)
    svc.start()
    return svc


def _choose(svc: DecisionService, cid: str, defer: bool = False) -> Decision:
    customer = Customer(cid, {"stage": "active", "padding": PADDING})
    return svc.choose(
        ChooseInput(customer, Trigger("login"), OFFERS, CHANNELS, defer_activation=defer)
    )


def _choose_until(
    svc: DecisionService, prefix: str, control: bool, defer: bool
) -> tuple[Decision, list[Decision]]:
    """The first decision that is (or is not) control, and the others made before it."""
    others = []
    for i in range(500):  # the sampling is seeded by the event ids: the same draw every run
        d = _choose(svc, f"{prefix}-{i}", defer)
        if d.is_control == control:
            return d, others
        others.append(d)
    raise AssertionError("no such draw")


def _event_ids(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT event_id FROM decisions")}


def _outcome_ids(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT outcome_id FROM outcomes")}


def _size(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def test_retention_deletes_exactly_what_may_go(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    svc = _service(tmp_path / "data", clock, retention_export_dir=tmp_path / "export")
    path = svc.config.log_path
    # ---- day 0: plenty of old decisions, outcomes, deferrals ----
    old = [_choose(svc, f"old-{i}") for i in range(600)]
    unsubscribed = old[0].context.customer.id
    svc.record_outcome(OutcomeInput("o-unsub", old[0].event_id, "", "unsubscribe", 0.0, None))
    svc.record_outcome(OutcomeInput("o-buy", old[1].event_id, "", "purchase", 40.0, None))
    svc.record_outcome(OutcomeInput("o-orphan", "", "nobody", "unsubscribe", 0.0, None))
    never_activated = [_choose(svc, "deferred-never", defer=True)]
    late_contact, others = _choose_until(svc, "late-contact", control=False, defer=True)
    never_activated += others
    late_open, others = _choose_until(svc, "late-open", control=True, defer=True)
    never_activated += others
    # ---- the boundary: the pass runs at day 40, so the cutoff is day 10 ----
    clock.set(T0 + 10 * DAY - 1)
    just_before = _choose(svc, "boundary-before")
    clock.set(T0 + 10 * DAY)
    exactly = _choose(svc, "boundary-exact")
    clock.set(T0 + 10 * DAY + 1)
    just_after = _choose(svc, "boundary-after")
    # a deferred contact activated recently (the weekly cap still counts it), and a
    # deferred control activated so recently that its window is still open at day 40
    clock.set(T0 + 35 * DAY)
    svc.activate(late_contact.event_id, T0 + 35 * DAY)
    clock.set(T0 + 39.5 * DAY)
    svc.activate(late_open.event_id, T0 + 39.5 * DAY)
    clock.set(T0 + 40 * DAY)
    svc.close_due_windows()
    svc.learn_pending()
    svc.checkpoint()
    svc.checkpoint()  # both kept checkpoints have learned everything closed
    size_before = _size(path)
    assert auto_vacuum_mode(sqlite3.connect(path)) == "incremental"
    everything = _event_ids(path)
    coupons_before = svc.log.offer_counts(["a"])["a"]
    assert coupons_before > 100

    assert svc.retention is not None
    done = svc.retention.run_pass(pause=False)

    gone = {d.event_id for d in old + never_activated} | {just_before.event_id}
    assert _event_ids(path) == everything - gone
    assert done.decisions == len(gone)
    assert _outcome_ids(path) == set()  # o-unsub, o-buy with their decisions; o-orphan: old
    assert done.outcomes == 3
    with pytest.raises(UnknownEvent):
        svc.get_decision(old[5].event_id)
    # kept: the cutoff itself and after, the recent contact, the open window
    for d in (exactly, just_after, late_contact, late_open):
        assert svc.get_decision(d.event_id).decision.event_id == d.event_id
    # coupons counted from deleted decisions are not handed out again
    assert svc.log.offer_counts(["a"])["a"] == coupons_before
    # the suppressions' outcomes survive as (customer, type, time, channel)
    assert done.negatives_kept == 2
    history = svc.log.contact_history(unsubscribed, None, float("-inf"), {"unsubscribe"})
    assert [n.type for n in history.negatives] == ["unsubscribe"]
    assert svc.log.customers_with_outcomes({"unsubscribe"}) == {unsubscribed, "nobody"}
    # what went was exported first
    files = sorted((tmp_path / "export").glob("decisions-*.parquet"))
    exported = {e for f in files for e in pq.read_table(f).column("event_id").to_pylist()}
    assert exported == gone
    # and the space came back
    size_after = _size(path)
    assert size_after < 0.6 * size_before, (size_before, size_after)
    svc.stop()

    # after a restart the suppression still holds and the budget counts the same
    restarted = _service(tmp_path / "data", clock)
    try:
        d = _choose(restarted, unsubscribed)
        assert d.is_control
        assert {rule for _, rule in d.removed} == {"unsubscribed"}
        assert restarted.contact is not None
        assert restarted.contact._counts["a"] >= coupons_before
        assert restarted.retention is not None
        assert restarted.retention.run_pass(pause=False).decisions == 0  # nothing more may go
    finally:
        restarted.stop()


def test_what_the_oldest_kept_checkpoint_has_not_learned_stays(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    svc = _service(tmp_path, clock)
    try:
        first = _choose(svc, "first")
        clock.set(T0 + 1)
        second = _choose(svc, "second")
        clock.set(T0 + 2 * DAY)
        third = _choose(svc, "third")  # the newest: its closing numbers stay
        clock.set(T0 + 40 * DAY)
        svc.close_due_windows()
        assert svc.retention is not None
        assert svc.retention.run_pass(pause=False).decisions == 0  # nothing learned yet
        svc.learn_pending()
        svc.checkpoint()  # one checkpoint has learned them all; no older one is kept
        assert svc.retention.run_pass(pause=False).decisions == 2
        assert _event_ids(svc.config.log_path) == {third.event_id}
        assert {first.event_id, second.event_id}.isdisjoint(_event_ids(svc.config.log_path))
        # the next decision and the next closing continue the numbering
        clock.set(T0 + 41 * DAY)
        fourth = _choose(svc, "fourth")
        clock.set(T0 + 43 * DAY)
        svc.close_due_windows()
        assert svc.get_decision(fourth.event_id).seq > svc.get_decision(third.event_id).seq
        assert svc.learn_pending() == 1
    finally:
        svc.stop()


def test_an_older_log_is_converted_once_and_then_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    with sqlite3.connect(path) as conn:  # as logs were created before: auto_vacuum NONE
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.executemany("INSERT INTO t VALUES (?)", [(PADDING,)] * 5000)
        conn.execute("DELETE FROM t")
    conn = sqlite3.connect(path)
    assert auto_vacuum_mode(conn) == "none"
    conn.close()
    before = path.stat().st_size
    assert vacuum_main(["--data-dir", str(tmp_path)]) == 0  # offerbandit vacuum
    assert path.stat().st_size < before / 10
    conn = sqlite3.connect(path)
    assert auto_vacuum_mode(conn) == "incremental"
    conn.close()
    assert convert_to_incremental(path)[1] == path.stat().st_size  # again: nothing changes

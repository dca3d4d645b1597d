"""Bulk activation (:meth:`DecisionService.activate_many`) on each log backend (``log_url``:
a temporary SQLite log, and a fresh PostgreSQL schema); no gRPC.

Each item is checked as the unary :meth:`~DecisionService.activate` checks it and refused
with the same error; a refused item writes nothing and never stops the others; the accepted
ones are durable when the call returns, and their windows then close and learn as unary
activations' do.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from bandit.errors import (
    AlreadyActivated,
    InvalidRequest,
    NotDeferred,
    NotReady,
    OfferBanditError,
    UnknownEvent,
)
from bandit.log import DecisionLog
from bandit.log.backends import is_postgres_url
from bandit.records import Activation, ActivationInput, DecisionState, Windows
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Decision
from tests.unit.test_outcomes import EMAIL, SMS, choose

WINDOWS = Windows(default=100.0, per_channel=(("sms", 10.0),))


def _log(tmp_path: Path, log_url: str, max_batch: int) -> DecisionLog:
    if is_postgres_url(log_url):
        from bandit.log.postgres import PostgresDecisionLog

        return PostgresDecisionLog(log_url, windows=WINDOWS, max_batch=max_batch)
    from bandit.log.sqlite import SqliteDecisionLog

    return SqliteDecisionLog(tmp_path / "decisions.sqlite", windows=WINDOWS, max_batch=max_batch)


def _service(
    tmp_path: Path, log_url: str, max_batch: int = 512
) -> tuple[DecisionService, ManualClock]:
    clock = ManualClock()
    cfg = ServiceConfig(
        data_dir=tmp_path,
        background=False,
        control_share=0.0,
        windows=WINDOWS,
        event_id_prefix="00000000000000a1",
        log=log_url,
    )
    svc = DecisionService(cfg, clock, decision_log=_log(tmp_path, log_url, max_batch))
    svc.start()
    return svc, clock


@pytest.fixture
def svc(tmp_path: Path, log_url: str) -> Iterator[tuple[DecisionService, ManualClock]]:
    s, clock = _service(tmp_path, log_url)
    yield s, clock
    s.stop()


def _window(d: Decision) -> float:
    """The decision's attribution window: 10 s for an sms, 100 s else (control too)."""
    return 10.0 if d.chosen_treatment.ref.channel_id == "sms" else 100.0


def _deferred(s: DecisionService, n: int, cid: str = "c") -> list[Decision]:
    return [
        choose(s, f"{cid}{i}", channel=SMS if i % 2 else EMAIL, defer_activation=True)
        for i in range(n)
    ]


def test_a_mixed_batch_writes_the_valid_items_and_answers_each_refusal(
    svc: tuple[DecisionService, ManualClock],
) -> None:
    s, clock = svc
    a, b, late, future, nan = _deferred(s, 5)
    plain = choose(s, "p")
    clock.advance(5.0)
    now = clock.now()
    items = [
        ActivationInput(a.event_id),  # now
        ActivationInput(b.event_id, now - 2.0),  # at the send time, before now
        ActivationInput(a.event_id),  # twice in one batch: the second is a retry
        ActivationInput("no-such-event"),
        ActivationInput(plain.event_id),  # decided with its window open: not deferred
        ActivationInput(late.event_id, late.decided_at - 1.0),  # before the decision
        ActivationInput(future.event_id, now + 3600.0),  # beyond the allowed clock skew
        ActivationInput(nan.event_id, math.nan),
        ActivationInput(""),
    ]
    results = s.activate_many(items)
    assert len(results) == len(items)
    first, second = results[0], results[1]
    assert first == Activation(a.event_id, "c0", now, now + _window(a))
    assert second == Activation(b.event_id, "c1", now - 2.0, now - 2.0 + _window(b))
    refusals = [(type(r), str(r)) for r in results[2:]]
    assert refusals == [
        (AlreadyActivated, f"event_id: decision {a.event_id!r} is already activated"),
        (UnknownEvent, "event_id: no decision with event id 'no-such-event'"),
        (NotDeferred, f"event_id: decision {plain.event_id!r} was not deferred"),
        (InvalidRequest, "activated_at: is before the decision was made"),
        (InvalidRequest, "activated_at: is too far in the future"),
        (InvalidRequest, "activated_at: must be a time between 1970 and 9999, got nan"),
        (InvalidRequest, "event_id: is required"),
    ]
    # written: the two valid ones, as answered
    for d, r in ((a, first), (b, second)):
        stored = s.get_decision(d.event_id)
        assert isinstance(r, Activation)
        assert (stored.activated_at, stored.window_closes_at) == (
            r.activated_at,
            r.window_closes_at,
        )
        assert stored.state is DecisionState.OPEN
    # nothing partial: the refused deferred decisions are untouched, the plain one too
    for d in (late, future, nan):
        stored = s.get_decision(d.event_id)
        assert stored.state is DecisionState.PENDING_ACTIVATION
        assert (stored.activated_at, stored.window_closes_at) == (None, None)
    kept = s.get_decision(plain.event_id)
    assert (kept.activated_at, kept.window_closes_at) == (
        plain.decided_at,
        plain.decided_at + 100.0,
    )
    log = s.stats().log
    assert (log.activations, log.pending_activation) == (3, 3)  # a, b and the plain one


def test_each_refusal_is_the_one_the_unary_activate_raises(
    svc: tuple[DecisionService, ManualClock],
) -> None:
    """The same items, one by one through :meth:`activate` and in one batch: the same
    errors, class and message (the bulk path checks exactly what the unary one does)."""
    s, clock = svc
    one, two = _deferred(s, 2)
    plain = choose(s, "p")
    clock.advance(1.0)
    bad = [
        ActivationInput("nope"),
        ActivationInput(plain.event_id),
        ActivationInput(one.event_id, one.decided_at - 0.5),
        ActivationInput(one.event_id, clock.now() + 1e6),
        ActivationInput(one.event_id, math.inf),
        ActivationInput(one.event_id, -1e300),
        ActivationInput(""),
    ]
    s.activate(two.event_id)
    bad.append(ActivationInput(two.event_id))  # activated already
    unary: list[tuple[type[OfferBanditError], str]] = []
    for item in bad:
        with pytest.raises(OfferBanditError) as caught:
            s.activate(item.event_id, item.activated_at)
        unary.append((type(caught.value), str(caught.value)))
    bulk = [(type(r), str(r)) for r in s.activate_many(bad)]
    assert bulk == unary
    assert all(issubclass(cls, OfferBanditError) for cls, _ in bulk)
    assert s.get_decision(one.event_id).state is DecisionState.PENDING_ACTIVATION


def test_a_retried_batch_changes_nothing_and_says_so(
    svc: tuple[DecisionService, ManualClock],
) -> None:
    s, clock = svc
    ds = _deferred(s, 4)
    items = [ActivationInput(d.event_id) for d in ds]
    first = s.activate_many(items)
    assert all(isinstance(r, Activation) for r in first)
    clock.advance(30.0)
    again = s.activate_many(items)
    assert [type(r) for r in again] == [AlreadyActivated] * 4
    for d, r in zip(ds, first, strict=True):
        assert isinstance(r, Activation)
        assert s.get_decision(d.event_id).window_closes_at == r.window_closes_at  # unmoved


def test_activated_windows_close_and_learn_the_rest_stays_pending(
    svc: tuple[DecisionService, ManualClock],
) -> None:
    s, clock = svc
    ds = _deferred(s, 6)
    results = s.activate_many([ActivationInput(d.event_id) for d in ds[:4]])
    assert all(isinstance(r, Activation) for r in results)
    clock.advance(101.0)
    assert s.close_due_windows() == 4
    assert s.learn_pending() == 4
    assert [s.get_decision(d.event_id).state for d in ds] == [DecisionState.CLOSED] * 4 + [
        DecisionState.PENDING_ACTIVATION
    ] * 2


def test_more_items_than_one_commit_batch_holds(tmp_path: Path, log_url: str) -> None:
    """A log committing at most 8 writes a batch: 30 activations (3 refused among them) span
    several transactions, each item answered as itself."""
    s, _clock = _service(tmp_path, log_url, max_batch=8)
    try:
        ds = _deferred(s, 27)
        items = [ActivationInput(d.event_id) for d in ds]
        items[5:5] = [ActivationInput("x1")]
        items[17:17] = [ActivationInput(ds[0].event_id)]  # after ds[0], in another batch
        items.append(ActivationInput(""))
        results = s.activate_many(items)
        assert [i for i, r in enumerate(results) if not isinstance(r, Activation)] == [5, 17, 29]
        assert isinstance(results[17], AlreadyActivated)
        ok = [r for r in results if isinstance(r, Activation)]
        assert [r.event_id for r in ok] == [d.event_id for d in ds]
        assert s.stats().log.activations == 27
    finally:
        s.stop()


def test_a_stopped_service_refuses_the_batch(tmp_path: Path, log_url: str) -> None:
    s, _clock = _service(tmp_path, log_url)
    d = _deferred(s, 1)[0]
    s.stop()
    with pytest.raises(NotReady):
        s.activate_many([ActivationInput(d.event_id)])

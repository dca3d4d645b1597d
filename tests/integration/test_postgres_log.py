"""The PostgreSQL log's guarantees across processes, each "process" a service with its own
log instance (its own connections) on one fresh schema: idempotent request and outcome ids,
last-touch attribution across deciders, caps and budgets held under concurrent Chooses,
closings in ``closed_seq`` order, and the versioned migrations. The subprocess tests over
gRPC are in test_scale_out.py."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bandit.contact import ContactPolicy
from bandit.eligibility import ChooseInput
from bandit.errors import StorageError
from bandit.log.postgres import PostgresDecisionLog
from bandit.log.postgres.schema import MIGRATIONS
from bandit.records import OutcomeInput, OutcomeStatus, Windows
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Channel, Customer, Offer, TreatmentRef, Trigger
from tests.pg import fresh_schema

OFFERS = (Offer("a", discount_rate=0.1), Offer("b"))
CHANNELS = (Channel("email"), Channel("sms"))


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_schema("log") as url:
        yield url


Factory = Callable[..., DecisionService]


@pytest.fixture
def services(tmp_path: Path, dsn: str) -> Iterator[Factory]:
    """Services on one PostgreSQL schema, each with its own log, clock and data folder."""
    made: list[DecisionService] = []

    def make(
        policy: str | None = None, clock: ManualClock | None = None, **kw: Any
    ) -> DecisionService:
        k = len(made)
        svc = DecisionService(
            ServiceConfig(
                data_dir=tmp_path / f"d{k}",
                log=dsn,
                policy="vw",
                exploration="--epsilon 0.5",
                background=False,
                event_id_prefix=f"{k:016x}",
                windows=Windows(default=100.0),
                contact_policy=None if policy is None else ContactPolicy.parse(policy),
                **kw,
            ),
            clock or ManualClock(1_800_000_000.0),
        )
        svc.start()
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.stop()


def _req(cid: str = "c1", request_id: str = "", offers: tuple[Offer, ...] = OFFERS) -> ChooseInput:
    return ChooseInput(Customer(cid, {}), Trigger("login"), offers, CHANNELS, request_id=request_id)


def _together(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """``fn(0..n-1)`` on ``n`` threads released at once."""
    start = threading.Barrier(n)

    def run(i: int) -> Any:
        start.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_a_request_id_is_logged_once_whichever_decider_it_reaches(services: Factory) -> None:
    a, b = services(), services()
    answers = _together(8, lambda i: (a, b)[i % 2].choose(_req(request_id="r-1")))
    assert len({d.event_id for d in answers}) == 1
    assert a.log.count() == 1  # type: ignore[attr-defined]
    assert b.get_decision(answers[0].event_id).decision == answers[0]


def test_an_outcome_id_counts_once_whichever_decider_it_reaches(services: Factory) -> None:
    a, b = services(), services()
    d = a.choose(_req())
    o = OutcomeInput("o-1", d.event_id, "", "purchase", 25.0, None)
    results = _together(8, lambda i: (a, b)[i % 2].record_outcome(o))
    statuses = sorted(r.status.value for r in results)
    assert statuses == ["attributed"] + ["duplicate"] * 7
    stored = b.get_decision(d.event_id)
    assert (stored.n_outcomes, stored.revenue) == (1, 25.0)


def test_last_touch_attribution_across_deciders(services: Factory) -> None:
    clock = ManualClock(1_800_000_000.0)
    a, b = services(clock=clock), services(clock=clock)
    first = a.choose(_req("c9"))
    clock.advance(5)
    latest = b.choose(_req("c9"))
    clock.advance(5)
    result = a.record_outcome(OutcomeInput("o-9", "", "c9", "purchase", 10.0, None))
    assert (result.status, result.event_id) == (OutcomeStatus.ATTRIBUTED, latest.event_id)
    assert a.get_decision(first.event_id).n_outcomes == 0


def test_two_deciders_cannot_both_pass_a_cap_of_one(services: Factory) -> None:
    cap = "[[cap]]\nname = 'once'\nmax = 1\ndays = 7\n"
    a, b = services(cap), services(cap)
    decided = _together(24, lambda i: (a, b)[i % 2].choose(_req("c1")))
    contacts = [d for d in decided if not d.is_control]
    assert len(contacts) == 1
    # every other Choose saw the contact (decided after it) or chose control itself
    assert all(d.is_control for d in decided if d.event_id != contacts[0].event_id)
    history = a.log.contact_history("c1", 0.0, None, ())
    assert len(history.contacts) == 1


def test_a_count_budget_is_never_overspent_across_deciders(services: Factory) -> None:
    budget = "[[budget]]\noffer = 'a'\ncount = 3\n"
    a, b = services(budget), services(budget)
    decided = _together(40, lambda i: (a, b)[i % 2].choose(_req(f"c{i}")))
    coupons = [d for d in decided if d.chosen_treatment.ref.offer_id == "a"]
    assert len(coupons) == 3
    assert a.log.offer_counts(["a"]) == {"a": 3}
    later = b.choose(_req("late"))
    assert {r.offer_id for r, _rule in later.removed} == {"a"}


def test_concurrent_closers_close_each_decision_once_in_order(services: Factory, dsn: str) -> None:
    clock = ManualClock(1_800_000_000.0)
    a, b = services(clock=clock), services(clock=clock)
    _together(40, lambda i: (a, b)[i % 2].choose(_req(f"c{i}")))
    clock.advance(101)
    closed = _together(4, lambda i: (a, b)[i % 2].close_due_windows())
    assert sum(closed) == 40
    with psycopg.connect(dsn) as conn:
        seqs = [r[0] for r in conn.execute("SELECT closed_seq FROM decisions ORDER BY closed_seq")]
    assert seqs == list(range(1, 41))
    assert a.learn_pending() == 40


def test_outcomes_and_closing_race_without_losing_revenue(services: Factory) -> None:
    clock = ManualClock(1_800_000_000.0)
    a, b = services(clock=clock), services(clock=clock)
    ds = [a.choose(_req(f"c{i}", offers=(OFFERS[0],))) for i in range(30)]
    clock.advance(50)
    outcomes = [
        OutcomeInput(f"o{i}", d.event_id, "", "purchase", 10.0, None) for i, d in enumerate(ds)
    ]

    def work(i: int) -> Any:
        if i == 0:
            return b.close_due_windows()
        return [(a, b)[i % 2].record_outcome(o) for o in outcomes[i - 1 :: 3]]

    _together(4, work)
    assert all(b.get_decision(d.event_id).revenue == 10.0 for d in ds)


def test_two_openers_migrate_once_and_a_newer_log_is_refused(dsn: str) -> None:
    logs = _together(4, lambda _i: PostgresDecisionLog(dsn))
    try:
        assert {log.schema_version for log in logs} == {len(MIGRATIONS)}
    finally:
        for log in logs:
            log.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert versions == list(range(1, len(MIGRATIONS) + 1))
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(StorageError, match="Upgrade offerbandit"):
        PostgresDecisionLog(dsn)


def test_an_unreachable_database_fails_clearly() -> None:
    with pytest.raises(StorageError, match="cannot connect"):
        PostgresDecisionLog("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_a_decision_reads_back_the_same_at_another_decider(services: Factory) -> None:
    a = services()
    d = a.choose(
        ChooseInput(
            Customer("c", {"ltv": 3.5, "stage": "vip"}),
            Trigger("t", {"cart": 2.0}),
            OFFERS,
            CHANNELS,
            treatments=[TreatmentRef("a", "email"), TreatmentRef("b", "sms")],
        )
    )
    assert services().get_decision(d.event_id).decision == d


def test_a_batch_on_postgresql_logs_each_request_id_once_across_deciders(
    services: Factory,
) -> None:
    """The batch path on a shared log: one write per batch; a request id another decider
    logged (or an earlier customer of the same batch) answers with that decision; a changed
    request conflicts; the same requests decided unary give the same decisions."""
    from bandit.choose_batch import BatchCustomer
    from bandit.errors import Conflict
    from bandit.types import Decision

    a, b = services(), services()
    template = ChooseInput(None, Trigger("campaign"), OFFERS, CHANNELS, defer_activation=True)
    people = [BatchCustomer(Customer(f"c{i}", {"n": float(i)}), f"r-{i}") for i in range(30)]
    earlier = b.choose(dataclasses.replace(template, customer=people[3].customer, request_id="r-3"))
    got = a.choose_batch(template, [*people, people[5]])
    assert all(isinstance(d, Decision) for d in got)
    assert got[3] == earlier  # logged by the other decider first
    assert got[30] == got[5]  # twice in one batch: logged once
    assert a.log.count() == 30  # type: ignore[attr-defined]
    found = b.log.find_requests([("r-1", ""), ("r-2", ""), ("nope", "")])
    assert set(found) == {"r-1", "r-2"}
    changed = dataclasses.replace(template, defer_activation=False)
    again = b.choose_batch(changed, people[:2])
    assert all(isinstance(r, Conflict) for r in again)
    assert b.log.count() == 30  # type: ignore[attr-defined]

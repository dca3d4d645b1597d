"""Scale-out over real processes and real gRPC: two ``offerbandit serve --role decider``
processes and two ``offerbandit trainer`` processes (one active, one standing by) on one
PostgreSQL schema and one model-store folder.

The tests run in file order on one cluster: idempotency, attribution, caps and budgets across
deciders, model versions reaching the deciders, trainer failover after SIGKILL, and a
decider SIGKILLed under load — nothing it answered is lost, nothing is learned twice.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from bandit.checkpoint import CheckpointStore
from bandit.types import Channel, Customer, Offer, TreatmentRef, Trigger
from server.client import OfferBanditClient
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from tests.pg import fresh_schema

ROOT = Path(__file__).resolve().parents[2]
POLICY = """
[[cap]]
name = "once"
max = 1
days = 7

[[budget]]
offer = "coupon"
count = 2
"""
OFFERS = (Offer("d10", discount_rate=0.1), Offer("ship", fixed_cost=2.0))
CHANNELS = (Channel("email"), Channel("sms"))
COUPON = (Offer("coupon", fixed_cost=1.0),)
WAIT = 60.0
"""Seconds a test waits for a process to start or a state to be reached (bounded)."""

pytestmark = pytest.mark.slow


class Process:
    """A child process whose stdout lines are collected by a thread."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self.stderr = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "offerbandit.cli", *args],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            cwd=ROOT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.strip())
                self._seen.notify_all()

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for line in self.lines:
                    m = re.search(pattern, line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"{self.name}: no {pattern!r} in {self.lines}")
                self._seen.wait(min(left, 0.5))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=WAIT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(timeout=WAIT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.stderr.close()


class Cluster:
    def __init__(self, dsn: str, tmp: Path) -> None:
        self.dsn = dsn
        self.store = tmp / "models"
        self.policy = tmp / "policy.toml"
        self.policy.write_text(POLICY)
        self.tmp = tmp
        self.procs: list[Process] = []
        self.clients: list[OfferBanditClient] = []
        self.env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            OFFERBANDIT_LOG=dsn,
            OFFERBANDIT_MODEL_STORE=str(self.store),
            OFFERBANDIT_POLICY="vw",
            OFFERBANDIT_EXPLORATION="--epsilon 0.3",
            OFFERBANDIT_ATTRIBUTION_WINDOW_SECONDS="1",
            OFFERBANDIT_CLOSE_INTERVAL_SECONDS="0.2",
            OFFERBANDIT_CHECKPOINT_EVERY_SECONDS="0.3",
            OFFERBANDIT_MODEL_POLL_SECONDS="0.3",
            OFFERBANDIT_CONTACT_POLICY=str(self.policy),
        )

    def decider(self, k: int) -> tuple[Process, OfferBanditClient]:
        env = dict(self.env, OFFERBANDIT_EVENT_ID_PREFIX=f"{k + 1:016x}")
        p = Process(
            f"decider{k}",
            ["serve", "--role", "decider", "--port", "0", "--data-dir", str(self.tmp / f"d{k}")],
            env,
            self.tmp,
        )
        self.procs.append(p)
        port = int(p.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        client = OfferBanditClient(f"127.0.0.1:{port}", timeout=20.0)
        client.wait_ready()
        self.clients.append(client)
        return p, client

    def trainer(self, k: int) -> Process:
        p = Process(
            f"trainer{k}", ["trainer", "--data-dir", str(self.tmp / "t")], self.env, self.tmp
        )
        self.procs.append(p)
        p.wait_for("trainer started")
        return p

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(query, args).fetchall()

    def wait_until(self, what: str, ok: Callable[[], bool], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached within {timeout} s: {what}")
            time.sleep(0.2)

    def learned_all_closed_once(self) -> bool:
        """The newest checkpoint is at the log's last closed_seq, every decision is closed,
        and its weights hold exactly as many decisions as the log has closed."""
        ((closed, total, last),) = self.sql(
            "SELECT COUNT(closed_seq), COUNT(*),"
            " (SELECT value FROM log_counters WHERE name = 'closed_seq') FROM decisions"
        )
        latest = CheckpointStore(self.store).latest()
        if latest is None or closed != total or latest.position != last:
            return False
        assert latest.learned == closed, "a decision was learned twice (or never)"
        return True


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with fresh_schema("scale") as dsn:
        c = Cluster(dsn, tmp_path_factory.mktemp("scale"))
        try:
            yield c
        finally:
            for client in c.clients:
                client.close()
            for p in c.procs:
                p.stop()


@pytest.fixture(scope="module")
def deciders(cluster: Cluster) -> list[OfferBanditClient]:
    return [cluster.decider(0)[1], cluster.decider(1)[1]]


@pytest.fixture(scope="module")
def trainers(cluster: Cluster, deciders: list[OfferBanditClient]) -> list[Process]:
    first = cluster.trainer(0)
    first.wait_for("trainer active")
    second = cluster.trainer(1)  # stands by: the lease is taken
    return [first, second]


def _together(n: int, call: Callable[[int], Any]) -> list[Any]:
    start = threading.Barrier(n)

    def run(i: int) -> Any:
        start.wait()
        return call(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_a_request_id_is_answered_once_across_deciders(deciders: list[OfferBanditClient]) -> None:
    answers = _together(
        8,
        lambda i: deciders[i % 2].choose(
            Customer("idem"), Trigger("login"), OFFERS, CHANNELS, request_id="req-1"
        ),
    )
    assert len({a.event_id for a in answers}) == 1
    assert deciders[1].get_decision(answers[0].event_id).event_id == answers[0].event_id


def test_an_outcome_at_the_other_decider_is_attributed_once(
    deciders: list[OfferBanditClient], cluster: Cluster
) -> None:
    a, b = deciders
    d = a.choose(Customer("attr"), Trigger("login"), OFFERS, CHANNELS)
    results = _together(
        6, lambda i: (b, a)[i % 2].record_outcome("out-attr", customer_id="attr", revenue=30.0)
    )
    statuses = sorted(r.status for r in results)
    assert statuses == [pb.OUTCOME_STATUS_ATTRIBUTED] + [pb.OUTCOME_STATUS_DUPLICATE] * 5
    assert {r.event_id for r in results} == {d.event_id}
    stored = cluster.sql(
        "SELECT n_outcomes, revenue FROM decisions WHERE event_id = %s", d.event_id
    )
    assert stored == [(1, 30.0)]


def test_caps_and_budgets_hold_across_deciders(
    deciders: list[OfferBanditClient], cluster: Cluster
) -> None:
    answers = _together(
        24, lambda i: deciders[i % 2].choose(Customer("capped"), Trigger("login"), OFFERS, CHANNELS)
    )
    assert sum(1 for a in answers if not a.control) == 1
    coupon = [TreatmentRef("coupon", "email")]
    answers = _together(
        30,
        lambda i: deciders[i % 2].choose(
            Customer(f"b{i}"), Trigger("login"), COUPON, CHANNELS[:1], treatments=coupon
        ),
    )
    assert sum(1 for a in answers if not a.control) == 2
    assert cluster.sql(
        "SELECT COUNT(*) FROM decisions WHERE chosen_offer = 'coupon' AND NOT is_control"
    ) == [(2,)]


def test_deciders_pick_up_the_trainers_model_versions(
    deciders: list[OfferBanditClient], trainers: list[Process], cluster: Cluster
) -> None:
    for i in range(20):
        d = deciders[i % 2].choose(Customer(f"m{i}"), Trigger("login"), OFFERS, CHANNELS)
        deciders[(i + 1) % 2].record_outcome(f"out-m{i}", event_id=d.event_id, revenue=10.0)
    cluster.wait_until("every decision learned", cluster.learned_all_closed_once)

    def stamped() -> bool:
        versions = {
            c.choose(Customer("probe"), Trigger("login"), OFFERS, CHANNELS).model_version
            for c in deciders
        }
        return "v0" not in versions

    cluster.wait_until("both deciders serve a trained model", stamped)
    newest = CheckpointStore(cluster.store).latest()
    assert newest is not None
    (logged,) = cluster.sql(
        "SELECT model_version FROM decisions WHERE customer_id = 'probe' ORDER BY seq DESC LIMIT 1"
    )
    assert logged[0] != "v0"


def test_the_standby_trainer_takes_over_after_a_sigkill(
    deciders: list[OfferBanditClient], trainers: list[Process], cluster: Cluster
) -> None:
    first, second = trainers
    assert not any("active" in line for line in second.lines)
    for i in range(30):
        deciders[i % 2].choose(Customer(f"f{i}"), Trigger("login"), OFFERS, CHANNELS)
    first.kill()
    second.wait_for("trainer active")
    for i in range(30, 60):
        deciders[i % 2].choose(Customer(f"f{i}"), Trigger("login"), OFFERS, CHANNELS)
    cluster.wait_until("the standby learned everything once", cluster.learned_all_closed_once)


def test_a_decider_killed_under_load_loses_nothing_it_answered(
    deciders: list[OfferBanditClient], trainers: list[Process], cluster: Cluster
) -> None:
    victim = cluster.procs[0]
    a, b = deciders
    answered: dict[str, str] = {}
    refused: list[str] = []
    lock = threading.Lock()

    def load(worker: int) -> None:
        for i in range(150):
            rid = f"load-{worker}-{i}"
            try:
                d = a.choose(Customer(f"l{worker}-{i}"), Trigger("login"), OFFERS, CHANNELS,
                             request_id=rid)  # fmt: skip
            except grpc.RpcError:
                with lock:
                    refused.append(rid)
                continue
            with lock:
                answered[rid] = d.event_id

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    cluster.wait_until("some load answered", lambda: len(answered) >= 100, timeout=WAIT)
    victim.kill()
    for t in threads:
        t.join(timeout=WAIT)
    assert refused, "the decider was killed after the load ended"
    for rid, event_id in answered.items():  # every answer is in the log
        assert b.get_decision(event_id).event_id == event_id, rid
    for rid in refused:  # the client retries at the other decider: at most one decision each
        customer = Customer("l" + rid.removeprefix("load-"))
        b.choose(customer, Trigger("login"), OFFERS, CHANNELS, request_id=rid)
    rids = list(answered) + refused
    (dupes,) = cluster.sql(
        "SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM decisions WHERE request_id = ANY(%s)",
        rids,
    )
    assert dupes == (0,)
    assert cluster.sql("SELECT COUNT(*) FROM decisions WHERE request_id = ANY(%s)", rids) == [
        (len(rids),)
    ]
    cluster.wait_until("everything learned once", cluster.learned_all_closed_once)

"""Recovery from a bad learn over real gRPC: poison → Choose degrades → void + rollback →
Choose healthy again, and nothing was deleted."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from bandit.checkpoint import CheckpointStore
from bandit.service import ManualClock
from bandit.types import TreatmentRef
from offerbandit.admin import rollback_main, void_main
from server.app import RunningServer, start_server
from server.client import OfferBanditClient, choose_request
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.settings import Settings
from tests.conftest import CHANNELS, OFFERS, customer, trigger

ONLY = [TreatmentRef("discount_10", "email"), TreatmentRef("content", "sms")]


def _start(data: Path, clock: ManualClock) -> RunningServer:
    settings = Settings.load(
        host="127.0.0.1",
        port=0,
        data_dir=data,
        attribution_window_seconds=60.0,
        close_interval_seconds=0.05,
        checkpoint_every_learns=1,
        checkpoint_every_seconds=0.05,
        max_learned_revenue=1e6,  # a permissive clip: this poison gets through
        control_share=0.05,
        policy="vw",  # VW learns the poison at once; the uplift policy clips it at 1,000
    )
    return start_server(settings, clock)


def _probe(c: OfferBanditClient) -> dict[str, float]:
    """The pmf the live model gives one fixed context (sampling aside)."""
    req = choose_request(customer("probe"), trigger(), OFFERS, CHANNELS, treatments=ONLY)
    answer = c.stub.Choose(req)
    return {
        f"{t.treatment.offer_id}@{t.treatment.channel_id}": t.probability for t in answer.ranking
    }


def _settle(c: OfferBanditClient, running: RunningServer, clock: ManualClock) -> str:
    """Close every window, wait until the learner has learned every closed decision, and
    publish a checkpoint; returns its model version."""
    clock.advance(61)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        s = c.stats()
        if s.pending_windows == 0 and s.learned_decisions == s.closed_decisions:
            return running.service.checkpoint().model_version
        time.sleep(0.05)
    raise AssertionError(f"not learned in time: {c.stats()}")


def test_poison_void_rollback_story(tmp_path: Path) -> None:
    data = tmp_path / "data"
    clock = ManualClock()
    running = _start(data, clock)
    with OfferBanditClient(running.address) as c:
        # A healthy start: a few decisions closed, nothing bought (rewards: −contact cost).
        for i in range(4):
            d = c.stub.Choose(
                choose_request(customer(f"c{i}"), trigger(), OFFERS, CHANNELS, treatments=ONLY)
            )
            c.record_outcome(f"ok{i}", event_id=d.event_id, type="click", revenue=0.0)
        before = _settle(c, running, clock)
        healthy = _probe(c)
        # The poison: one absurd purchase on a non-control decision.
        target = None
        for i in range(50):
            d = c.stub.Choose(
                choose_request(customer(f"p{i}"), trigger(), OFFERS, CHANNELS, treatments=ONLY)
            )
            if not d.control:
                target = d
                break
            clock.advance(61)  # close control decisions as we go
        assert target is not None
        key = f"{target.chosen.offer_id}@{target.chosen.channel_id}"
        c.record_outcome("poison", event_id=target.event_id, type="purchase", revenue=1e6)
        _settle(c, running, clock)
        poisoned = _probe(c)
        assert poisoned[key] > 0.9 > healthy[key]  # the model now pushes the poisoned treatment
    versions = running.service.checkpoints.versions()
    running.stop(grace=1.0)

    # The operator: void the poison, roll back to the model from before it.
    assert void_main(["--data-dir", str(data), "--outcome", "poison"]) == 0
    assert rollback_main(["--data-dir", str(data), "--to", before.removeprefix("v")]) == 0

    store = CheckpointStore(data / "checkpoints")
    restored = store.latest()  # the restored copy: the older model, saved as the newest
    assert restored is not None
    assert restored.version == versions[-1] + 1
    assert restored.model == store.read(int(before.removeprefix("v"))).model

    running = _start(data, clock)
    try:
        with OfferBanditClient(running.address) as c:
            # Served from the restored copy; the learner, learning again from its position,
            # may already have checkpointed past it by the time we ask.
            assert int(c.stats().model_version.removeprefix("v")) >= restored.version
            after = _probe(c)
            assert after[key] < 0.9  # healthy again
            logged = c.get_decision(target.event_id)  # still in the log, reward corrected
            assert logged.state == pb.DECISION_STATE_CLOSED
            assert logged.reward < 1.0
            _settle(c, running, clock)  # learns again from v{before}: the poison skipped
            assert _probe(c)[key] < 0.9
    finally:
        running.stop(grace=1.0)
    with sqlite3.connect(data / "decisions.sqlite") as db:
        (voided,) = db.execute(
            "SELECT voided_at FROM outcomes WHERE outcome_id = 'poison'"
        ).fetchone()
        (n_outcomes,) = db.execute("SELECT COUNT(*) FROM outcomes").fetchone()
    assert voided is not None
    assert n_outcomes == 5  # nothing deleted

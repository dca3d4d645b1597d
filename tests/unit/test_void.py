"""Voided decisions are kept in the log and never learned; rollback restores a checkpoint."""

from __future__ import annotations

from pathlib import Path

from bandit.checkpoint import Checkpoint, CheckpointStore
from bandit.eligibility import ChooseInput
from bandit.records import Windows
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Channel, Customer, Offer, Trigger


def test_voided_decisions_are_kept_and_skipped_by_the_learner(tmp_path: Path, log_url: str) -> None:
    clock = ManualClock()
    cfg = ServiceConfig(
        data_dir=tmp_path, background=False, windows=Windows(default=10.0), log=log_url
    )
    svc = DecisionService(cfg, clock)
    svc.start()
    try:
        req = ChooseInput(Customer("c", {}), Trigger("t"), [Offer("o")], [Channel("e")])
        ds = [svc.choose(req) for _ in range(3)]
        assert svc.log.void_decisions(clock.now(), [ds[1].event_id]) == 1
        assert svc.log.void_decisions(clock.now(), [ds[1].event_id]) == 0  # once
        clock.advance(11)
        svc.close_due_windows()
        assert svc.learn_pending() == 2
        assert svc.log.count() == 3
        assert svc.get_decision(ds[1].event_id).decision == ds[1]
        window = (ds[0].decided_at - 1, ds[0].decided_at + 1)
        assert svc.log.void_decisions(clock.now(), decided_between=window) == 2
    finally:
        svc.stop()


def test_rollback_saves_the_old_checkpoint_as_the_newest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    for v in (1, 2, 3):
        store.save(Checkpoint(v, v * 10, v, ["--cb_explore_adf"], 0.0, b"m%d" % v))
    restored = store.rollback(1, now=5.0)
    assert (restored.version, restored.position, restored.model) == (4, 10, b"m1")
    assert restored.restored_from == 1
    assert store.latest() == restored
    assert store.versions() == [2, 3, 4]

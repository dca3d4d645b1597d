"""``offerbandit backup`` while a real server takes decisions, and a restore from the copy."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from offerbandit.backup import backup
from offerbandit.backup import main as backup_main
from server.app import start_server
from server.client import OfferBanditClient
from server.settings import Settings
from tests.conftest import CHANNELS, OFFERS, customer, trigger


def test_a_backup_taken_under_load_restores(tmp_path: Path) -> None:
    data = tmp_path / "data"
    running = start_server(Settings.load(host="127.0.0.1", port=0, data_dir=data))
    acknowledged: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with OfferBanditClient(running.address) as c:
            i = 0
            while not stop.is_set() and i < 5000:
                acknowledged.append(
                    c.choose(customer(f"b{i}"), trigger(), OFFERS, CHANNELS).event_id
                )
                i += 1

    try:
        with OfferBanditClient(running.address) as c:
            first = [
                c.choose(customer(f"a{i}"), trigger(), OFFERS, CHANNELS).event_id for i in range(30)
            ]
        running.service.checkpoint()
        worker = threading.Thread(target=load)
        worker.start()
        try:
            before = len(acknowledged)
            decisions, outcomes = backup(data, tmp_path / "copy")
            after = len(acknowledged)
        finally:
            stop.set()
            worker.join(timeout=60)
    finally:
        running.stop(grace=1.0)
    assert 30 + before <= decisions <= 30 + after + 64  # + calls in flight at either end
    assert outcomes == 0
    copy = tmp_path / "copy" / "decisions.sqlite"
    with sqlite3.connect(copy) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert not (tmp_path / "copy" / "decisions.sqlite-wal").exists()
    assert list((tmp_path / "copy" / "checkpoints").iterdir())
    restored = start_server(Settings.load(host="127.0.0.1", port=0, data_dir=tmp_path / "copy"))
    try:
        with OfferBanditClient(restored.address) as c:
            assert c.get_decision(first[0]).event_id == first[0]
            assert c.stats().decisions == decisions
    finally:
        restored.stop(grace=1.0)


def test_backup_refuses_a_missing_log_and_a_used_folder(tmp_path: Path) -> None:
    assert backup_main(["--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 1
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("keep me")
    (tmp_path / "d").mkdir()
    sqlite3.connect(tmp_path / "d" / "decisions.sqlite").close()
    assert backup_main(["--data-dir", str(tmp_path / "d"), "--out", str(used)]) == 1
    assert (used / "x").read_text() == "keep me"

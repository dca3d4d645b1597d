"""A big old decision log for ``offerbandit bench --retention``: every row closed, learned
and older than the retention period, so a server started on it with ``retention_days`` has
deletion work for the whole measurement.

A few thousand decisions are made through the real service (the bench's requests, a
manual clock 60 days back) and closed; the table is then doubled with SQL copies (new event
ids and log positions) up to the size asked, every row is closed with ``closed_seq = seq``,
and one checkpoint says the learner has learned up to the last of them.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from pathlib import Path

from bandit.checkpoint import CheckpointStore
from bandit.service import DecisionService, ManualClock, ServiceConfig
from server.converters import choose_from_pb

DAY = 86_400.0


def prefill(data_dir: Path, rows: int, requests: list[object], made: int = 2000) -> int:
    """Fill ``data_dir`` with about ``rows`` old closed decisions; returns how many."""
    start = time.time() - 60 * DAY
    clock = ManualClock(start)
    svc = DecisionService(ServiceConfig(data_dir=data_dir, background=False), clock)
    svc.start()
    try:
        for i in range(min(made, rows)):
            svc.choose(choose_from_pb(requests[i % len(requests)]))  # type: ignore[arg-type]
            clock.advance(0.01)
        clock.advance(8 * DAY)
        svc.close_due_windows()
        svc.learn_pending()
        svc.checkpoint()
    finally:
        svc.stop()
    path = data_dir / "decisions.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(decisions)")]
        copied = [c for c in columns if c not in ("seq", "event_id", "closed_seq", "request_id")]
        names = ", ".join(copied)
        (n,) = conn.execute("SELECT COUNT(*) FROM decisions").fetchone()
        while n < rows:
            conn.execute("BEGIN")
            conn.execute(
                f"INSERT INTO decisions (event_id, {names}) SELECT lower(hex(randomblob(16))),"
                f" {names} FROM decisions ORDER BY seq LIMIT ?",
                (rows - n,),
            )
            conn.execute("COMMIT")
            (n,) = conn.execute("SELECT COUNT(*) FROM decisions").fetchone()
        conn.execute("BEGIN")
        conn.execute("UPDATE decisions SET closed_seq = NULL")
        conn.execute(
            "UPDATE decisions SET closed_seq = seq, decided_at = ? + seq * 0.01,"
            " activated_at = ? + seq * 0.01, closed_at = ? + seq * 0.01 + ?,"
            " window_closes_at = ? + seq * 0.01 + ?, reward = COALESCE(reward, 0)",
            (start, start, start, DAY, start, DAY),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (last,) = conn.execute("SELECT MAX(seq) FROM decisions").fetchone()
    finally:
        conn.close()
    store = CheckpointStore(data_dir / "checkpoints")
    latest = store.latest()
    assert latest is not None
    for v in store.versions():
        (store.folder / f"model-{v:08d}.ckpt").unlink()
    store.save(replace(latest, position=int(last), version=latest.version + 1))
    return int(n)


def log_rows(data_dir: Path) -> int:
    """Decisions in the log of ``data_dir``."""
    conn = sqlite3.connect(data_dir / "decisions.sqlite")
    try:
        return int(conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
    finally:
        conn.close()


__all__ = ["log_rows", "prefill"]

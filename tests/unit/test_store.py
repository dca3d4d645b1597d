"""The decision log: group commit under concurrency, failures isolated, schema versions."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from bandit.errors import StorageError
from bandit.store import DecisionLog
from bandit.types import (
    CONTROL_TREATMENT,
    Channel,
    Context,
    Customer,
    Decision,
    Offer,
    Treatment,
    Trigger,
)

TREATMENTS = (CONTROL_TREATMENT, Treatment(Offer("o"), Channel("h")))


def _decision(i: int, event_id: str | None = None) -> Decision:
    return Decision(
        event_id or f"e{i}",
        Context(Customer(f"c{i}", {"i": float(i)}), Trigger("t")),
        TREATMENTS,
        (0.5, 0.5),
        i % 2,
        "v0",
        "p",
        1_700_000_000.0 + i,
    )


def test_concurrent_appends_are_all_durable_and_share_commits(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.sqlite")
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(k * 200, k * 200 + 200):
                assert log.append(_decision(i)) is None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    log.close()
    again = DecisionLog(tmp_path / "d.sqlite")
    try:
        assert again.count() == 1600
        assert again.get("e1234").decision == _decision(1234)
        (n_catalogues,) = again._reader().execute("SELECT COUNT(*) FROM catalogues").fetchone()
        assert n_catalogues == 1  # the candidates are stored once, not per decision
    finally:
        again.close()


def test_a_failing_job_leaves_nothing_and_spares_its_batch(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.sqlite")
    try:
        log.append(_decision(1))
        dup = log.submit(log.append_job(_decision(2, event_id="e1"), ""))  # same event id
        ok = log.submit(log.append_job(_decision(3), ""))
        assert log.wait(ok) is None
        with pytest.raises(sqlite3.IntegrityError):
            log.wait(dup)
        assert log.count() == 2
    finally:
        log.close()


def test_a_log_from_another_schema_version_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    DecisionLog(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="schema version 99"):
        DecisionLog(path)

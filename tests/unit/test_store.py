"""The decision log: group commit under concurrency, failures isolated, schema versions."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path

import pytest

from bandit.errors import StorageError
from bandit.log.sqlite import Pending
from bandit.log.sqlite import SqliteDecisionLog as DecisionLog
from bandit.logcodec import _dumps, _head, decode_head
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
from offline_eval.io.logs import load_sqlite

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


def test_a_catalogue_rolled_back_with_its_job_is_written_again(tmp_path: Path) -> None:
    # The failing job writes a new catalogue's row, then fails: its savepoint takes the row
    # with it, and the next job of the same batch must not name the row's id.
    other = (CONTROL_TREATMENT, Treatment(Offer("new"), Channel("h")))
    log = DecisionLog(tmp_path / "d.sqlite")
    try:
        log.append(_decision(1))
        with log._commit_lock:  # both jobs in one batch
            dup = log.submit(
                log.append_job(dataclasses.replace(_decision(2, "e1"), treatments=other), "")
            )
            ok = log.submit(log.append_job(dataclasses.replace(_decision(3), treatments=other), ""))
        assert log.wait(ok) is None
        with pytest.raises(sqlite3.IntegrityError):
            log.wait(dup)
        assert log.get("e3").decision.treatments == other
        assert log.append(dataclasses.replace(_decision(4), treatments=other)) is None
        assert log.get("e4").decision.treatments == other
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


def _downgrade_to_version_1(path: Path) -> None:
    """Rewrite a log as version 1 wrote it: each pmf inside its JSON head, no pmf column."""
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT seq, record, pmf FROM decisions").fetchall()
    for seq, record, packed in rows:
        d = decode_head(record, TREATMENTS, packed)
        conn.execute(
            "UPDATE decisions SET record = ? WHERE seq = ?",
            (_dumps({**_head(d), "schema": 1}), seq),
        )
    conn.execute("ALTER TABLE decisions DROP COLUMN pmf")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()


def test_a_version_1_log_is_read_as_it_is_and_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    log = DecisionLog(path)
    for i in range(5):
        log.append(_decision(i))
    log.close()
    _downgrade_to_version_1(path)

    old = load_sqlite(path, closed_only=False, progress=False)  # read-only: no migration
    assert old.pmf.tolist() == [[0.5, 0.5]] * 5

    log = DecisionLog(path)
    try:
        conn = log._reader()
        assert conn.execute("SELECT value FROM meta").fetchone() == ("2",)
        assert [log.get(f"e{i}").decision for i in range(5)] == [_decision(i) for i in range(5)]
        new = dataclasses.replace(_decision(5), pmf=(0.125, 0.875))
        log.append(new)
        assert log.get("e5").decision == new
        heads = conn.execute("SELECT record, pmf IS NULL FROM decisions ORDER BY seq").fetchall()
        assert [is_null for _, is_null in heads] == [1, 1, 1, 1, 1, 0]  # old rows stay as they are
        assert '"pmf"' not in heads[-1][0]
    finally:
        log.close()
    both = load_sqlite(path, closed_only=False, progress=False)
    assert both.pmf.tolist() == [[0.5, 0.5]] * 5 + [[0.125, 0.875]]


def test_two_openers_of_a_version_1_log_both_get_it_migrated_once(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    log = DecisionLog(path)
    log.append(_decision(1))
    log.close()
    _downgrade_to_version_1(path)
    start = threading.Barrier(2)
    opened: list[DecisionLog] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            opened.append(DecisionLog(path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        assert [lg.get("e1").decision for lg in opened] == [_decision(1)] * 2
    finally:
        for lg in opened:
            lg.close()


class _Collector:
    """A ``notify`` hook that records what the writer thread hands it."""

    def __init__(self) -> None:
        self.batches: list[list[object]] = []
        self.done = threading.Event()
        self.expected = 0

    def __call__(self, items: list[Pending]) -> None:
        self.batches.append([it.token for it in items])
        if sum(map(len, self.batches)) >= self.expected:
            self.done.set()


def test_jobs_nobody_waits_for_are_committed_by_the_writer_and_notified(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.sqlite")
    notify = _Collector()
    notify.expected = 300
    try:
        log.append(_decision(0))  # the catalogue is known: the rest take the batched insert
        items = [log.submit_decision(_decision(i), "", notify, i) for i in range(1, 301)]
        assert notify.done.wait(30)
        assert sorted(t for b in notify.batches for t in b) == list(range(1, 301))  # type: ignore[type-var]
        assert len(notify.batches) < 300  # grouped: one call per committed batch
        assert all(it.done and it.result() is None for it in items)
        assert log.count() == 301
        assert log.get("e300").decision == _decision(300)
    finally:
        log.close()


def test_a_failing_row_in_a_batched_insert_spares_the_others(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.sqlite")
    notify = _Collector()
    notify.expected = 3
    try:
        log.append(_decision(1))
        with log._commit_lock:  # hold the writer so that the three share one batch
            good = log.submit_decision(_decision(2), "", notify, "good")
            dup = log.submit_decision(_decision(3, event_id="e1"), "", notify, "dup")
            other = log.submit_decision(_decision(4), "", notify, "other")
        assert notify.done.wait(30)
        assert good.result() is None
        assert other.result() is None
        with pytest.raises(sqlite3.IntegrityError):
            dup.result()
        assert log.count() == 3
    finally:
        log.close()


def test_waiting_and_notified_jobs_mix_without_stalls(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.sqlite")
    notify = _Collector()
    notify.expected = 800
    errors: list[BaseException] = []

    def waiter(k: int) -> None:
        try:
            for i in range(k * 100, k * 100 + 100):
                assert log.append(_decision(i)) is None
        except BaseException as exc:
            errors.append(exc)

    def submitter() -> None:
        for i in range(10_000, 10_800):
            log.submit_decision(_decision(i), "", notify, i)

    threads = [threading.Thread(target=waiter, args=(k,)) for k in range(4)]
    threads.append(threading.Thread(target=submitter))
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert notify.done.wait(30)
        assert log.count() == 1200
    finally:
        log.close()

"""Who commits a call's write: the call itself when it is alone, the log's writer otherwise.

Either way a call is answered only once its write is committed: each answer is checked
against a fresh connection to the database file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from bandit.commit import Commit
from bandit.eligibility import ChooseInput
from bandit.types import Decision
from server.app import RunningServer, _Loop
from server.client import OfferBanditClient
from tests.conftest import CHANNELS, OFFERS, ServerFactory, customer, trigger


def _committed(db: Path, event_id: str) -> bool:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT 1 FROM decisions WHERE event_id = ?", (event_id,)).fetchone()
    return row is not None


@pytest.fixture
def alone_server(make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    running = make_server()
    # A call that starts right after the previous one ended counts as queued behind it; the
    # client here is quick enough to look like that on a fast machine. No gap is required in
    # this test so that "alone" depends on what is in flight only.
    monkeypatch.setattr(running.servicer.commits, "QUIET_GAP", 0.0)
    return running


def test_a_call_alone_commits_its_own_write_before_answering(
    alone_server: RunningServer, tmp_path: Path
) -> None:
    log = alone_server.service.log
    before = log.commits_in_place
    with OfferBanditClient(alone_server.address) as client:
        for i in range(20):
            answer = client.choose(customer(f"c{i}"), trigger(), OFFERS, CHANNELS)
            assert _committed(log.path, answer.event_id)
            reply = client.record_outcome(f"o{i}", event_id=answer.event_id, revenue=5.0)
            assert reply.event_id == answer.event_id
    assert log.commits_in_place - before == 40  # every call committed its own write


def test_concurrent_calls_leave_commits_to_the_writer(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server()
    # Whether two calls overlap is a matter of timing; a long window and gap make every call
    # after the first sighting of concurrency count as queued, whatever the machine's speed
    # (with the defaults, ~12% committed in place here, but up to 155 of 200 in a slow run).
    monkeypatch.setattr(server.servicer.commits, "WINDOW", 3600.0)
    monkeypatch.setattr(server.servicer.commits, "QUIET_GAP", 3600.0)
    log = server.service.log
    n_threads, per_thread = 8, 25
    start = threading.Barrier(n_threads)
    answered: list[str] = []
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            with OfferBanditClient(server.address) as client:
                client.wait_ready()
                start.wait()
                for i in range(per_thread):
                    answer = client.choose(customer(f"c{k}-{i}"), trigger(), OFFERS, CHANNELS)
                    assert _committed(log.path, answer.event_id)
                    answered.append(answer.event_id)
        except BaseException as exc:
            errors.append(exc)

    before = log.commits_in_place
    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(answered)) == n_threads * per_thread
    # Once calls overlap, the writer commits them (in groups); at most the calls that started
    # before any other was seen commit in place.
    assert log.commits_in_place - before <= n_threads


def test_a_call_alone_that_fails_after_queueing_leaves_its_write_to_the_writer(
    make_server: ServerFactory,
) -> None:
    """A call alone queues its write without waking the writer (it means to commit it
    itself); if it fails or is cancelled before that, the writer is woken to commit it."""
    # No background commit (closing windows) that would commit it by chance meanwhile.
    server = make_server(close_interval_seconds=3600)
    commits = server.servicer.commits
    req = ChooseInput(customer("lonely"), trigger(), OFFERS, CHANNELS)

    queued: list[Commit[Decision]] = []
    decided: list[Decision] = []

    async def fail_after_queueing() -> None:
        with commits.call() as call:
            assert call.alone
            decision, call.commit = server.service.submit_choice(
                req, commits.on_done(commits.future()), hold=True
            )
            assert call.commit is not None
            queued.append(call.commit)
            decided.append(decision)
            raise RuntimeError("after queueing")

    with pytest.raises(RuntimeError, match="after queueing"):
        _Loop.run(fail_after_queueing())
    (commit,) = queued
    deadline = time.monotonic() + 5
    while not commit.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert commit.done
    assert commit.result() is decided[0]  # committed: a new decision

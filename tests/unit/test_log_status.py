"""A log with nothing closed yet: export, eval and uplift say how many decisions are open and
when their windows close, and exit non-zero; a partly open log is used with a note."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from bandit.eligibility import ChooseInput
from bandit.log.reader import Selection, WindowCounts
from bandit.log.sqlite.reader import SqliteLogReader
from bandit.records import Windows
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Channel, Customer, Offer, Trigger
from offline_eval.io.cli_export import main as export_main
from offline_eval.io.status import check_closed, describe
from offline_eval.study.cli_eval import main as eval_main
from offline_eval.uplift.cli_uplift import main as uplift_main

START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
WINDOW = 7 * 86400.0


def _log(data_dir: Path, *, closed: int, open_: int, deferred: int) -> None:
    """A real service log: ``closed`` decisions whose windows closed, then ``open_`` with
    their window running (decided one hour apart), then ``deferred`` never activated."""
    clock = ManualClock(START)
    svc = DecisionService(
        ServiceConfig(
            data_dir=data_dir,
            background=False,
            synchronous="OFF",
            event_id_prefix="00000000000000d5",
            windows=Windows(default=WINDOW),
        ),
        clock,
    )
    svc.start()
    offers, channels = [Offer("o", discount_rate=0.1)], [Channel("email", contact_cost=0.01)]

    def choose(i: int, defer: bool = False) -> None:
        svc.choose(
            ChooseInput(
                Customer(f"c{i}", {"stage": "new"}),
                Trigger("login"),
                offers,
                channels,
                defer_activation=defer,
            )
        )

    for i in range(closed):
        choose(i)
    if closed:
        clock.advance(WINDOW + 1)
        while svc.close_due_windows():
            pass
    for i in range(open_):
        choose(closed + i)
        clock.advance(3600.0)
    for i in range(deferred):
        choose(closed + open_ + i, defer=True)
    svc.log.close()


@pytest.fixture
def open_log(tmp_path: Path) -> Path:
    _log(tmp_path / "open", closed=0, open_=3, deferred=2)
    return tmp_path / "open"


def test_the_reader_counts_closed_open_and_waiting_decisions(tmp_path: Path) -> None:
    _log(tmp_path, closed=4, open_=3, deferred=2)
    with SqliteLogReader(tmp_path) as reader:
        counts = reader.window_counts(Selection())
        assert reader.count(Selection()) == 4  # closed_only: what offline tools load
    first = START + WINDOW + 1 + WINDOW
    assert counts == WindowCounts(9, 4, 3, 2, first, first + 2 * 3600.0)
    with SqliteLogReader(tmp_path) as reader:
        early = reader.window_counts(Selection(until=START + 10))
    assert early == WindowCounts(4, 4, 0, 0, None, None)


def test_nothing_closed_says_how_many_are_open_and_when_they_close(open_log: Path) -> None:
    err = io.StringIO()
    now = START + 86400.0
    assert not check_closed(open_log, prog="offerbandit eval", stream=err, now=now)
    text = err.getvalue()
    assert "nothing to evaluate yet" in text
    assert "5 decisions, none closed yet" in text
    assert "3 with their attribution window open" in text
    assert "from 2023-11-21 22:13 UTC, in 6 d 0 h" in text  # the first window, a week on
    assert "to 2023-11-22 00:13 UTC, in 6 d 2 h" in text
    assert "2 deferred, waiting for Activate" in text


def test_windows_that_ended_wait_for_a_server_to_close_them(open_log: Path) -> None:
    with SqliteLogReader(open_log) as reader:
        text = describe(reader.window_counts(Selection()), now=START + 30 * 86400)
    assert "ago" in text
    assert "close when the server runs" in text


def test_an_empty_log_and_a_partly_open_one(tmp_path: Path) -> None:
    _log(tmp_path / "empty", closed=0, open_=0, deferred=0)
    err = io.StringIO()
    assert not check_closed(tmp_path / "empty", prog="x", stream=err)
    assert "has no decisions" in err.getvalue()
    _log(tmp_path / "part", closed=2, open_=1, deferred=0)
    err = io.StringIO()
    assert check_closed(tmp_path / "part", prog="x", stream=err, loaded=2)
    assert "note: using the 2 closed decisions" in err.getvalue()
    assert "1 with their attribution window open" in err.getvalue()
    err = io.StringIO()
    assert not check_closed(tmp_path / "x.parquet", prog="x", stream=err, loaded=0)
    assert "holds no closed decisions" in err.getvalue()


Main = Callable[[list[str]], int]


@pytest.mark.parametrize(
    ("main", "argv"),
    [
        (export_main, ["--format", "parquet", "--out", "{tmp}/x.parquet", "--quiet"]),
        (eval_main, ["--no-track", "--no-progress"]),
        (uplift_main, ["--no-mlflow", "--no-progress", "--out", "{tmp}/u"]),
    ],
    ids=["export", "eval", "uplift"],
)
def test_the_commands_explain_an_open_log_and_fail(
    main: Main,
    argv: list[str],
    open_log: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["--log", str(open_log), *(a.format(tmp=tmp_path) for a in argv)])
    err = capsys.readouterr().err
    assert code == 1
    assert "nothing to evaluate yet" in err
    assert "5 decisions, none closed yet: 3 with their attribution window open" in err
    assert not (tmp_path / "x.parquet").exists()  # export wrote nothing


def test_a_partly_open_log_is_exported_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _log(tmp_path / "part", closed=3, open_=2, deferred=1)
    argv = ["--log", str(tmp_path / "part"), "--format", "csv", "--out", str(tmp_path / "x.csv")]
    assert export_main([*argv, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "note: using the 3 closed decisions" in err
    assert "2 with their attribution window open" in err
    assert "1 deferred, waiting for Activate" in err
    assert len((tmp_path / "x.csv").read_text().splitlines()) == 1 + 3

"""The decision log's reader (the port's reading side) and voided rows in offline tools.

A real service log, some of whose decisions and outcomes are voided (``offerbandit void``):
every offline reader — loading, estimates, uplift reports, exports — leaves them out by
default, and reads them flagged when asked to.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bandit.eligibility import ChooseInput
from bandit.errors import StorageError
from bandit.log.reader import FeatureKind, LogReader, Selection
from bandit.log.sqlite.reader import SqliteLogReader
from bandit.records import OutcomeInput, Windows
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Channel, Customer, Offer, Trigger
from offline_eval.estimators import SNIPS
from offline_eval.io.cli_export import main as export_main
from offline_eval.io.dsjson import META_KEY
from offline_eval.io.export import export_log, export_outcomes
from offline_eval.io.logs import LoggedBandit, load_outcomes, load_sqlite
from offline_eval.io.read import read_dsjson, read_parquet
from offline_eval.uplift.analysis import uplift_report

START = 1_700_000_000.0
N = 400
N_OPEN = 5
VOIDED_DECISIONS = 40  # every 10th decision
VOIDED_OUTCOMES = 6


def _build(data_dir: Path, log: str = "") -> tuple[list[str], list[str]]:
    """A closed log with purchases (a few open decisions at the end), then voids: every 10th
    decision and a few outcomes of decisions that stay. Returns the voided ids. ``log``: the
    decision log to write (default: SQLite in ``data_dir``)."""
    cfg = ServiceConfig(
        data_dir=data_dir,
        log=log,
        background=False,
        synchronous="OFF",
        event_id_prefix="00000000000000a1",
        windows=Windows(default=60.0),
    )
    clock = ManualClock(START)
    svc = DecisionService(cfg, clock)
    svc.start()
    offers = [Offer("ship", {"kind": "free"}, fixed_cost=2.0), Offer("d10", discount_rate=0.1)]
    channels = [Channel("email", contact_cost=0.01), Channel("sms", contact_cost=0.05)]
    rng = random.Random(11)
    events: list[str] = []
    bought: list[str] = []
    try:
        for i in range(N + N_OPEN):
            if i == N:
                clock.advance(1000.0)
                while svc.close_due_windows():
                    pass
            customer = Customer(
                f"c{i % 50}",
                {"stage": ("new", "active", "lapsed")[i % 3], "ltv": float(i % 9)},
            )
            trigger = Trigger("cart" if i % 2 else "login", {"value": float(i % 5)})
            d = svc.choose(ChooseInput(customer, trigger, offers, channels))
            events.append(d.event_id)
            if rng.random() < 0.5:
                oid = f"o{i}"
                svc.record_outcome(
                    OutcomeInput(oid, d.event_id, "", "purchase", 20.0 + rng.random() * 40, None)
                )
                if i % 10 and i < N:
                    bought.append(oid)
            clock.advance(1.0)
        svc.record_outcome(OutcomeInput("orphan", "", "nobody", "purchase", 5.0, None))
        voided_events = events[0:N:10]
        voided_outcomes = bought[:VOIDED_OUTCOMES]
        now = clock.now()
        assert svc.log.void_decisions(now, voided_events) == VOIDED_DECISIONS
        assert svc.log.void_outcomes(now, voided_outcomes) == VOIDED_OUTCOMES
    finally:
        svc.stop()
    return voided_events, voided_outcomes


@pytest.fixture(scope="module")
def voided_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    d = tmp_path_factory.mktemp("voided")
    events, outcomes = _build(d)
    return d, events, outcomes


@pytest.fixture(scope="module")
def everything(voided_log: tuple[Path, list[str], list[str]]) -> LoggedBandit:
    return load_sqlite(voided_log[0], include_voided=True, progress=False)


def test_the_sqlite_reader_is_a_log_reader(voided_log: tuple[Path, list[str], list[str]]) -> None:
    with SqliteLogReader(voided_log[0]) as reader:
        port: LogReader = reader
        assert port.schema_version == 2
        assert port.source.endswith("decisions.sqlite")
        assert port.count(Selection()) == N - VOIDED_DECISIONS
        assert port.count(Selection(include_voided=True)) == N
        assert port.count(Selection(closed_only=False, include_voided=True)) == N + N_OPEN
        assert port.count(Selection(since=START + 100, until=START + 200)) == 90
        chunks = list(port.decisions(Selection(), chunk_size=7))
        assert {len(c) for c in chunks[:-1]} == {7}
        seqs = [d.seq for c in chunks for d in c]
        assert seqs == sorted(seqs)
        assert len(seqs) == N - VOIDED_DECISIONS
        assert all(d.closed and d.voided_at is None for c in chunks for d in c)
        first = chunks[0][0]
        assert math.isclose(float(first.pmf.sum()), 1.0)
        assert first.propensity == first.pmf[first.chosen]
        customer, trigger = port.feature_kinds(Selection())
        assert customer == {"ltv": FeatureKind.NUMBER, "stage": FeatureKind.TEXT}
        assert trigger == {"value": FeatureKind.NUMBER}
        assert set(port.catalogues()) == set(port.catalogue_texts()) == {first.catalogue_id}


def test_voided_decisions_are_left_out_by_default(
    voided_log: tuple[Path, list[str], list[str]], everything: LoggedBandit
) -> None:
    log, events, _ = voided_log
    lb = load_sqlite(log, progress=False)
    assert lb.n == N - VOIDED_DECISIONS
    assert not set(events) & set(lb.frame["event_id"])
    assert "voided_at" not in lb.frame.columns
    # Asked for, they come flagged; the rest is the default load, row for row.
    assert everything.n == N
    flagged = everything.frame["voided_at"].notna().to_numpy()
    assert set(everything.frame["event_id"][flagged]) == set(events)
    kept = everything.select(~flagged)
    pd.testing.assert_frame_equal(kept.frame.drop(columns="voided_at"), lb.frame)
    np.testing.assert_array_equal(kept.pmf, lb.pmf)


def test_estimates_do_not_count_voided_decisions(
    voided_log: tuple[Path, list[str], list[str]], everything: LoggedBandit
) -> None:
    lb = load_sqlite(voided_log[0], progress=False)
    data = lb.bandit_data()
    target = np.zeros_like(lb.pmf)
    target[:, 0] = 1.0  # all control
    est = SNIPS().estimate(data, target)
    assert est.n == N - VOIDED_DECISIONS
    kept = everything.select(everything.frame["voided_at"].isna().to_numpy())
    assert est.value == SNIPS().estimate(kept.bandit_data(), target).value
    report = uplift_report(lb, min_count=5)
    assert report.policy_incremental.n == int((~lb.frame["holdout"]).sum())
    assert report.policy_incremental.n < everything.n


def test_voided_outcomes_are_left_out_by_default(
    voided_log: tuple[Path, list[str], list[str]],
) -> None:
    log, _, voided = voided_log
    outcomes = load_outcomes(log)
    assert not set(voided) & set(outcomes["outcome_id"])
    assert "voided_at" not in outcomes.columns
    all_outcomes = load_outcomes(log, include_voided=True)
    assert len(all_outcomes) == len(outcomes) + VOIDED_OUTCOMES
    assert set(all_outcomes["outcome_id"][all_outcomes["voided_at"].notna()]) == set(voided)
    assert list(outcomes["received_at"]) == sorted(outcomes["received_at"])


@pytest.mark.parametrize("fmt", ["parquet", "dsjson", "csv"])
def test_exports_leave_voided_rows_out(
    voided_log: tuple[Path, list[str], list[str]], fmt: str, tmp_path: Path
) -> None:
    log, events, voided = voided_log
    out = tmp_path / f"log.{fmt}"
    outcomes = tmp_path / "outcomes.parquet"
    result = export_log(log, out, fmt=fmt, outcomes_out=outcomes, progress=False)
    assert result.rows == N - VOIDED_DECISIONS
    if fmt == "csv":
        ids = set(pd.read_csv(out)["event_id"])
    else:
        ids = set((read_parquet(out) if fmt == "parquet" else read_dsjson(out, progress=False))
                  .frame["event_id"])  # fmt: skip
    assert len(ids) == result.rows
    assert not ids & set(events)
    assert not set(voided) & set(pd.read_parquet(outcomes)["outcome_id"])
    assert result.outcomes == len(load_outcomes(log))


@pytest.mark.parametrize("fmt", ["parquet", "dsjson"])
def test_exports_with_voided_rows_flag_them(
    voided_log: tuple[Path, list[str], list[str]],
    everything: LoggedBandit,
    fmt: str,
    tmp_path: Path,
) -> None:
    log, events, _ = voided_log
    out = tmp_path / f"log.{fmt}"
    result = export_log(log, out, fmt=fmt, include_voided=True, progress=False)
    assert result.rows == N
    back = read_parquet(out) if fmt == "parquet" else read_dsjson(out, progress=False)
    flagged = back.frame["voided_at"].notna()
    assert set(back.frame["event_id"][flagged]) == set(events)
    np.testing.assert_allclose(back.frame["voided_at"], everything.frame["voided_at"])
    if fmt == "dsjson":
        line = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
        assert line[META_KEY]["voided_at"] is not None  # the first decision is voided


def test_outcome_export_with_voided_rows(
    voided_log: tuple[Path, list[str], list[str]], tmp_path: Path
) -> None:
    log, _, voided = voided_log
    out = tmp_path / "o.csv"
    n = export_outcomes(log, out, fmt="csv", include_voided=True)
    df = pd.read_csv(out)
    assert n == len(df) == len(load_outcomes(log)) + VOIDED_OUTCOMES
    assert set(df["outcome_id"][df["voided_at"].notna()]) == set(voided)


def test_the_export_command_includes_voided_rows_on_request(
    voided_log: tuple[Path, list[str], list[str]], tmp_path: Path
) -> None:
    log = voided_log[0]
    out = tmp_path / "all.parquet"
    argv = ["--log", str(log), "--format", "parquet", "--out", str(out), "--quiet"]
    assert export_main([*argv, "--include-voided"]) == 0
    assert read_parquet(out).n == N
    assert export_main(argv) == 0
    assert read_parquet(out).n == N - VOIDED_DECISIONS


def test_a_log_from_before_voiding_is_read(tmp_path: Path) -> None:
    """A log without the ``voided_at`` columns (read-only readers cannot add them)."""
    _build_plain(tmp_path)
    with sqlite3.connect(tmp_path / "decisions.sqlite") as db:
        db.execute("ALTER TABLE decisions DROP COLUMN voided_at")
        db.execute("ALTER TABLE outcomes DROP COLUMN voided_at")
    lb = load_sqlite(tmp_path, include_voided=True, progress=False)
    assert lb.n == 3
    assert lb.frame["voided_at"].isna().all()
    assert load_sqlite(tmp_path, progress=False).n == 3
    assert len(load_outcomes(tmp_path)) == 1


def _build_plain(data_dir: Path) -> None:
    clock = ManualClock(START)
    cfg = ServiceConfig(data_dir=data_dir, background=False, windows=Windows(default=10.0))
    svc = DecisionService(cfg, clock)
    svc.start()
    try:
        req = ChooseInput(Customer("c", {}), Trigger("t"), [Offer("o")], [Channel("e")])
        ds = [svc.choose(req) for _ in range(3)]
        svc.record_outcome(OutcomeInput("o1", ds[0].event_id, "", "purchase", 9.0, None))
        clock.advance(11)
        svc.close_due_windows()
    finally:
        svc.stop()


def test_a_file_that_is_not_a_log_is_a_storage_error(tmp_path: Path) -> None:
    bad = tmp_path / "decisions.sqlite"
    bad.write_bytes(b"not a database, just bytes " * 100)
    with pytest.raises(StorageError, match=r"decisions\.sqlite"):
        SqliteLogReader(bad)
    with pytest.raises(FileNotFoundError, match="no decision log"):
        SqliteLogReader(tmp_path / "nowhere")
    argv = ["--log", str(bad), "--format", "csv", "--out", str(tmp_path / "x.csv"), "--quiet"]
    assert export_main(argv) == 1

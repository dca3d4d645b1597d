"""Offline tools on a PostgreSQL log, through the port's reader: the same log written once to
SQLite and once to PostgreSQL (same seeds, same clock) reads back the same — decisions in
chunks, feature kinds, outcomes — and ``export``, ``uplift`` and ``eval`` accept
``--log postgresql://…``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bandit.log.backends import open_log_reader
from bandit.log.postgres.reader import PostgresLogReader, redacted
from bandit.log.reader import LogReader, Selection
from offline_eval.io.cli_export import main as export_main
from offline_eval.io.read import read_parquet
from offline_eval.study.cli_eval import main as eval_main
from offline_eval.uplift.cli_uplift import main as uplift_main
from tests.pg import fresh_schema
from tests.unit.test_log_reader import N_OPEN, VOIDED_DECISIONS, N, _build


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The same log on SQLite (a data folder) and on PostgreSQL (a URL)."""
    folder = tmp_path_factory.mktemp("sqlite")
    on_sqlite = _build(folder)
    with fresh_schema("offline") as dsn:
        assert _build(tmp_path_factory.mktemp("pg"), log=dsn) == on_sqlite
        yield folder, dsn


def _all(reader: LogReader, selection: Selection, chunk: int) -> list[object]:
    rows = []
    for part in reader.decisions(selection, chunk):
        assert 0 < len(part) <= chunk
        rows += [(d.event_id, d.seq, d.reward, d.revenue, d.voided_at, d.closed,
                  d.customer_features, tuple(d.pmf)) for d in part]  # fmt: skip
    return rows


def test_the_postgres_reader_reads_what_the_sqlite_reader_reads(logs: tuple[Path, str]) -> None:
    folder, dsn = logs
    lite, pg = open_log_reader(folder), open_log_reader(dsn)
    try:
        assert isinstance(pg, PostgresLogReader)
        assert pg.source == redacted(dsn)
        for sel in (Selection(), Selection(include_voided=True), Selection(closed_only=False),
                    Selection(since=1_700_000_100.0, until=1_700_000_200.0)):  # fmt: skip
            assert pg.count(sel) == lite.count(sel)
            assert _all(pg, sel, 7) == _all(lite, sel, 50)
        assert pg.count(Selection(closed_only=False, include_voided=True)) == N + N_OPEN
        assert pg.feature_kinds(Selection()) == lite.feature_kinds(Selection())
        assert list(pg.catalogues().values()) == list(lite.catalogues().values())
        mine = [o for c in pg.outcomes(include_voided=True, chunk_size=9) for o in c]
        theirs = [o for c in lite.outcomes(include_voided=True, chunk_size=100) for o in c]
        assert mine == theirs
    finally:
        lite.close()
        pg.close()


def test_export_reads_a_postgres_log(logs: tuple[Path, str], tmp_path: Path) -> None:
    folder, dsn = logs
    frames = []
    for source in (str(folder), dsn):
        out = tmp_path / f"{len(frames)}.parquet"
        argv = ["--log", source, "--format", "parquet", "--out", str(out), "--quiet"]
        assert export_main([*argv, "--chunk-size", "11"]) == 0
        frames.append(read_parquet(out))
    assert frames[1].n == frames[0].n == N - VOIDED_DECISIONS
    a, b = frames[0].frame, frames[1].frame
    pd.testing.assert_frame_equal(a.drop(columns=["seq"], errors="ignore"),
                                  b.drop(columns=["seq"], errors="ignore"))  # fmt: skip
    assert np.array_equal(frames[0].pmf, frames[1].pmf)


def test_uplift_and_eval_read_a_postgres_log(
    logs: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _folder, dsn = logs
    argv = ["--log", dsn, "--by", "stage", "--min-count", "5", "--no-mlflow", "--no-progress"]
    assert uplift_main([*argv, "--out", str(tmp_path / "u")]) == 0
    assert "live policy:" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # a URL's default output folder is ./eval, not the URL
    code = eval_main(["--log", dsn, "--policy", "uniform", "--policy", "control",
                      "--estimators", "ips,snips", "--no-track", "--no-progress"])  # fmt: skip
    assert code == 0
    assert "uniform" in capsys.readouterr().out
    assert (tmp_path / "eval" / "results.json").exists()
    assert not (tmp_path / "postgresql:").exists()


def test_a_password_never_reaches_a_report() -> None:
    assert redacted("postgresql://app:s3cret@db/x") == "postgresql://app@db/x"

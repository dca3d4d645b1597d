"""The SQLite decision log read back for offline analysis (:class:`~bandit.log.reader.LogReader`).

The file is opened read-only, so it can be read while the service writes (WAL). A reader
covers the decisions up to the last ``seq`` at opening; each chunk is one short query (no
long read transaction holds the WAL back), so a decision's state (closed, reward) is the one
it has when its chunk is read. The columns are :mod:`.schema`'s; a version-1 log (pmf in the
JSON head) and a log from before voiding (no ``voided_at``) are read as they are.

Errors of the file itself (not a database, corrupt) are raised as
:class:`~bandit.errors.StorageError`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from bandit.errors import StorageError
from bandit.log.reader import (
    DECISION_COLUMNS,
    FeatureKind,
    LoggedDecision,
    LoggedOutcome,
    Selection,
    WindowCounts,
    decision_from_row,
    selection_sql,
)
from bandit.log.sqlite.schema import schema_version_of
from bandit.logcodec import PMF_IN_HEAD_SCHEMA, SCHEMA_VERSION, decode_catalogue
from bandit.types import Treatment

LOG_FILE: Final = "decisions.sqlite"
"""The log's file name inside a data folder."""

_KIND_OF_JSON_TYPE: Final = {
    "integer": FeatureKind.NUMBER,
    "real": FeatureKind.NUMBER,
    "text": FeatureKind.TEXT,
    "true": FeatureKind.FLAG,
    "false": FeatureKind.FLAG,
    "array": FeatureKind.TAGS,
}

_OUTCOME_COLUMNS: Final = (
    "outcome_id, event_id, customer_id, type, revenue, occurred_at, received_at, status"
)


def log_file(path: str | Path) -> Path:
    """The log file of ``path``: a data folder or the ``decisions.sqlite`` file itself."""
    p = Path(path)
    return p / LOG_FILE if p.is_dir() else p


@contextmanager
def _storage_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as e:
        raise StorageError(f"{path}: {e}") from e


class SqliteLogReader:
    """A read-only, chunked reader of a SQLite decision log.

    ``path`` is a data folder or its ``decisions.sqlite``. Raises ``FileNotFoundError``
    when there is no log, ``ValueError`` for a schema version this code does not read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = log_file(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no decision log at {self.path}")
        with _storage_errors(self.path):
            self._conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
            )
            try:
                self._open()
            except BaseException:
                self._conn.close()
                raise

    def _open(self) -> None:
        conn = self._conn
        self._schema = schema_version_of(conn)
        if self._schema not in (PMF_IN_HEAD_SCHEMA, SCHEMA_VERSION):
            raise ValueError(
                f"{self.path} is a decision log of schema version {self._schema}; this "
                f"offerbandit reads versions {PMF_IN_HEAD_SCHEMA} and {SCHEMA_VERSION}"
            )
        decision_columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(decisions)")}
        outcome_columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(outcomes)")}
        self._pmf = "pmf" if "pmf" in decision_columns else "NULL"
        self._voided = "voided_at" if "voided_at" in decision_columns else "NULL"
        self._outcome_voided = "voided_at" if "voided_at" in outcome_columns else "NULL"
        self._last_seq = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM decisions")
                             .fetchone()[0])  # fmt: skip
        # Read after the last seq: every catalogue a covered decision uses is committed.
        self._texts = {int(cid): str(body) for cid, body in conn.execute(
            "SELECT id, body FROM catalogues")}  # fmt: skip
        self._decoded: dict[int, tuple[Treatment, ...]] | None = None

    # ---- LogReader ---------------------------------------------------------------------

    @property
    def source(self) -> str:
        return str(self.path)

    @property
    def schema_version(self) -> int:
        return self._schema

    def catalogues(self) -> Mapping[int, tuple[Treatment, ...]]:
        if self._decoded is None:
            self._decoded = {cid: decode_catalogue(t) for cid, t in self._texts.items()}
        return self._decoded

    def catalogue_texts(self) -> Mapping[int, str]:
        return self._texts

    def count(self, selection: Selection) -> int:
        where, params = self._where(selection)
        with _storage_errors(self.path):
            row = self._conn.execute(
                f"SELECT COUNT(*) FROM decisions WHERE seq <= ?{where}", (self._last_seq, *params)
            ).fetchone()
        return int(row[0])

    def window_counts(self, selection: Selection) -> WindowCounts:
        where, params = self._where(replace(selection, closed_only=False))
        sql = (
            "SELECT COUNT(*), COUNT(closed_seq),"
            " SUM(closed_seq IS NULL AND window_closes_at IS NOT NULL),"
            " SUM(closed_seq IS NULL AND window_closes_at IS NULL),"
            " MIN(CASE WHEN closed_seq IS NULL THEN window_closes_at END),"
            " MAX(CASE WHEN closed_seq IS NULL THEN window_closes_at END)"
            f" FROM decisions WHERE seq <= ?{where}"
        )
        with _storage_errors(self.path):
            n, closed, open_, waiting, first, last = self._conn.execute(
                sql, (self._last_seq, *params)
            ).fetchone()
        return WindowCounts(
            int(n), int(closed), int(open_ or 0), int(waiting or 0),
            None if first is None else float(first), None if last is None else float(last),
        )  # fmt: skip

    def decisions(self, selection: Selection, chunk_size: int) -> Iterator[list[LoggedDecision]]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        where, params = self._where(selection)
        sql = (
            f"SELECT {DECISION_COLUMNS},"
            f" {self._pmf}, {self._voided} FROM decisions"
            f" WHERE seq > ? AND seq <= ?{where} ORDER BY seq LIMIT ?"
        )
        last = 0
        while True:
            with _storage_errors(self.path):
                rows = self._conn.execute(
                    sql, (last, self._last_seq, *params, chunk_size)
                ).fetchall()
            if not rows:
                return
            yield [decision_from_row(row) for row in rows]
            last = rows[-1][0]

    def feature_kinds(
        self, selection: Selection
    ) -> tuple[dict[str, FeatureKind], dict[str, FeatureKind]]:
        """SQLite's JSON functions scan the records in C; a name seen with several kinds is
        :attr:`FeatureKind.MIXED`."""
        where, params = self._where(selection)
        found: list[dict[str, FeatureKind]] = []
        for part in ("customer", "trigger"):
            kinds: dict[str, FeatureKind] = {}
            sql = (
                f"SELECT j.key, j.type FROM decisions, json_each(record, '$.{part}.features') j"
                f" WHERE seq <= ?{where} GROUP BY j.key, j.type ORDER BY j.key"
            )
            with _storage_errors(self.path):
                rows = self._conn.execute(sql, (self._last_seq, *params)).fetchall()
            for key, jtype in rows:
                kind = _KIND_OF_JSON_TYPE.get(str(jtype))
                if kind is None:
                    continue
                name = str(key)
                kinds[name] = kind if kinds.get(name, kind) == kind else FeatureKind.MIXED
            found.append(kinds)
        return found[0], found[1]

    def outcomes(
        self, *, since: float | None = None, include_voided: bool = False, chunk_size: int
    ) -> Iterator[list[LoggedOutcome]]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        clauses = "" if since is None else " AND occurred_at >= ?"
        if not include_voided and self._outcome_voided != "NULL":
            clauses += " AND voided_at IS NULL"
        sql = (
            f"SELECT rowid, {_OUTCOME_COLUMNS}, {self._outcome_voided} FROM outcomes"
            f" WHERE rowid > ?{clauses} ORDER BY rowid LIMIT ?"
        )
        last = 0
        while True:
            params = (last,) + (() if since is None else (since,)) + (chunk_size,)
            with _storage_errors(self.path):
                rows = self._conn.execute(sql, params).fetchall()
            if not rows:
                return
            yield [LoggedOutcome(*row[1:]) for row in rows]
            last = rows[-1][0]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SqliteLogReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _where(self, selection: Selection) -> tuple[str, Sequence[Any]]:
        return selection_sql(selection, "?", voided=self._voided != "NULL")


__all__ = ["LOG_FILE", "SqliteLogReader", "log_file"]

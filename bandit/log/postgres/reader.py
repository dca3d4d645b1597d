"""The PostgreSQL decision log read back for offline analysis
(:class:`~bandit.log.reader.LogReader`), as the SQLite reader reads its file.

A reader covers the decisions up to the last ``seq`` at opening and reads them in ``seq``
order, ``chunk_size`` rows per query (keyset pagination: no long transaction, memory bounded
by the chunk). Feature kinds are worked out by PostgreSQL's JSON functions, not in Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from types import TracebackType
from typing import Any, Final

import psycopg

from bandit.errors import StorageError
from bandit.log.postgres.schema import current_version
from bandit.log.postgres.store import connect
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
from bandit.logcodec import SCHEMA_VERSION, decode_catalogue
from bandit.types import Treatment

_KIND_OF_JSON_TYPE: Final = {
    "number": FeatureKind.NUMBER,
    "string": FeatureKind.TEXT,
    "boolean": FeatureKind.FLAG,
    "array": FeatureKind.TAGS,
}

_OUTCOME_COLUMNS: Final = (
    "outcome_id, event_id, customer_id, type, revenue, occurred_at, received_at, status, voided_at"
)


@contextmanager
def _storage_errors(source: str) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as e:
        raise StorageError(f"{source}: {e}") from e


def redacted(dsn: str) -> str:
    """``dsn`` without a password, for reports.

    >>> redacted("postgresql://app:secret@db:5432/offers")
    'postgresql://app@db:5432/offers'
    """
    head, sep, tail = dsn.partition("://")
    auth, at, rest = tail.rpartition("@")
    if not at:
        return dsn
    return f"{head}{sep}{auth.split(':', 1)[0]}@{rest}"


class PostgresLogReader:
    """A read-only, chunked reader of a PostgreSQL decision log at ``dsn``."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._source = redacted(dsn)
        self._conn = connect(dsn, application="offerbandit-reader")
        try:
            with _storage_errors(self._source):
                if current_version(self._conn) == 0:
                    raise FileNotFoundError(f"no decision log at {self._source}")
                row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM decisions").fetchone()
                self._last_seq = int(row[0]) if row else 0
                self._texts = {
                    int(cid): str(body)
                    for cid, body in self._conn.execute("SELECT id, body FROM catalogues")
                }
        except BaseException:
            self._conn.close()
            raise
        self._decoded: dict[int, tuple[Treatment, ...]] | None = None

    @property
    def source(self) -> str:
        return self._source

    @property
    def schema_version(self) -> int:
        """The record format's version (:data:`bandit.logcodec.SCHEMA_VERSION`); the
        table layout's migrations are :mod:`.schema`'s."""
        return SCHEMA_VERSION

    def catalogues(self) -> Mapping[int, tuple[Treatment, ...]]:
        if self._decoded is None:
            self._decoded = {cid: decode_catalogue(t) for cid, t in self._texts.items()}
        return self._decoded

    def catalogue_texts(self) -> Mapping[int, str]:
        return self._texts

    def count(self, selection: Selection) -> int:
        where, params = _where(selection)
        with _storage_errors(self._source):
            row = self._conn.execute(
                f"SELECT COUNT(*) FROM decisions WHERE seq <= %s{where}",
                (self._last_seq, *params),
            ).fetchone()
        return int(row[0]) if row else 0

    def window_counts(self, selection: Selection) -> WindowCounts:
        where, params = _where(replace(selection, closed_only=False))
        sql = (
            "SELECT COUNT(*), COUNT(closed_seq),"
            " COUNT(*) FILTER (WHERE closed_seq IS NULL AND window_closes_at IS NOT NULL),"
            " COUNT(*) FILTER (WHERE closed_seq IS NULL AND window_closes_at IS NULL),"
            " MIN(window_closes_at) FILTER (WHERE closed_seq IS NULL),"
            " MAX(window_closes_at) FILTER (WHERE closed_seq IS NULL)"
            f" FROM decisions WHERE seq <= %s{where}"
        )
        with _storage_errors(self._source):
            row = self._conn.execute(sql, (self._last_seq, *params)).fetchone()
        assert row is not None  # an aggregate always has its row
        n, closed, open_, waiting, first, last = row
        return WindowCounts(
            int(n), int(closed), int(open_ or 0), int(waiting or 0),
            None if first is None else float(first), None if last is None else float(last),
        )  # fmt: skip

    def decisions(self, selection: Selection, chunk_size: int) -> Iterator[list[LoggedDecision]]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        where, params = _where(selection)
        sql = (
            f"SELECT {DECISION_COLUMNS},"
            " pmf, voided_at FROM decisions"
            f" WHERE seq > %s AND seq <= %s{where} ORDER BY seq LIMIT %s"
        )
        last = 0
        while True:
            with _storage_errors(self._source):
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
        where, params = _where(selection)
        found: list[dict[str, FeatureKind]] = []
        for part in ("customer", "trigger"):
            kinds: dict[str, FeatureKind] = {}
            sql = (
                "SELECT j.key, jsonb_typeof(j.value) FROM decisions,"
                f" jsonb_each(record::jsonb -> '{part}' -> 'features') j"
                f" WHERE seq <= %s{where} GROUP BY 1, 2 ORDER BY 1"
            )
            with _storage_errors(self._source):
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
        clauses = "" if since is None else " AND occurred_at >= %s"
        if not include_voided:
            clauses += " AND voided_at IS NULL"
        sql = (
            f"SELECT arrival, {_OUTCOME_COLUMNS} FROM outcomes"
            f" WHERE arrival > %s{clauses} ORDER BY arrival LIMIT %s"
        )
        last = 0
        while True:
            params = (last,) + (() if since is None else (since,)) + (chunk_size,)
            with _storage_errors(self._source):
                rows = self._conn.execute(sql, params).fetchall()
            if not rows:
                return
            yield [LoggedOutcome(*row[1:]) for row in rows]
            last = rows[-1][0]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PostgresLogReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _where(selection: Selection) -> tuple[str, Sequence[Any]]:
    return selection_sql(selection, "%s")


__all__ = ["PostgresLogReader", "redacted"]

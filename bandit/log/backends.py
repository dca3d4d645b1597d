"""Which implementation of the decision log's port a ``log`` setting selects.

Empty (the default): the embedded SQLite log in the data folder. ``postgresql://…``: the
shared PostgreSQL log (:mod:`bandit.log.postgres`, psycopg imported only then). Anything
else: a SQLite file or data folder.

>>> is_postgres_url("postgresql://app@db/offers"), is_postgres_url("")
(True, False)
"""

from __future__ import annotations

from pathlib import Path

from bandit.log import DecisionLog
from bandit.log.reader import LogReader
from bandit.records import Windows
from bandit.rewards import RewardRule


def is_postgres_url(spec: str) -> bool:
    """Whether ``spec`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return spec.startswith(("postgresql://", "postgres://"))


def open_decision_log(
    spec: str,
    sqlite_path: Path,
    *,
    windows: Windows,
    reward_rule: RewardRule,
    synchronous: str = "FULL",
) -> DecisionLog:
    """The writable log ``spec`` names (empty: SQLite at ``sqlite_path``)."""
    if is_postgres_url(spec):
        from bandit.log.postgres import PostgresDecisionLog

        return PostgresDecisionLog(spec, windows=windows, reward_rule=reward_rule)
    from bandit.log.sqlite import SqliteDecisionLog

    return SqliteDecisionLog(
        Path(spec) if spec else sqlite_path,
        windows=windows,
        reward_rule=reward_rule,
        synchronous=synchronous,
    )


def open_log_reader(spec: str | Path) -> LogReader:
    """An offline reader of the log ``spec`` names: a PostgreSQL URL, a data folder or a
    SQLite file."""
    if isinstance(spec, str) and is_postgres_url(spec):
        from bandit.log.postgres.reader import PostgresLogReader

        return PostgresLogReader(spec)
    from bandit.log.sqlite.reader import SqliteLogReader

    return SqliteLogReader(spec)


__all__ = ["is_postgres_url", "open_decision_log", "open_log_reader"]

"""The SQLite decision log's schema and its migrations."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from bandit.log.sqlite.retention import RETENTION_SCHEMA
from bandit.logcodec import PMF_IN_HEAD_SCHEMA, SCHEMA_VERSION

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalogues (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    request_id TEXT,
    request_hash TEXT,
    customer_id TEXT NOT NULL,
    decided_at REAL NOT NULL,
    deferred INTEGER NOT NULL,
    activated_at REAL,
    window_closes_at REAL,
    chosen_offer TEXT NOT NULL,
    chosen_channel TEXT NOT NULL,
    is_control INTEGER NOT NULL,
    holdout INTEGER NOT NULL DEFAULT 0,
    propensity REAL NOT NULL,
    fixed_cost REAL NOT NULL,
    discount_rate REAL NOT NULL,
    contact_cost REAL NOT NULL,
    model_version TEXT NOT NULL,
    policy TEXT NOT NULL,
    catalogue_id INTEGER NOT NULL REFERENCES catalogues (id),
    record TEXT NOT NULL,
    n_outcomes INTEGER NOT NULL DEFAULT 0,
    revenue REAL NOT NULL DEFAULT 0,
    closed_seq INTEGER,
    closed_at REAL,
    reward REAL,
    pmf BLOB,
    voided_at REAL,
    contact_policy TEXT,
    removed TEXT,
    outcome_value REAL
);
CREATE INDEX IF NOT EXISTS decisions_customer ON decisions (customer_id, activated_at);
CREATE INDEX IF NOT EXISTS decisions_open ON decisions (window_closes_at)
    WHERE closed_seq IS NULL AND window_closes_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS decisions_closed_at ON decisions (closed_at)
    WHERE closed_at IS NOT NULL;
-- Partial indexes: a decision is inserted with no request id (usually), no closed_seq and no
-- closed_at, and then costs no index writes for them.
CREATE UNIQUE INDEX IF NOT EXISTS decisions_request ON decisions (request_id)
    WHERE request_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS decisions_closed_seq ON decisions (closed_seq)
    WHERE closed_seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS outcomes (
    outcome_id TEXT PRIMARY KEY,
    event_id TEXT,
    customer_id TEXT,
    type TEXT NOT NULL,
    revenue REAL NOT NULL,
    occurred_at REAL NOT NULL,
    received_at REAL NOT NULL,
    status TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    voided_at REAL
);
CREATE INDEX IF NOT EXISTS outcomes_event ON outcomes (event_id);
"""

CONTACT_SCHEMA = (
    """
CREATE INDEX IF NOT EXISTS outcomes_customer ON outcomes (customer_id, type)
    WHERE customer_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS offer_spend (offer_id TEXT PRIMARY KEY, money REAL NOT NULL);
"""
    + RETENTION_SCHEMA
)
"""What contact policies read (:mod:`.contacts`): a customer's outcomes by their id, the
money charged per offer, and what retention keeps for them (:mod:`.retention`). Created
with a new log and added to an older one on open."""


def schema_version_of(conn: sqlite3.Connection) -> int:
    """The schema version a decision log records in its ``meta`` table (0 if none)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def add_void_columns(conn: sqlite3.Connection) -> None:
    """``voided_at`` on decisions and outcomes (nullable, additive: readers that do not
    know it are unaffected, so the schema version stays)."""
    for table in ("decisions", "outcomes"):
        columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if "voided_at" not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN voided_at REAL")


def add_contact_columns(conn: sqlite3.Connection) -> None:
    """The contact policy's part of the log (additive, so the schema version stays):
    ``contact_policy`` (the digest a decision was made under) and ``removed`` (JSON
    ``[[offer, channel, rule], …]``: what the policy removed) and ``outcome_value`` (the
    summed values of its attributed outcomes' types, :mod:`bandit.rewards`) on decisions, and
    :data:`CONTACT_SCHEMA`."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
    for name, kind in (("contact_policy", "TEXT"), ("removed", "TEXT"), ("outcome_value", "REAL")):
        if name not in columns:
            conn.execute(f"ALTER TABLE decisions ADD COLUMN {name} {kind}")
    conn.executescript(CONTACT_SCHEMA)


def migrate_from_1(conn: sqlite3.Connection, path: Path) -> None:
    """Version 1 kept each pmf inside the JSON head; version 2 packs new ones into a
    column. Old rows keep theirs (readers take the head's when the column is NULL)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if schema_version_of(conn) != PMF_IN_HEAD_SCHEMA:  # migrated meanwhile
            conn.execute("COMMIT")
            return
        conn.execute("ALTER TABLE decisions ADD COLUMN pmf BLOB")
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    log.info("decision log %s migrated from schema version 1 to %d", path, SCHEMA_VERSION)


__all__ = [
    "CONTACT_SCHEMA",
    "SCHEMA",
    "add_contact_columns",
    "add_void_columns",
    "migrate_from_1",
    "schema_version_of",
]

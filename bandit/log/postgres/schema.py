"""The PostgreSQL decision log's schema, as numbered migrations.

Each migration runs once, in its own transaction, and records its number in
``schema_migrations``; several processes opening the log at once take a transaction-level
advisory lock first, so exactly one of them applies what is missing and the others find it
done. A log whose newest migration is beyond what this code knows refuses to open (it was
written by a newer offerbandit).

The tables mirror the SQLite log's (:mod:`bandit.log.sqlite.schema`) with PostgreSQL's
types. Two additions make the cross-process guarantees hold without process memory:
``log_counters`` holds the last ``closed_seq`` (its row lock orders closings across
processes, so a learner reading ``closed_seq > position`` never misses one), and the unique
constraints on ``event_id``, ``request_id`` and ``outcome_id`` make retries idempotent
whichever process they reach.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import psycopg

from bandit.errors import StorageError

log = logging.getLogger(__name__)

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the log as the SQLite log's schema version 2 holds it, with contact policies
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE catalogues (
        id BIGSERIAL PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL
    );
    CREATE TABLE decisions (
        seq BIGSERIAL PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        request_id TEXT UNIQUE,
        request_hash TEXT,
        customer_id TEXT NOT NULL,
        decided_at DOUBLE PRECISION NOT NULL,
        deferred BOOLEAN NOT NULL,
        activated_at DOUBLE PRECISION,
        window_closes_at DOUBLE PRECISION,
        chosen_offer TEXT NOT NULL,
        chosen_channel TEXT NOT NULL,
        is_control BOOLEAN NOT NULL,
        holdout BOOLEAN NOT NULL DEFAULT FALSE,
        propensity DOUBLE PRECISION NOT NULL,
        fixed_cost DOUBLE PRECISION NOT NULL,
        discount_rate DOUBLE PRECISION NOT NULL,
        contact_cost DOUBLE PRECISION NOT NULL,
        model_version TEXT NOT NULL,
        policy TEXT NOT NULL,
        catalogue_id BIGINT NOT NULL REFERENCES catalogues (id),
        record TEXT NOT NULL,
        n_outcomes INTEGER NOT NULL DEFAULT 0,
        revenue DOUBLE PRECISION NOT NULL DEFAULT 0,
        closed_seq BIGINT UNIQUE,
        closed_at DOUBLE PRECISION,
        reward DOUBLE PRECISION,
        pmf BYTEA,
        voided_at DOUBLE PRECISION,
        contact_policy TEXT,
        removed TEXT,
        outcome_value DOUBLE PRECISION
    );
    CREATE INDEX decisions_customer ON decisions (customer_id, activated_at);
    CREATE INDEX decisions_open ON decisions (window_closes_at)
        WHERE closed_seq IS NULL AND window_closes_at IS NOT NULL;
    CREATE INDEX decisions_closed_at ON decisions (closed_at) WHERE closed_at IS NOT NULL;
    CREATE INDEX decisions_offer ON decisions (chosen_offer, decided_at)
        WHERE NOT is_control;
    CREATE TABLE outcomes (
        arrival BIGSERIAL NOT NULL UNIQUE,
        outcome_id TEXT PRIMARY KEY,
        event_id TEXT,
        customer_id TEXT,
        type TEXT NOT NULL,
        revenue DOUBLE PRECISION NOT NULL,
        occurred_at DOUBLE PRECISION NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        payload_hash TEXT NOT NULL,
        voided_at DOUBLE PRECISION
    );
    CREATE INDEX outcomes_event ON outcomes (event_id);
    CREATE INDEX outcomes_customer ON outcomes (customer_id, type)
        WHERE customer_id IS NOT NULL;
    CREATE TABLE offer_spend (offer_id TEXT PRIMARY KEY, money DOUBLE PRECISION NOT NULL);
    CREATE TABLE log_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
    INSERT INTO log_counters (name, value) VALUES ('closed_seq', 0);
    """,
)
"""Migration ``n`` is ``MIGRATIONS[n - 1]``; append, never edit one that has shipped."""

_MIGRATION_LOCK: Final = 0x0FB0
"""Advisory lock class of schema migrations (with the schema's hash as the key)."""


def current_version(conn: psycopg.Connection[Any]) -> int:
    """The newest migration applied to the log in the connection's schema (0: none)."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    found = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(found[0]) if found else 0


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Apply the migrations the log lacks (the connection is in autocommit mode); returns
    the schema version it is at."""
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_MIGRATION_LOCK,)
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        found = current_version(conn)
        if found > len(MIGRATIONS):
            raise StorageError(
                f"the decision log has schema migration {found}; this offerbandit knows "
                f"migrations up to {len(MIGRATIONS)}. Upgrade offerbandit to open it."
            )
        for version in range(found + 1, len(MIGRATIONS) + 1):
            conn.execute(MIGRATIONS[version - 1].encode())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            log.info("decision log migrated to schema migration %d", version)
    return len(MIGRATIONS)


__all__ = ["MIGRATIONS", "current_version", "migrate"]

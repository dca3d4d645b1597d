"""Erasure of one customer from the SQLite decision log (the right to be forgotten).

Every decision and outcome of the customer stays (the business's figures do not change),
but the customer id becomes a pseudonym — ``erased:`` and 16 random hex digits, the same for
all of that customer's rows and kept nowhere, so nothing links it back — and the customer's
features are removed from each decision's record. What the log held is overwritten, not
just unlinked: the erasure runs with ``secure_delete`` (freed space is zeroed) and then
checkpoints the WAL and truncates it, so neither the database file nor its WAL keeps the
old bytes. A server may be running meanwhile: the erasure is one write transaction like any
other (it waits its turn), and the WAL is truncated as soon as no reader holds it.

What this cannot erase is documented in docs/operations.md: the model's weights (a
feature *value* the uplift model took as a token stays in its token table until a model is
trained without it), and copies made before (exports, backups).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Erasure:
    """What one erasure changed."""

    pseudonym: str
    decisions: int
    outcomes: int
    wal_truncated: bool
    """False when a reader held the WAL past the wait: run the erasure again (it finds
    nothing left to change and truncates the WAL) or stop the server."""


def erase_customer(path: Path, customer_id: str, wait_seconds: float = 30.0) -> Erasure:
    """Pseudonymise ``customer_id`` and drop their features in the log at ``path``."""
    if not customer_id:
        raise ValueError("customer_id: required")
    pseudonym = f"erased:{secrets.token_hex(8)}"
    conn = sqlite3.connect(path, timeout=wait_seconds, isolation_level=None)
    try:
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                "SELECT rowid, record FROM decisions WHERE customer_id = ?", (customer_id,)
            ).fetchall()
            for rowid, record in rows:
                head = json.loads(record)
                head["customer"] = {"id": pseudonym, "features": {}}
                conn.execute(
                    "UPDATE decisions SET customer_id = ?, record = ? WHERE rowid = ?",
                    (pseudonym, json.dumps(head, separators=(",", ":")), rowid),
                )
            # the payload hash covers the customer id (a dictionary of ids would find it):
            # a random one replaces it, so a resent outcome is a conflict, never a match
            outcomes = conn.execute(
                "UPDATE outcomes SET customer_id = ?, payload_hash = lower(hex(randomblob(16)))"
                " WHERE customer_id = ?",
                (pseudonym, customer_id),
            ).rowcount
            # what retention kept of their negative outcomes for the suppressions
            if conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kept_negatives'"
            ).fetchone():
                conn.execute(
                    "UPDATE kept_negatives SET customer_id = ? WHERE customer_id = ?",
                    (pseudonym, customer_id),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        truncated = _truncate_wal(conn, wait_seconds)
    finally:
        conn.close()
    return Erasure(pseudonym, len(rows), outcomes, truncated)


def _truncate_wal(conn: sqlite3.Connection, wait_seconds: float) -> bool:
    """Copy the WAL into the database and truncate it to nothing (retrying while readers
    hold it, up to ``wait_seconds``)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


__all__ = ["Erasure", "erase_customer"]

"""Decisions in the PostgreSQL log: the insert job, the batched insert of plain decisions,
and reading decisions back.

Catalogues are content-addressed as on SQLite (``catalogues``: digest → JSON body). A
catalogue is made durable on its own, before the first decision that uses it is queued
(:meth:`DecisionRows.catalogue_id`, outside any batch: a committed catalogue row is valid
whatever happens to the decisions), so every queued decision knows its catalogue id and the
writer can insert a batch of decisions in one statement.

A request id is unique in the table: two deciders logging the same request id race on the
constraint, and the loser's job reads the winner's decision back (or raises
:class:`~bandit.errors.Conflict` when the requests differ).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import psycopg

from bandit.errors import OfferBanditError, StorageError, UnknownEvent, quote
from bandit.log.sqlite.decisions import conflict, logged_requests, removed_json, same_request
from bandit.logcodec import (
    catalogue_digest,
    catalogue_json,
    decode_catalogue,
    decode_head,
    encode_head,
    pack_pmf,
)
from bandit.records import ClosedDecision, StoredDecision, Windows
from bandit.types import Decision, Treatment

Conn = psycopg.Connection[Any]

COLUMNS = (
    "record, seq, activated_at, window_closes_at, closed_seq, reward, n_outcomes, revenue,"
    " catalogue_id, pmf"
)
"""The columns :func:`stored` reads a decision from."""

_CACHED = 4096
"""Most catalogues remembered on each side (cleared when full)."""

FAST_MAX = 128
"""Most decisions one batched INSERT carries (one prepared statement per row count)."""

_DECISION_COLUMNS = (
    "event_id, request_id, request_hash, customer_id, decided_at, deferred, activated_at,"
    " window_closes_at, chosen_offer, chosen_channel, is_control, holdout, propensity,"
    " fixed_cost, discount_rate, contact_cost, model_version, policy, record, pmf,"
    " contact_policy, removed, catalogue_id"
)
_N_COLUMNS = _DECISION_COLUMNS.count(",") + 1


class DecisionRows:
    """Writing and reading decisions; one per log."""

    def __init__(self, windows: Windows) -> None:
        self.windows = windows
        self._ids: dict[str, int] = {}  # catalogue JSON → id (durable rows only)
        self._catalogues: dict[int, tuple[Treatment, ...]] = {}  # id → candidates
        self._lock = threading.Lock()

    # ---- writing -----------------------------------------------------------------------------

    def catalogue_id(self, conn: Conn, catalogue: str) -> int:
        """The id of ``catalogue`` (its JSON), committed first if the log lacks it
        (``conn`` is in autocommit mode)."""
        found = self._ids.get(catalogue)
        if found is not None:
            return found
        digest = catalogue_digest(catalogue)
        row = conn.execute(
            "INSERT INTO catalogues (digest, body) VALUES (%s, %s)"
            " ON CONFLICT (digest) DO NOTHING RETURNING id",
            (digest, catalogue),
        ).fetchone()
        if row is None:
            row = conn.execute("SELECT id FROM catalogues WHERE digest = %s", (digest,)).fetchone()
        if row is None:
            raise StorageError("a catalogue vanished from the decision log")
        cid = int(row[0])
        with self._lock:
            if len(self._ids) >= _CACHED:
                self._ids.clear()
            self._ids[catalogue] = cid
        return cid

    def row(self, decision: Decision, request_hash: str, catalogue_id: int) -> tuple[Any, ...]:
        """The decision's row, in :data:`_DECISION_COLUMNS` order."""
        chosen = decision.chosen_treatment
        activated_at = None if decision.deferred else decision.decided_at
        window = None
        if activated_at is not None:
            cid = chosen.channel.id if chosen.channel is not None else ""
            window = activated_at + self.windows.for_channel(cid)
        return (
            decision.event_id,
            decision.request_id or None,
            request_hash or None,
            decision.context.customer.id,
            decision.decided_at,
            decision.deferred,
            activated_at,
            window,
            chosen.ref.offer_id,
            chosen.ref.channel_id,
            chosen.is_control,
            decision.holdout,
            decision.propensity,
            chosen.offer.fixed_cost if chosen.offer else 0.0,
            chosen.offer.discount_rate if chosen.offer else 0.0,
            chosen.channel.contact_cost if chosen.channel else 0.0,
            decision.model_version,
            decision.policy,
            encode_head(decision),
            pack_pmf(decision.pmf),
            decision.contact_policy or None,
            removed_json(decision) if decision.removed else None,
            catalogue_id,
        )

    def prepare(self, conn: Conn, decision: Decision) -> int:
        """The decision's catalogue id (made durable first when new)."""
        return self.catalogue_id(conn, catalogue_json(decision.treatments))

    def insert_job(self, row: tuple[Any, ...], request_id: str, request_hash: str) -> Any:
        """The insert of one decision row, as a job; its value is ``None``, or the decision
        logged before under the same request id (:class:`~bandit.errors.Conflict` when its
        request differed)."""

        def job(conn: Conn) -> StoredDecision | None:
            if not request_id:
                conn.execute(insert_decisions_sql(1), row)
                return None
            done = conn.execute(
                insert_decisions_sql(1) + " ON CONFLICT (request_id) DO NOTHING RETURNING seq",
                row,
            ).fetchone()
            if done is not None:
                return None
            existing = self.by_request_id(conn, request_id, request_hash)
            if existing is None:
                raise StorageError(f"request {quote(request_id)} is neither new nor logged")
            return existing

        return job

    def batch_job(
        self, rows: Sequence[tuple[Any, ...]], request_ids: Sequence[str], hashes: Sequence[str]
    ) -> Any:
        """One job inserting a batch of decision rows (``ON CONFLICT (request_id) DO
        NOTHING``, :data:`FAST_MAX` rows a statement); its value has one entry per row:
        ``None`` (written), the decision to answer with instead (its request id was logged
        before, by any process, or earlier in this batch) or the
        :class:`~bandit.errors.Conflict` of a request id used for a different request."""

        def job(conn: Conn) -> list[Decision | OfferBanditError | None]:
            written: set[str] = set()
            for i in range(0, len(rows), FAST_MAX):
                chunk = rows[i : i + FAST_MAX]
                params: list[Any] = []
                for r in chunk:
                    params += r
                cur = conn.execute(
                    insert_decisions_sql(len(chunk))
                    + " ON CONFLICT (request_id) DO NOTHING RETURNING event_id",
                    params,
                )
                written.update(r[0] for r in cur.fetchall())
            out: list[Decision | OfferBanditError | None] = []
            missed = [
                (rid, h)
                for row, rid, h in zip(rows, request_ids, hashes, strict=True)
                if row[0] not in written
            ]
            found = self.by_request_ids(conn, missed) if missed else {}
            for row, rid in zip(rows, request_ids, strict=True):
                if row[0] in written:
                    out.append(None)
                    continue
                logged = found.get(rid)
                if logged is None:
                    raise StorageError(f"request {quote(rid)} is neither new nor logged")
                out.append(logged if isinstance(logged, OfferBanditError) else logged.decision)
            return out

        return job

    @staticmethod
    def insert_many(conn: Conn, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (decisions without a request id) in as few statements as fit."""
        for i in range(0, len(rows), FAST_MAX):
            chunk = rows[i : i + FAST_MAX]
            params: list[Any] = []
            for r in chunk:
                params += r
            conn.execute(insert_decisions_sql(len(chunk)), params)

    # ---- reading -----------------------------------------------------------------------------

    def by_request_id(
        self, conn: Conn, request_id: str, request_hash: str
    ) -> StoredDecision | None:
        row = conn.execute(
            f"SELECT {COLUMNS}, request_hash FROM decisions WHERE request_id = %s", (request_id,)
        ).fetchone()
        if row is None:
            return None
        if not same_request(request_hash, row[-1]):
            raise conflict(request_id)
        return stored(row, self.catalogue(conn, row[8]))

    def by_request_ids(
        self, conn: Conn, requests: Sequence[tuple[str, str]]
    ) -> dict[str, StoredDecision | OfferBanditError]:
        """:meth:`by_request_id` of many (request id, request hash) pairs in one query: the
        logged ones, each its decision or the :class:`~bandit.errors.Conflict` of a
        different request."""
        hashes = dict(requests)
        if not hashes:
            return {}
        rows = conn.execute(
            f"SELECT {COLUMNS}, request_hash, request_id FROM decisions WHERE request_id = ANY(%s)",
            (list(hashes),),
        ).fetchall()
        return logged_requests(rows, hashes, lambda cid: self.catalogue(conn, cid))

    def get(self, conn: Conn, event_id: str) -> StoredDecision:
        row = conn.execute(
            f"SELECT {COLUMNS} FROM decisions WHERE event_id = %s", (event_id,)
        ).fetchone()
        if row is None:
            raise UnknownEvent(event_id)
        return stored(row, self.catalogue(conn, row[8]))

    def closed_after(self, conn: Conn, position: int, limit: int) -> list[ClosedDecision]:
        """Closed, not voided decisions with ``closed_seq > position``, in learning order."""
        rows = conn.execute(
            "SELECT closed_seq, record, reward, catalogue_id, pmf, revenue, n_outcomes"
            " FROM decisions WHERE closed_seq > %s AND voided_at IS NULL"
            " ORDER BY closed_seq LIMIT %s",
            (position, limit),
        ).fetchall()
        return [
            ClosedDecision(
                int(r[0]),
                decode_head(r[1], self.catalogue(conn, r[3]), bytes(r[4])),
                float(r[2]),
                float(r[5]),
                int(r[6]),
            )
            for r in rows
        ]

    def catalogue(self, conn: Conn, cid: int) -> tuple[Treatment, ...]:
        """Candidates by catalogue id, decoded once (the same tuple object every time)."""
        found = self._catalogues.get(cid)
        if found is None:
            row = conn.execute("SELECT body FROM catalogues WHERE id = %s", (cid,)).fetchone()
            if row is None:
                raise StorageError(f"decision log is missing catalogue {cid}")
            found = decode_catalogue(row[0])
            with self._lock:
                if len(self._catalogues) >= _CACHED:
                    self._catalogues.clear()
                self._catalogues[cid] = found
        return found


@functools.cache
def insert_decisions_sql(n: int) -> str:
    """``INSERT INTO decisions`` of ``n`` rows.

    >>> insert_decisions_sql(2).count("(%s,")
    2
    """
    one = "(" + ",".join(["%s"] * _N_COLUMNS) + ")"
    return f"INSERT INTO decisions ({_DECISION_COLUMNS}) VALUES " + ",".join([one] * n)


def stored(row: Sequence[Any], treatments: tuple[Treatment, ...]) -> StoredDecision:
    """A decision read with :data:`COLUMNS`."""
    return StoredDecision(
        decision=decode_head(row[0], treatments, None if row[9] is None else bytes(row[9])),
        seq=int(row[1]),
        activated_at=row[2],
        window_closes_at=row[3],
        closed_seq=row[4],
        reward=row[5],
        n_outcomes=int(row[6]),
        revenue=float(row[7]),
    )


__all__ = ["COLUMNS", "FAST_MAX", "Conn", "DecisionRows", "insert_decisions_sql", "stored"]

"""Decisions in the SQLite log: the insert job (with its catalogue row), the batched insert
of plain decisions, and reading decisions back.

A decision's candidates are stored once per catalogue, content-addressed (``catalogues``:
digest → JSON body); the decision row names its catalogue by id. The writer remembers the
ids of the catalogues it has seen by their JSON, the readers the decoded candidates by id.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from bandit.errors import Conflict, OfferBanditError, StorageError, UnknownEvent, quote
from bandit.log.sqlite.groupcommit import Job, Pending
from bandit.logcodec import (
    catalogue_digest,
    catalogue_json,
    decode_catalogue,
    decode_head,
    encode_head,
    pack_pmf,
)
from bandit.records import ClosedDecision, StoredDecision, Windows
from bandit.types import Context, Customer, Decision, Treatment, Trigger

log = logging.getLogger(__name__)

COLUMNS = (
    "record, seq, activated_at, window_closes_at, closed_seq, reward, n_outcomes, revenue,"
    " catalogue_id, pmf"
)
"""The columns :func:`stored` reads a decision from."""

_CATALOGUE_IDS = 4096
"""Most catalogue ids the writer remembers (by the catalogue's JSON; cleared when full)."""

_DECODED = 4096
"""Most decoded catalogues the readers remember (cleared when full)."""

_FAST_MAX = 64
"""Most decisions one batched INSERT carries (one cached statement per row count)."""

_IN_MAX = 500
"""Most request ids one lookup names (SQLite allows 32766 parameters)."""

_DECISION_COLUMNS = (
    "event_id, request_id, request_hash, customer_id, decided_at, deferred, activated_at,"
    " window_closes_at, chosen_offer, chosen_channel, is_control, holdout, propensity,"
    " fixed_cost, discount_rate, contact_cost, model_version, policy, record, pmf,"
    " contact_policy, removed, catalogue_id"
)


class DecisionRows:
    """Writing and reading decisions; one per log (its writer side runs under the log's
    commit lock)."""

    def __init__(self, windows: Windows) -> None:
        self.windows = windows
        self._catalogue_ids: dict[str, int] = {}  # writer side, catalogue JSON → id
        self._uncommitted_catalogue = False
        self._catalogues: dict[int, tuple[Treatment, ...]] = {}  # read side, id → candidates

    # ---- writing -----------------------------------------------------------------------------

    def row(self, decision: Decision, request_hash: str) -> tuple[tuple[Any, ...], str]:
        """The decision's row (without the catalogue id) and its catalogue's JSON."""
        record = encode_head(decision)
        catalogue = catalogue_json(decision.treatments)
        chosen = decision.chosen_treatment
        deferred = decision.deferred
        activated_at = None if deferred else decision.decided_at
        window = None
        if activated_at is not None:
            cid = chosen.channel.id if chosen.channel is not None else ""
            window = activated_at + self.windows.for_channel(cid)
        row = (
            decision.event_id,
            decision.request_id or None,
            request_hash or None,
            decision.context.customer.id,
            decision.decided_at,
            int(deferred),
            activated_at,
            window,
            chosen.ref.offer_id,
            chosen.ref.channel_id,
            int(chosen.is_control),
            int(decision.holdout),
            decision.propensity,
            chosen.offer.fixed_cost if chosen.offer else 0.0,
            chosen.offer.discount_rate if chosen.offer else 0.0,
            chosen.channel.contact_cost if chosen.channel else 0.0,
            decision.model_version,
            decision.policy,
            record,
            pack_pmf(decision.pmf),
            decision.contact_policy or None,
            removed_json(decision) if decision.removed else None,
        )
        return row, catalogue

    def job(self, decision: Decision, request_hash: str) -> tuple[Job, tuple[Any, ...], str]:
        """The insert job, its row (without the catalogue id) and the catalogue's JSON.

        The job's value is ``None``, or the decision logged before under the same request id
        (:class:`~bandit.errors.Conflict` when its request differed)."""
        row, catalogue = self.row(decision, request_hash)
        request_id = decision.request_id

        def job(conn: sqlite3.Connection) -> StoredDecision | None:
            if request_id:
                existing = self.by_request_id(conn, request_id, request_hash)
                if existing is not None:
                    return existing
            # Content-addressed: a catalogue row written here stays valid even if the
            # decision insert below fails, so the job needs no savepoint.
            cid = self._catalogue_id(conn, catalogue)
            conn.execute(insert_decisions_sql(1), (*row, cid))
            return None

        return job, row, catalogue

    def batch_job(self, decisions: Sequence[Decision], hashes: Sequence[str]) -> Job:
        """One job inserting ``decisions`` (a batch of Choose answers) in one transaction:
        their request ids looked up in one query first, new rows in multi-row INSERTs.

        The job's value has one entry per decision: ``None`` (written), the
        :class:`~bandit.types.Decision` to answer with instead (its request id was logged
        before, or earlier in this batch) or the :class:`~bandit.errors.Conflict` of a
        request id used before for a different request (nothing written for it)."""
        rows = [self.row(d, h) for d, h in zip(decisions, hashes, strict=True)]

        def job(conn: sqlite3.Connection) -> list[Decision | OfferBanditError | None]:
            wanted = [(d.request_id, h) for d, h in zip(decisions, hashes, strict=True)]
            found = self.by_request_ids(conn, [w for w in wanted if w[0]])
            out: list[Decision | OfferBanditError | None] = []
            new: list[tuple[tuple[Any, ...], str]] = []
            first: dict[str, tuple[Decision, str]] = {}
            for d, h, (row, catalogue) in zip(decisions, hashes, rows, strict=True):
                rid = d.request_id
                if rid:
                    logged = found.get(rid)
                    if isinstance(logged, StoredDecision):
                        out.append(logged.decision)
                        continue
                    if logged is not None:
                        out.append(logged)
                        continue
                    earlier = first.get(rid)
                    if earlier is not None:  # the same request twice in one batch
                        out.append(earlier[0] if same_request(h, earlier[1]) else conflict(rid))
                        continue
                    first[rid] = (d, h)
                out.append(None)
                new.append((row, catalogue))
            for i in range(0, len(new), _FAST_MAX):
                chunk = new[i : i + _FAST_MAX]
                params: list[Any] = []
                for row, catalogue in chunk:
                    params += row
                    params.append(self._catalogue_id(conn, catalogue))
                conn.execute(insert_decisions_sql(len(chunk)), params)
            return out

        return job

    def _catalogue_id(self, conn: sqlite3.Connection, catalogue: str) -> int:
        """The id of ``catalogue`` (its JSON), inserted (in the running transaction) when new."""
        catalogue_ids = self._catalogue_ids
        cid = catalogue_ids.get(catalogue)
        if cid is None:
            digest = catalogue_digest(catalogue)
            found = conn.execute("SELECT id FROM catalogues WHERE digest = ?", (digest,)).fetchone()
            if found is None:
                cur = conn.execute(
                    "INSERT INTO catalogues (digest, body) VALUES (?, ?)", (digest, catalogue)
                )
                cid = int(cur.lastrowid or 0)
                self._uncommitted_catalogue = True
            else:
                cid = int(found[0])
            if len(catalogue_ids) >= _CATALOGUE_IDS:
                catalogue_ids.clear()
            catalogue_ids[catalogue] = cid
        return cid

    def insert_batched(self, conn: sqlite3.Connection, batch: list[Pending]) -> bool:
        """Commit ``batch`` as batched INSERTs when it holds only new decisions (``fast``)
        with known catalogues; False (nothing written) when it does not or that failed."""
        ids = self._catalogue_ids
        if not all(it.fast is not None and it.fast[0] in ids for it in batch):
            return False
        # One INSERT per 64 rows, and for up to 64 rows that statement is its own
        # transaction. The writer then takes the GIL back once per commit instead of once
        # per statement, which matters while the request thread keeps the GIL busy.
        chunks = [batch[i : i + _FAST_MAX] for i in range(0, len(batch), _FAST_MAX)]
        try:
            if len(chunks) > 1:
                conn.execute("BEGIN IMMEDIATE")
            for chunk in chunks:
                params: list[Any] = []
                for it in chunk:
                    catalogue, row = it.fast  # type: ignore[misc]
                    params += row
                    params.append(ids[catalogue])
                conn.execute(insert_decisions_sql(len(chunk)), params)
            if len(chunks) > 1:
                conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.debug("batched insert failed; running the jobs one by one", exc_info=True)
            return False
        for it in batch:
            it.value = None
        return True

    def rolled_back(self) -> None:
        """A job was rolled back to its savepoint: a catalogue row written since the last
        commit may be gone with it, so the writer forgets the ids it knows."""
        if self._uncommitted_catalogue:
            self._catalogue_ids.clear()

    def after_commit(self, committed: bool) -> None:
        """After a batch's transaction: every catalogue row is durable, or (``committed``
        false) none written since the last commit is, and the ids are forgotten."""
        if not committed:
            self._catalogue_ids.clear()
        self._uncommitted_catalogue = False

    # ---- reading -----------------------------------------------------------------------------

    def by_request_id(
        self, conn: sqlite3.Connection, request_id: str, request_hash: str
    ) -> StoredDecision | None:
        row = conn.execute(
            f"SELECT {COLUMNS}, request_hash FROM decisions WHERE request_id = ?", (request_id,)
        ).fetchone()
        if row is None:
            return None
        if not same_request(request_hash, row[-1]):
            raise conflict(request_id)
        return stored(row, self.catalogue(conn, row[8]))

    def by_request_ids(
        self, conn: sqlite3.Connection, requests: Sequence[tuple[str, str]]
    ) -> dict[str, StoredDecision | OfferBanditError]:
        """:meth:`by_request_id` of many (request id, request hash) pairs, one query per
        :data:`_IN_MAX` ids: the logged ones, each its decision or the
        :class:`~bandit.errors.Conflict` of a different request."""
        hashes = dict(requests)
        ids = list(hashes)
        out: dict[str, StoredDecision | OfferBanditError] = {}
        for i in range(0, len(ids), _IN_MAX):
            chunk = ids[i : i + _IN_MAX]
            rows = conn.execute(
                f"SELECT {COLUMNS}, request_hash, request_id FROM decisions"
                f" WHERE request_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            out.update(logged_requests(rows, hashes, lambda cid: self.catalogue(conn, cid)))
        return out

    def get(self, conn: sqlite3.Connection, event_id: str) -> StoredDecision:
        row = conn.execute(
            f"SELECT {COLUMNS} FROM decisions WHERE event_id = ?", (event_id,)
        ).fetchone()
        if row is None:
            raise UnknownEvent(event_id)
        return stored(row, self.catalogue(conn, row[8]))

    def closed_after(
        self, conn: sqlite3.Connection, position: int, limit: int
    ) -> list[ClosedDecision]:
        """Closed, not voided decisions with ``closed_seq > position``, in learning order."""
        rows = conn.execute(
            "SELECT closed_seq, record, reward, catalogue_id, pmf, revenue, n_outcomes"
            " FROM decisions WHERE closed_seq > ? AND voided_at IS NULL"
            " ORDER BY closed_seq LIMIT ?",
            (position, limit),
        ).fetchall()
        return [
            ClosedDecision(
                int(r[0]),
                decode_head(r[1], self.catalogue(conn, r[3]), r[4]),
                float(r[2]),
                float(r[5]),
                int(r[6]),
            )
            for r in rows
        ]

    def catalogue(self, conn: sqlite3.Connection, cid: int) -> tuple[Treatment, ...]:
        """Candidates by catalogue id, decoded once: the same tuple object every time, so
        the per-tuple memos of the VW text encoders hit when the learner replays them."""
        found = self._catalogues.get(cid)
        if found is None:
            row = conn.execute("SELECT body FROM catalogues WHERE id = ?", (cid,)).fetchone()
            if row is None:
                raise StorageError(f"decision log is missing catalogue {cid}")
            found = decode_catalogue(row[0])
            if len(self._catalogues) >= _DECODED:
                self._catalogues.clear()
            self._catalogues[cid] = found
        return found


@functools.cache
def insert_decisions_sql(n: int) -> str:
    """``INSERT INTO decisions`` of ``n`` rows.

    >>> insert_decisions_sql(2).count("(?,")
    2
    """
    one = "(" + ",".join("?" * (_DECISION_COLUMNS.count(",") + 1)) + ")"
    return f"INSERT INTO decisions ({_DECISION_COLUMNS}) VALUES " + ",".join([one] * n)


def removed_json(decision: Decision) -> str:
    """What the contact policy removed, as the ``removed`` column holds it.

    >>> from bandit.types import CONTROL_TREATMENT, TreatmentRef as R
    >>> d = Decision("e", _CTX, (CONTROL_TREATMENT,), (1.0,), 0, "", "", 0.0,
    ...              removed=((R("o", "sms"), "cap[0]"),), contact_policy="abc")
    >>> removed_json(d)
    '[["o","sms","cap[0]"]]'
    """
    return json.dumps(
        [[t.offer_id, t.channel_id, rule] for t, rule in decision.removed],
        separators=(",", ":"),
        ensure_ascii=False,
    )


_CTX = Context(Customer("c"), Trigger("t"))


def same_request(request_hash: str, logged_hash: str | None) -> bool:
    """Whether a request with ``request_hash`` is a retry of the logged one (an empty hash
    on either side: not compared)."""
    return not request_hash or not logged_hash or logged_hash == request_hash


def conflict(request_id: str) -> Conflict:
    return Conflict(
        "request_id",
        f"{quote(request_id)} was used before for a different request; "
        "a retry must resend the same request",
    )


def logged_requests(
    rows: Sequence[Sequence[Any]],
    hashes: dict[str, str],
    catalogue: Callable[[int], tuple[Treatment, ...]],
) -> dict[str, StoredDecision | OfferBanditError]:
    """Rows read with :data:`COLUMNS`, ``request_hash, request_id`` for the request ids of
    ``hashes`` (request id → the hash of the request asking now): each its logged decision,
    or the :class:`~bandit.errors.Conflict` of a different request under that id."""
    out: dict[str, StoredDecision | OfferBanditError] = {}
    for row in rows:
        rid = row[-1]
        if not same_request(hashes[rid], row[-2]):
            out[rid] = conflict(rid)
        else:
            out[rid] = stored(row, catalogue(row[8]))
    return out


def stored(row: Sequence[Any], treatments: tuple[Treatment, ...]) -> StoredDecision:
    """A decision read with :data:`COLUMNS`."""
    return StoredDecision(
        decision=decode_head(row[0], treatments, row[9]),
        seq=int(row[1]),
        activated_at=row[2],
        window_closes_at=row[3],
        closed_seq=row[4],
        reward=row[5],
        n_outcomes=int(row[6]),
        revenue=float(row[7]),
    )


__all__ = [
    "COLUMNS",
    "DecisionRows",
    "conflict",
    "insert_decisions_sql",
    "logged_requests",
    "removed_json",
    "same_request",
    "stored",
]

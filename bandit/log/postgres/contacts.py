"""What a contact policy reads from the PostgreSQL log, and the hold that makes its caps and
budgets atomic across processes.

The reads are the SQLite log's (:mod:`bandit.log.sqlite.contacts`) in PostgreSQL's dialect.

**The hold.** In one process the contact gate's lock keeps two Chooses for one customer from
both passing a cap of one. Several deciders share nothing but the database, so a Choose under
a contact policy holds, from before it reads the customer's history until its decision is
committed, transaction-level advisory locks on the customer and on each budgeted offer among
its candidates (customer first, then offers in sorted order: no two holds wait on each other
in a cycle). Its reads and its decision's insert run in that one transaction, committed before
the answer leaves (:meth:`bandit.log.postgres.PostgresDecisionLog.hold_contacts`). A second
decider's Choose for the same customer, or for an offer with a budget, waits until then and
reads the first one's decision. Count budgets are counted in the log under the hold, never in
process memory; money is what outcomes charged (``offer_spend``), as on SQLite.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Final

from bandit.contact.history import Contact, LoggedHistory, NegativeOutcome
from bandit.log.postgres.decisions import Conn

CUSTOMER_LOCK: Final = 0x0FB1
"""Advisory lock class of a customer's contact hold (key: a hash of schema and id)."""
OFFER_LOCK: Final = 0x0FB2
"""Advisory lock class of a budgeted offer's hold."""

_CONTACTS = (
    "SELECT event_id, activated_at, chosen_offer, chosen_channel FROM decisions"
    " WHERE customer_id = %s AND activated_at >= %s AND NOT is_control"
)


def lock_hold(conn: Conn, customer_id: str, offers: Collection[str]) -> None:
    """Take the hold's advisory locks inside ``conn``'s open transaction."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema() || ':' || %s))",
        (CUSTOMER_LOCK, customer_id),
    )
    for offer in sorted(offers):
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema() || ':' || %s))",
            (OFFER_LOCK, offer),
        )


def customer_history(
    conn: Conn,
    customer_id: str,
    contacts_since: float | None,
    negatives_since: float | None,
    negative_types: Collection[str],
) -> LoggedHistory:
    """The customer's contacts activated at or after ``contacts_since`` and their negative
    outcomes (of ``negative_types``) at or after ``negatives_since`` (``None``: not read)."""
    contacts: dict[str, Contact] = {}
    if contacts_since is not None:
        since = contacts_since if math.isfinite(contacts_since) else -1e300
        for event_id, at, offer, channel in conn.execute(_CONTACTS, (customer_id, since)):
            contacts[event_id] = Contact(float(at), offer, channel)
    negatives: tuple[NegativeOutcome, ...] = ()
    if negatives_since is not None and negative_types:
        since = negatives_since if math.isfinite(negatives_since) else -1e300
        types = sorted(negative_types)
        rows = conn.execute(
            "SELECT o.occurred_at, o.type, COALESCE(d.chosen_channel, '') FROM outcomes o"
            " LEFT JOIN decisions d ON d.event_id = o.event_id"
            " WHERE o.customer_id = %s AND o.type = ANY(%s) AND o.occurred_at >= %s"
            " AND o.voided_at IS NULL"
            " UNION ALL"
            " SELECT o.occurred_at, o.type, d.chosen_channel FROM decisions d"
            " JOIN outcomes o ON o.event_id = d.event_id"
            " WHERE d.customer_id = %s AND o.customer_id IS NULL AND o.type = ANY(%s)"
            " AND o.occurred_at >= %s AND o.voided_at IS NULL",
            (customer_id, types, since, customer_id, types, since),
        ).fetchall()
        negatives = tuple(NegativeOutcome(float(at), t, ch) for at, t, ch in rows)
    return LoggedHistory(contacts, negatives)


def customers_with_outcomes(conn: Conn, types: Collection[str]) -> set[str]:
    """Customers with an outcome of one of ``types`` (a scan: run when a policy loads)."""
    if not types:
        return set()
    names = sorted(types)
    rows = conn.execute(
        "SELECT customer_id FROM outcomes"
        " WHERE type = ANY(%s) AND customer_id IS NOT NULL AND voided_at IS NULL"
        " UNION SELECT d.customer_id FROM outcomes o JOIN decisions d ON d.event_id = o.event_id"
        " WHERE o.type = ANY(%s) AND o.voided_at IS NULL",
        (names, names),
    )
    return {str(r[0]) for r in rows}


def offer_counts(conn: Conn, offers: Collection[str], since: float | None = None) -> dict[str, int]:
    """Non-control decisions of each offer decided at or after ``since`` (``None``: ever),
    an index range count per offer (``decisions_offer``)."""
    if not offers:
        return {}
    names = sorted(offers)
    sql = (
        "SELECT chosen_offer, COUNT(*) FROM decisions"
        " WHERE NOT is_control AND chosen_offer = ANY(%s)"
    )
    args: list[object] = [names]
    if since is not None:
        sql += " AND decided_at >= %s"
        args.append(since)
    found = {str(o): int(n) for o, n in conn.execute(sql + " GROUP BY chosen_offer", args)}
    return {o: found.get(o, 0) for o in names}


def offer_spend(conn: Conn, offers: Collection[str]) -> dict[str, float]:
    """Money charged to each offer so far (offer costs of attributed outcomes)."""
    if not offers:
        return {}
    names = sorted(offers)
    found = {
        str(o): float(m)
        for o, m in conn.execute(
            "SELECT offer_id, money FROM offer_spend WHERE offer_id = ANY(%s)", (names,)
        )
    }
    return {o: found.get(o, 0.0) for o in names}


def charge(conn: Conn, seq: int, revenue: float) -> None:
    """Charge decision ``seq``'s (locked) offer the cost of ``revenue`` newly attributed to
    it, as :func:`bandit.log.sqlite.contacts.charge` does (an atomic upsert)."""
    if not revenue > 0:
        return
    row = conn.execute(
        "SELECT chosen_offer, is_control, fixed_cost, discount_rate, revenue FROM decisions"
        " WHERE seq = %s",
        (seq,),
    ).fetchone()
    if row is None or row[1]:
        return
    offer, _control, fixed, rate, before = row
    cost = rate * revenue + (fixed if not before > 0 else 0.0)
    if cost:
        conn.execute(
            "INSERT INTO offer_spend (offer_id, money) VALUES (%s, %s)"
            " ON CONFLICT (offer_id) DO UPDATE SET money = offer_spend.money + excluded.money",
            (offer, cost),
        )


__all__ = [
    "CUSTOMER_LOCK",
    "OFFER_LOCK",
    "charge",
    "customer_history",
    "customers_with_outcomes",
    "lock_hold",
    "offer_counts",
    "offer_spend",
]

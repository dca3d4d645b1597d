"""What a contact policy reads from the SQLite log: one customer's contacts and negative
outcomes, offers' coupon counts, and the money charged to offers.

A contact is an activated non-control decision (``decisions_customer``, on
``(customer_id, activated_at)``, serves the range read). A negative outcome is an outcome
of one of the given types that either carries the customer's id (``outcomes_customer``) or
names one of their decisions (``outcomes_event``); its channel is its decision's. Money
charged to an offer is kept per offer in ``offer_spend``, added to as outcomes are
attributed (:func:`charge`). What retention deletes, these reads still see: the coupons of
deleted decisions (``retired_offer_counts``) and the negative outcomes suppressions act on
(``kept_negatives``), :mod:`.retention`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Collection

from bandit.contact.history import Contact, LoggedHistory, NegativeOutcome

_CONTACTS = (
    "SELECT event_id, activated_at, chosen_offer, chosen_channel FROM decisions"
    " WHERE customer_id = ? AND activated_at >= ? AND is_control = 0"
)


def customer_history(
    conn: sqlite3.Connection,
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
        marks = ",".join("?" * len(types))
        rows = conn.execute(
            "SELECT o.occurred_at, o.type, COALESCE(d.chosen_channel, '') FROM outcomes o"
            " LEFT JOIN decisions d ON d.event_id = o.event_id"
            f" WHERE o.customer_id = ? AND o.type IN ({marks}) AND o.occurred_at >= ?"
            " AND o.voided_at IS NULL"
            " UNION ALL"
            " SELECT o.occurred_at, o.type, d.chosen_channel FROM decisions d"
            " JOIN outcomes o ON o.event_id = d.event_id"
            f" WHERE d.customer_id = ? AND o.customer_id IS NULL AND o.type IN ({marks})"
            " AND o.occurred_at >= ? AND o.voided_at IS NULL"
            " UNION ALL"
            " SELECT occurred_at, type, channel_id FROM kept_negatives"
            f" WHERE customer_id = ? AND type IN ({marks}) AND occurred_at >= ?",
            (customer_id, *types, since, customer_id, *types, since, customer_id, *types, since),
        ).fetchall()
        negatives = tuple(NegativeOutcome(float(at), t, ch) for at, t, ch in rows)
    return LoggedHistory(contacts, negatives)


def customers_with_outcomes(conn: sqlite3.Connection, types: Collection[str]) -> set[str]:
    """Customers with an outcome of one of ``types`` (carrying their id, or naming one of
    their decisions). A scan of the outcomes: run when a policy is loaded, not per Choose."""
    if not types:
        return set()
    names = sorted(types)
    marks = ",".join("?" * len(names))
    rows = conn.execute(
        "SELECT customer_id FROM outcomes"
        f" WHERE type IN ({marks}) AND customer_id IS NOT NULL AND voided_at IS NULL"
        " UNION SELECT d.customer_id FROM outcomes o JOIN decisions d ON d.event_id = o.event_id"
        f" WHERE o.type IN ({marks}) AND o.voided_at IS NULL"
        f" UNION SELECT customer_id FROM kept_negatives WHERE type IN ({marks})",
        (*names, *names, *names),
    )
    return {str(r[0]) for r in rows}


def customers_contacted_since(
    conn: sqlite3.Connection, since: float, limit: int
) -> set[str] | None:
    """Customers with a contact activated at or after ``since``; None when more than
    ``limit``. A scan of ``decisions_customer``: run when a policy is loaded, not per Choose."""
    rows = conn.execute(
        "SELECT DISTINCT customer_id FROM decisions"
        " WHERE activated_at >= ? AND is_control = 0 LIMIT ?",
        (since if math.isfinite(since) else -1e300, limit + 1),
    ).fetchall()
    if len(rows) > limit:
        return None
    return {str(r[0]) for r in rows}


def offer_counts(
    conn: sqlite3.Connection, offers: Collection[str], since: float | None = None
) -> dict[str, int]:
    """Non-control decisions (deferred ones included: their coupon is reserved when they
    are made) of each offer, decided at or after ``since`` (``None``: ever). A scan of the
    log: run when a policy is loaded, not per Choose."""
    if not offers:
        return {}
    names = sorted(offers)
    marks = ",".join("?" * len(names))
    sql = (
        "SELECT chosen_offer, COUNT(*) FROM decisions"
        f" WHERE is_control = 0 AND chosen_offer IN ({marks})"
    )
    args: list[object] = list(names)
    if since is not None:
        sql += " AND decided_at >= ?"
        args.append(since)
    found = {str(o): int(n) for o, n in conn.execute(sql + " GROUP BY chosen_offer", args)}
    if since is None:  # ever: with the coupons of decisions retention deleted
        for o, n in conn.execute(
            f"SELECT offer_id, count FROM retired_offer_counts WHERE offer_id IN ({marks})", names
        ):
            found[str(o)] = found.get(str(o), 0) + int(n)
    return {o: found.get(o, 0) for o in names}


def offer_spend(conn: sqlite3.Connection, offers: Collection[str]) -> dict[str, float]:
    """Money charged to each offer so far (offer costs of attributed outcomes)."""
    if not offers:
        return {}
    names = sorted(offers)
    marks = ",".join("?" * len(names))
    found = {
        str(o): float(m)
        for o, m in conn.execute(
            f"SELECT offer_id, money FROM offer_spend WHERE offer_id IN ({marks})", names
        )
    }
    return {o: found.get(o, 0.0) for o in names}


def charge(conn: sqlite3.Connection, seq: int, revenue: float) -> None:
    """Charge decision ``seq``'s offer the cost of ``revenue`` newly attributed to it (run
    before the decision's revenue is updated): ``discount_rate × revenue``, plus the fixed
    cost with its first revenue — the reward rule's offer cost (:mod:`bandit.rewards`)."""
    if not revenue > 0:
        return
    row = conn.execute(
        "SELECT chosen_offer, is_control, fixed_cost, discount_rate, revenue FROM decisions"
        " WHERE seq = ?",
        (seq,),
    ).fetchone()
    if row is None or row[1]:
        return
    offer, _control, fixed, rate, before = row
    cost = rate * revenue + (fixed if not before > 0 else 0.0)
    if cost:
        conn.execute(
            "INSERT INTO offer_spend (offer_id, money) VALUES (?, ?)"
            " ON CONFLICT (offer_id) DO UPDATE SET money = money + excluded.money",
            (offer, cost),
        )


__all__ = [
    "charge",
    "customer_history",
    "customers_contacted_since",
    "customers_with_outcomes",
    "offer_counts",
    "offer_spend",
]

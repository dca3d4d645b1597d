"""What a contact policy judges a customer by: their contacts, negative outcomes, and the
offers' budgets — plain records, with no storage behind them.

A **contact** is an activated non-control decision (a deferred decision counts from its
activation, not from the Choose call). A **negative outcome** is an outcome whose type a
suppression rule lists (``unsubscribe``, ``complaint`` …), with the channel of the decision
it was attributed to (empty when it named none). Budgets are per offer: coupons handed out in
total and on the current day, and money charged as offer costs are attributed.

>>> h = CustomerHistory(contacts=(Contact(100.0, "o1", "email"),))
>>> h.contacts_since(50.0, channel="email"), h.contacts_since(150.0)
(1, 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Contact:
    """One activated non-control decision."""

    at: float
    """When it was activated (seconds since the epoch)."""
    offer_id: str
    channel_id: str


@dataclass(frozen=True, slots=True)
class NegativeOutcome:
    """An outcome a suppression rule may act on."""

    at: float
    type: str
    channel_id: str = ""
    """The channel of the decision it was attributed to; empty when none."""


@dataclass(frozen=True, slots=True)
class CustomerHistory:
    """One customer's contacts and negative outcomes (any order)."""

    contacts: tuple[Contact, ...] = ()
    negatives: tuple[NegativeOutcome, ...] = ()

    def contacts_since(self, since: float, channel: str | None = None) -> int:
        """Contacts at or after ``since``, on ``channel`` or on any channel."""
        return sum(
            1
            for c in self.contacts
            if c.at >= since and (channel is None or c.channel_id == channel)
        )

    def last_offered(self, offer_id: str) -> float | None:
        """When ``offer_id`` last reached this customer, or None."""
        times = [c.at for c in self.contacts if c.offer_id == offer_id]
        return max(times) if times else None


EMPTY_HISTORY = CustomerHistory()


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """What one offer's budget has used: coupons in total and on the current day (in the
    rule's time zone), money charged."""

    count: int = 0
    today: int = 0
    money: float = 0.0


@dataclass(frozen=True, slots=True)
class Budgets:
    """Budget use per offer id; an offer not listed has used nothing."""

    used: dict[str, BudgetUse] = field(default_factory=dict)

    def of(self, offer_id: str) -> BudgetUse:
        return self.used.get(offer_id, _UNUSED)


_UNUSED = BudgetUse()


@dataclass(frozen=True, slots=True)
class LoggedHistory:
    """What the decision log holds of one customer: contacts by event id (to merge with the
    ones still queued) and negative outcomes."""

    contacts: dict[str, Contact] = field(default_factory=dict)
    negatives: tuple[NegativeOutcome, ...] = ()

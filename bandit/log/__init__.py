"""The decision log's port: what the core asks of a log, whatever stores it.

:class:`DecisionLog` is the interface the service, the Choose pipeline and the learner talk
to. One implementation per backend sits in a subpackage — SQLite today
(:class:`bandit.log.sqlite.SqliteDecisionLog`: schema, migrations and group commit inside) —
so another backend (PostgreSQL, say) is one more subpackage behind the same protocol. The
records it takes and gives are :mod:`bandit.records`; the attribution and reward rules it
applies are :mod:`bandit.outcomes`.

Writes are queued and answered through a handle (:class:`bandit.commit.Commit`): ``notify``
is called on the committing thread with the committed items, and ``token`` is the
submitter's (an ``on_done`` callback, for example); ``wake=False`` leaves the commit to the
submitter (``commit_queued``) or to an explicit ``wake_writer``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from bandit.contact.history import LoggedHistory
from bandit.errors import OfferBanditError
from bandit.records import ClosedDecision, LogStats, OutcomeInput, StoredDecision
from bandit.types import Decision

Notify = Callable[[list[Any]], None]
"""Called on the committing thread with committed items; quick, never blocking."""


class DecisionLog(Protocol):
    """A durable decision log that joins outcomes to decisions (the port)."""

    @property
    def writable(self) -> bool:
        """False while writes fail (disk full, I/O error …)."""

    # ---- writes, through a handle -------------------------------------------------------

    def submit_decision(
        self,
        decision: Decision,
        request_hash: str = "",
        notify: Notify | None = None,
        token: Any = None,
        wake: bool = True,
    ) -> Any:
        """Queue ``decision``; the item's value is ``None``, or the decision logged before
        under the same request id."""

    def submit_decisions(
        self,
        decisions: Sequence[Decision],
        request_hashes: Sequence[str],
        notify: Notify | None = None,
        token: Any = None,
        wake: bool = True,
    ) -> Any:
        """Queue ``decisions`` as one write (a batch of Choose answers, one transaction);
        the item's value has one entry per decision: ``None`` when written, else the
        decision to answer with (logged before under its request id, or earlier in the
        batch) or the :class:`~bandit.errors.Conflict` of its request id."""

    def submit_outcome(
        self,
        outcome: OutcomeInput,
        now: float,
        max_future_skew: float,
        notify: Notify | None = None,
        token: Any = None,
        wake: bool = True,
    ) -> Any:
        """Queue ``outcome`` (deduplicated, attributed and stored as one write); the item's
        value is its :class:`~bandit.records.OutcomeResult`."""

    def submit_activation(
        self,
        event_id: str,
        at: float,
        notify: Notify | None = None,
        token: Any = None,
        wake: bool = True,
    ) -> Any:
        """Queue the activation of deferred decision ``event_id`` at ``at`` (its window opens
        then); the item's value is its :class:`~bandit.records.Activation`. A refused
        activation (unknown, not deferred, already activated, ``at`` before the decision)
        raises from its item and writes nothing; activations queued together commit
        together."""

    def wait(self, item: Any) -> Any:
        """Until ``item`` is committed; its value, or raises what its write raised."""

    def commit_queued(self) -> bool:
        """Commit what is queued on the calling thread, unless a commit is under way."""

    def wake_writer(self) -> None:
        """Leave what is queued to the log's writer."""

    # ---- synchronous writes ---------------------------------------------------------------

    def close_due(self, now: float, limit: int = 5000) -> int:
        """Close every open window that has ended by ``now``; returns how many closed."""

    def close(self) -> None:
        """Flush and release the log."""

    # ---- reads ----------------------------------------------------------------------------

    def find_request(self, request_id: str, request_hash: str) -> StoredDecision | None:
        """The decision logged under ``request_id`` (a conflict when its request differed)."""

    def find_requests(
        self, requests: Sequence[tuple[str, str]]
    ) -> dict[str, StoredDecision | OfferBanditError]:
        """:meth:`find_request` of many (request id, request hash) pairs at once: the logged
        ones, each its decision or the :class:`~bandit.errors.Conflict` of a request id
        used for a different request."""

    def get(self, event_id: str) -> StoredDecision:
        """The logged decision ``event_id`` (raises :class:`~bandit.errors.UnknownEvent`)."""

    def closed_after(self, position: int, limit: int) -> list[ClosedDecision]:
        """Closed, not voided decisions after log position ``position``, in closing order."""

    def stats(self, now: float, recent_seconds: float) -> LogStats:
        """Counts, revenue and the incremental estimate."""

    # ---- what a contact policy reads (:mod:`bandit.contact`) ------------------------------

    def contact_history(
        self,
        customer_id: str,
        contacts_since: float | None,
        negatives_since: float | None,
        negative_types: Collection[str],
    ) -> LoggedHistory:
        """The customer's contacts (activated non-control decisions) since
        ``contacts_since`` and outcomes of ``negative_types`` since ``negatives_since``
        (``None``: not read); an index lookup, read on every Choose under a policy."""

    def customers_with_outcomes(self, types: Collection[str]) -> set[str]:
        """Customers with an outcome of one of ``types`` (read when a policy is loaded)."""

    def customers_contacted_since(self, since: float, limit: int) -> set[str] | None:
        """Customers with a contact activated at or after ``since``, or None when there are
        more than ``limit`` (read when a policy is loaded, by a process that is the log's
        only writer)."""

    def offer_counts(self, offers: Collection[str], since: float | None = None) -> dict[str, int]:
        """Non-control decisions of each offer decided since ``since`` (``None``: ever)."""

    def offer_spend(self, offers: Collection[str]) -> dict[str, float]:
        """Money charged to each offer as its costs were attributed."""

    def removal_counts(self) -> dict[str, int]:
        """Treatments removed by each contact-policy rule, over the whole log."""


__all__ = ["DecisionLog", "Notify"]

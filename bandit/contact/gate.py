"""The contact policy in the Choose path: :class:`ContactGate` holds the live policy, the
contacts and coupons of decisions queued but not yet committed, and the offers' budget
counters; :class:`ContactStep` applies the policy to a Choose call's candidates.

**One Choose at a time per gate.** The step takes the gate's lock before it reads the
customer's history and keeps it until the decision is queued on the log (the pipeline's
``finish``): the decision's contact and coupon are then added to the gate, so a concurrent
Choose for the same customer sees them whether or not the log has committed them — two
Chooses cannot both pass a cap of one, and a count budget is never overspent. The gRPC
server runs Choose on one event loop, so the lock is never contended there; in-process
callers on several threads are serialised between the policy step and the log step.

**Queued contacts.** A contact queued on the log stays in the gate until its write is done;
the log's history is read after the gate drops the done ones, and the two are merged by
event id, so a contact is never missed nor counted twice.

**Recent contacts are cached per customer** when this process is the log's only writer (the
embedded SQLite log): a customer's contacts are read from the log once, for the longest
look-back the policy needs, then kept up to date here — a decision's contact is added as it
is made (:meth:`ContactGate.made`), an activation drops the customer's entry, so the next
Choose reads it again (:meth:`ContactGate.activated`, called after the activation is
durable). At most ``cache_customers`` customers are kept (the cache is emptied when full).
Most customers have no recent contact at all: the gate also keeps the set of customers
contacted within the policy's look-back (read from the log when a policy is loaded, then
added to as contacts are made or activated; never shrunk — a customer whose contacts aged
out is read again, no harm) and reads nothing for a customer outside it; past
``cache_customers`` customers the set is dropped and every customer read. 0 switches both
off, as a log shared by several processes must (another process's contacts would not be
seen).

**Negative outcomes** are read from the log only for customers known to have one: the gate
loads them with the policy and adds a customer as an outcome of a suppression's type is
recorded (:meth:`ContactGate.outcome`, called by the service before the outcome is queued).

**Across processes.** A log shared by several processes (PostgreSQL) is a
:class:`HoldingLog`: the step then holds the customer and the candidates' budgeted offers
in the log from before the history is read until the decision is committed (in ``finish``),
budgets are counted in the log under that hold instead of in this process, and every
customer's negative outcomes are read (another process may have recorded one).

**Budgets.** Coupon counts (in total and per day) are read from the log when a policy is
loaded and then counted here as decisions are made (a decision whose write fails still
counts: the error is on the safe side). Money charged is read from the log per Choose (a
primary-key read per money-budgeted offer among the candidates).
"""

from __future__ import annotations

import collections
import datetime as dt
import math
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bandit.contact.history import Budgets, BudgetUse, Contact, CustomerHistory, LoggedHistory
from bandit.contact.policy import (
    Budget,
    Cap,
    ContactPolicy,
    Repeat,
    Situation,
    Suppression,
    resolve_zone,
)
from bandit.errors import InvalidRequest, OfferBanditError
from bandit.records import StoredDecision
from bandit.types import Decision, Treatment, TreatmentRef

if TYPE_CHECKING:
    from bandit.choose import Draft

TIME_ZONE_FEATURE = "time_zone"
"""The customer feature naming their IANA time zone (``Europe/Berlin``), for quiet hours."""

_KEPT_TUPLES = 4096
"""Most kept-candidate tuples remembered (cleared when full)."""


class ContactLog(Protocol):
    """What the gate reads from the decision log (:class:`bandit.log.DecisionLog`)."""

    def contact_history(
        self,
        customer_id: str,
        contacts_since: float | None,
        negatives_since: float | None,
        negative_types: Collection[str],
    ) -> LoggedHistory: ...

    def customers_with_outcomes(self, types: Collection[str]) -> set[str]: ...

    def customers_contacted_since(self, since: float, limit: int) -> set[str] | None: ...

    def offer_counts(
        self, offers: Collection[str], since: float | None = None
    ) -> dict[str, int]: ...

    def get(self, event_id: str) -> StoredDecision: ...

    def offer_spend(self, offers: Collection[str]) -> dict[str, float]: ...


@runtime_checkable
class HoldingLog(Protocol):
    """A log shared by several processes holds a customer's contacts and offers' budgets
    for one Choose (:meth:`bandit.log.postgres.PostgresDecisionLog.hold_contacts`)."""

    def hold_contacts(self, customer_id: str, offers: Collection[str]) -> None: ...

    def release_contacts(self) -> None: ...


class Done(Protocol):
    """A queued write's handle (:class:`bandit.commit.Commit`)."""

    @property
    def done(self) -> bool: ...


@dataclass(slots=True)
class _Queued:
    event_id: str
    customer_id: str
    contact: Contact
    commit: Done


@dataclass(frozen=True, slots=True)
class _Reads:
    """What a policy makes the gate read, worked out once per policy."""

    contacts_for: float | None
    """Seconds of contacts the rules look back over (None: none read)."""
    negatives_for: float | None
    negative_types: frozenset[str]
    budget_offers: frozenset[str]
    money_offers: frozenset[str]
    day_zone: dict[str, str]
    """Per offer with a per-day budget: the zone its day starts in."""

    @classmethod
    def of(cls, policy: ContactPolicy) -> _Reads:
        looks = [r.seconds for r in policy.rules if isinstance(r, Cap | Repeat)]
        sups = [r for r in policy.rules if isinstance(r, Suppression)]
        budgets = [r for r in policy.rules if isinstance(r, Budget)]
        zone: dict[str, str] = {}
        for b in budgets:
            if b.per_day is not None:
                zone.setdefault(b.offer, b.time_zone)
        return cls(
            contacts_for=max(looks) if looks else None,
            negatives_for=(
                None
                if not sups
                else (
                    float("inf")
                    if any(s.seconds is None for s in sups)
                    else max(s.seconds for s in sups if s.seconds is not None)
                )
            ),
            negative_types=policy.negative_outcomes,
            budget_offers=policy.budget_offers,
            money_offers=frozenset(b.offer for b in budgets if b.money is not None),
            day_zone=zone,
        )


def day_start(now: float, zone: str) -> float:
    """The start of ``now``'s day in ``zone`` (seconds since the epoch).

    >>> day_start(86_400.0 * 3 + 5.0, "UTC")
    259200.0
    """
    local = dt.datetime.fromtimestamp(now, resolve_zone(zone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class ContactGate:
    """The live contact policy of one service and what it must remember between Choose
    calls (see the module's docstring). :meth:`reload` swaps the policy whole."""

    def __init__(
        self,
        policy: ContactPolicy,
        log: ContactLog,
        now: Callable[[], float],
        *,
        cache_customers: int = 0,
    ) -> None:
        self.log = log
        self.now = now
        self.lock = threading.Lock()
        self.cache_customers = cache_customers
        self._recent: dict[str, tuple[float, dict[str, Contact]]] = {}
        """Per customer: contacts activated at or after the first value (see the module's
        docstring), by event id."""
        self._contacted: set[str] | None = None
        """Every customer with a contact within the look-back (and maybe more); None:
        unknown, read every customer."""
        self._contacted_for: float | None = None
        """The look-back :attr:`_contacted` was read for."""
        self._queued: dict[str, list[_Queued]] = {}
        self._order: collections.deque[_Queued] = collections.deque()
        self._counts: dict[str, int] = {}
        self._today: dict[tuple[str, str, float], int] = {}
        self._kept: dict[tuple[int, tuple[int, ...]], tuple[Any, tuple[Treatment, ...]]] = {}
        self._refs: dict[
            int, tuple[tuple[Treatment, ...], tuple[TreatmentRef, ...], frozenset[str]]
        ] = {}
        self._annoyed: set[str] = set()
        """Customers with an outcome of a type the policy's suppressions list: only theirs
        are read from the log (most customers have none)."""
        self._annoyed_types: frozenset[str] = frozenset()
        self.removals: collections.Counter[str] = collections.Counter()
        """Treatments removed per rule name since the gate was made (the metrics' counter;
        a rule renamed by a reload counts under its new name)."""
        self._holding = log if isinstance(log, HoldingLog) else None
        """The log, when it is shared by several processes (see the module's docstring)."""
        if self._holding is not None:
            self.cache_customers = 0  # another process's contacts would not be seen
        self._held = False
        self.policy = policy
        self._reads = _Reads.of(policy)
        self._load_budgets(policy, self._reads)
        self._load_annoyed(self._reads)
        self._load_contacted(self._reads)

    def reload(self, policy: ContactPolicy) -> None:
        """Apply ``policy`` from the next Choose on (budget counters of offers it newly
        budgets are read from the log first)."""
        reads = _Reads.of(policy)
        with self.lock:
            self._load_budgets(policy, reads)
            self._load_annoyed(reads)
            self._load_contacted(reads)
            self.policy, self._reads = policy, reads

    def _load_contacted(self, reads: _Reads) -> None:
        lookback = reads.contacts_for
        if not self.cache_customers or lookback is None:
            self._contacted = self._contacted_for = None
            return
        known = self._contacted_for
        if self._contacted is not None and known is not None and lookback <= known:
            return  # a shorter look-back: the customers in it are among these
        self._contacted = self.log.customers_contacted_since(
            self.now() - lookback, self.cache_customers
        )
        self._contacted_for = lookback

    def _mark_contacted(self, customer_id: str) -> None:
        contacted = self._contacted
        if contacted is not None:
            contacted.add(customer_id)
            if len(contacted) > self.cache_customers:
                self._contacted = None

    def activated(self, customer_id: str) -> None:
        """One of ``customer_id``'s decisions was activated (durably): their cached contacts
        are read again at their next Choose."""
        if self.cache_customers:
            with self.lock:
                self._recent.pop(customer_id, None)
                self._mark_contacted(customer_id)

    def forget(self, customer_id: str) -> None:
        """Drop what the gate remembers of a customer (erasure)."""
        with self.lock:
            self._recent.pop(customer_id, None)
            self._annoyed.discard(customer_id)

    def keeps(self, now: float) -> tuple[float, float, frozenset[str]]:
        """What the live policy needs of the log at ``now``, for retention: contacts
        activated since the first value (caps and repeats; ``inf``: none), decisions made
        since the second (today's, for per-day budgets), and outcomes of the types in the
        third (suppressions).

        >>> from bandit.contact.policy import ContactPolicy
        >>> class Log:
        ...     def customers_with_outcomes(self, types): return set()
        ...     def offer_counts(self, offers, since=None): return dict.fromkeys(offers, 0)
        >>> p = ContactPolicy.parse('[[cap]]\\nmax = 1\\ndays = 7')
        >>> ContactGate(p, Log(), lambda: 0.0).keeps(30 * 86_400.0)[0] / 86_400.0
        23.0
        """
        reads = self._reads
        contacts = math.inf if reads.contacts_for is None else now - reads.contacts_for
        days = [day_start(now, zone) for zone in set(reads.day_zone.values())]
        return contacts, min(days, default=math.inf), reads.negative_types

    def _load_annoyed(self, reads: _Reads) -> None:
        if reads.negative_types != self._annoyed_types:
            self._annoyed = self.log.customers_with_outcomes(reads.negative_types)
            self._annoyed_types = reads.negative_types

    def outcome(self, outcome_type: str, customer_id: str, event_id: str) -> None:
        """An outcome is being recorded: if its type is one the suppressions list, its
        customer's negative outcomes are read from the log from now on (called before the
        outcome is queued; it counts once it is committed)."""
        if outcome_type not in self._annoyed_types:
            return
        if not customer_id:
            try:
                customer_id = self.log.get(event_id).decision.context.customer.id
            except OfferBanditError:
                return  # names no logged decision: the outcome will be refused or unattributed
        with self.lock:
            self._annoyed.add(customer_id)

    def _load_budgets(self, policy: ContactPolicy, reads: _Reads) -> None:
        new = [o for o in reads.budget_offers if o not in self._counts]
        self._counts.update(self.log.offer_counts(new))
        now = self.now()
        for offer, zone in reads.day_zone.items():
            key = (offer, zone, day_start(now, zone))
            if key not in self._today:
                self._today[key] = self.log.offer_counts([offer], key[2])[offer]

    def judges_batches(self, deferred: bool) -> bool:
        """Whether a batch of Choose calls may be judged one after another under one hold of
        the lock and counted once all are queued (:mod:`bandit.choose_batch`): their
        decisions are deferred (no contact until activated), the policy has no budgets (no
        count moves between two of them) and no other process writes the log."""
        return deferred and not self._reads.budget_offers and self._holding is None

    # ---- inside the lock (the step, then finish) -------------------------------------------

    def hold(self, customer_id: str, offers: frozenset[str]) -> None:
        """On a shared log, hold the customer and the budgeted ``offers`` until ``finish``."""
        if self._holding is not None:
            self._holding.hold_contacts(customer_id, offers & self._reads.budget_offers)
            self._held = True

    def situation(
        self, customer_id: str, now: float, zone: str, offers: frozenset[str]
    ) -> Situation:
        """What the rules judge this customer's Choose by: the log's history merged with the
        contacts still queued, and the budgets of ``offers``."""
        reads = self._reads
        queued = self._live(customer_id)
        history = CustomerHistory()
        annoyed = self._held or customer_id in self._annoyed
        if reads.contacts_for is not None or (reads.negatives_for is not None and annoyed):
            negatives_for = reads.negatives_for if annoyed else None
            lookback = reads.contacts_for
            cached = None
            if lookback is not None and negatives_for is None:
                cached = self._recent.get(customer_id)
                contacted = self._contacted
                if cached is None and contacted is not None and customer_id not in contacted:
                    cached = (now - lookback, {})  # no recent contact: nothing to read
            if (
                lookback is not None
                and cached is not None
                and now - 2 * lookback <= cached[0] <= now - lookback
            ):
                # (renewed once a look-back old: contacts no rule needs are left behind)
                logged = LoggedHistory(cached[1])
            else:
                logged = self.log.contact_history(
                    customer_id,
                    None if lookback is None else now - lookback,
                    None if negatives_for is None else now - negatives_for,
                    reads.negative_types,
                )
                if lookback is not None and self.cache_customers:
                    # with the contacts still queued: once written, the log's read drops them
                    recent = dict(logged.contacts)
                    for q in queued:
                        recent.setdefault(q.event_id, q.contact)
                    self._cache(customer_id, now - lookback, recent)
            contacts = logged.contacts
            if queued:
                contacts = dict(contacts)
                for q in queued:
                    contacts.setdefault(q.event_id, q.contact)
            history = CustomerHistory(tuple(contacts.values()), logged.negatives)
        budgets = Budgets()
        budgeted = offers & reads.budget_offers
        if budgeted:
            money = self.log.offer_spend(budgeted & reads.money_offers)
            counts = self.log.offer_counts(budgeted) if self._held else self._counts
            used: dict[str, BudgetUse] = {}
            for o in budgeted:
                zone_o = reads.day_zone.get(o)
                today = 0
                if zone_o is not None:
                    start = day_start(now, zone_o)
                    today = (
                        self.log.offer_counts([o], start)[o]
                        if self._held
                        else self._today.get((o, zone_o, start), 0)
                    )
                used[o] = BudgetUse(counts.get(o, 0), today, money.get(o, 0.0))
            budgets = Budgets(used)
        return Situation(now, history, budgets, zone)

    def _cache(self, customer_id: str, since: float, contacts: dict[str, Contact]) -> None:
        recent = self._recent
        if len(recent) >= self.cache_customers:
            recent.clear()
        recent[customer_id] = (since, contacts)

    def _live(self, customer_id: str) -> list[_Queued]:
        """The customer's queued contacts not yet done (done ones are dropped first: the
        log's history, read after, holds them if they were committed)."""
        order = self._order
        while order and order[0].commit.done:
            self._drop(order.popleft())
        mine = self._queued.get(customer_id)
        if not mine:
            return []
        live = [q for q in mine if not q.commit.done]
        if len(live) != len(mine):
            if live:
                self._queued[customer_id] = live
            else:
                del self._queued[customer_id]
        return live

    def _drop(self, q: _Queued) -> None:
        mine = self._queued.get(q.customer_id)
        if mine is not None and q in mine:
            mine.remove(q)
            if not mine:
                del self._queued[q.customer_id]

    def refs(
        self, candidates: tuple[Treatment, ...]
    ) -> tuple[tuple[TreatmentRef, ...], frozenset[str]]:
        """The candidates' refs and offer ids, made once per candidate tuple (a Choose's
        candidates belong to its catalogue: the same tuple call after call)."""
        found = self._refs.get(id(candidates))
        if found is not None and found[0] is candidates:
            return found[1], found[2]
        refs = tuple(t.ref for t in candidates)
        offers = frozenset(r.offer_id for r in refs if not r.is_control)
        if len(self._refs) >= _KEPT_TUPLES:
            self._refs.clear()
        self._refs[id(candidates)] = (candidates, refs, offers)
        return refs, offers

    def kept(
        self, candidates: tuple[Treatment, ...], kept: tuple[int, ...]
    ) -> tuple[Treatment, ...]:
        """The kept candidates as one tuple object per (candidates, kept), so the per-tuple
        memos further down (VW text, the log's catalogue JSON) keep hitting."""
        key = (id(candidates), kept)
        found = self._kept.get(key)
        if found is not None and found[0] is candidates:
            return found[1]
        out = tuple(candidates[i] for i in kept)
        if len(self._kept) >= _KEPT_TUPLES:
            self._kept.clear()
        self._kept[key] = (candidates, out)
        return out

    def made(self, decision: Decision, commit: Done) -> None:
        """Count ``decision`` (queued on the log as ``commit``): its contact, unless deferred
        (a deferred decision is a contact from its activation), its coupon, and the
        treatments the policy removed from it, per rule (:attr:`removals`)."""
        for _, rule in decision.removed:
            self.removals[rule] += 1
        t = decision.chosen_treatment
        if t.is_control:
            return
        ref = t.ref
        if not decision.deferred:
            q = _Queued(
                decision.event_id,
                decision.context.customer.id,
                Contact(decision.decided_at, ref.offer_id, ref.channel_id),
                commit,
            )
            self._queued.setdefault(q.customer_id, []).append(q)
            self._order.append(q)
            cached = self._recent.get(q.customer_id)
            if cached is not None:
                cached[1][q.event_id] = q.contact
            self._mark_contacted(q.customer_id)
        offer = ref.offer_id
        if offer in self._reads.budget_offers:
            self._counts[offer] = self._counts.get(offer, 0) + 1
            zone = self._reads.day_zone.get(offer)
            if zone is not None:
                key = (offer, zone, day_start(decision.decided_at, zone))
                self._today[key] = self._today.get(key, 0) + 1

    def finish(self, draft: Draft) -> None:
        """The pipeline's last word on a Choose the step let through: count what was queued,
        then let the next Choose in (on a shared log, committing the held decision first)."""
        try:
            if self._held:
                self._held = False
                assert self._holding is not None
                self._holding.release_contacts()
            decision, commit = draft.answered, draft.commit
            if decision is not None and commit is not None:
                self.made(decision, commit)
        finally:
            self.lock.release()


class ContactStep:
    """Apply the contact policy: remove the candidates its rules forbid (never control),
    record which rule removed each, and stamp the policy's digest. Skips holdout decisions
    (control with certainty already). A ``time_zone`` customer feature that is not a known
    IANA zone is refused, naming the field."""

    __slots__ = ("gate",)

    def __init__(self, gate: ContactGate) -> None:
        self.gate = gate

    def __call__(self, draft: Draft) -> None:
        if draft.holdout:
            draft.contact_policy = self.gate.policy.digest
            return
        zone = customer_zone(draft)
        gate = self.gate
        gate.lock.acquire()
        draft.finish = gate.finish
        judge(gate, draft, zone)


def customer_zone(draft: Draft) -> str:
    """The customer's ``time_zone`` feature (empty: none), refused unless an IANA zone."""
    ctx = draft.context
    assert ctx is not None
    zone = ctx.customer.features.get(TIME_ZONE_FEATURE, "")
    if zone:
        if not isinstance(zone, str):
            raise InvalidRequest(
                f"customer.features.{TIME_ZONE_FEATURE}", "must be a text (an IANA zone)"
            )
        try:
            resolve_zone(zone)
        except ValueError as exc:
            raise InvalidRequest(f"customer.features.{TIME_ZONE_FEATURE}", str(exc)) from None
    return str(zone)


def judge(gate: ContactGate, draft: Draft, zone: str) -> None:
    """Apply the gate's policy to ``draft``'s candidates (the gate's lock held by the
    caller): remove what its rules forbid, record which rule removed each, stamp the
    policy's digest."""
    ctx = draft.context
    assert ctx is not None
    policy = gate.policy
    cands = draft.candidates
    refs, offers = gate.refs(cands)
    gate.hold(ctx.customer.id, offers)
    situation = gate.situation(ctx.customer.id, gate.now(), zone, offers)
    verdict = policy.apply(refs, situation)
    if verdict.removed:
        draft.candidates = gate.kept(cands, verdict.kept)
        draft.removed = verdict.removed
    draft.contact_policy = policy.digest


__all__ = [
    "TIME_ZONE_FEATURE",
    "ContactGate",
    "ContactLog",
    "ContactStep",
    "HoldingLog",
    "customer_zone",
    "day_start",
    "judge",
]

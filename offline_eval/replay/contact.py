"""A candidate contact policy applied to a logged target policy: *what would this policy have
earned had these caps been switched on?*

:class:`ContactMask` walks a log in decision order and asks a contact-policy file
(:mod:`bandit.contact`) which of each decision's candidates it would have left: caps and
repeats judge the customer's logged contacts (activated non-control decisions, counted from
their activation), suppressions the logged outcomes of their types, quiet hours the decision
time in the customer's ``time_zone`` feature, validity the decision time, count budgets the
coupons handed out before (non-control decisions of the offer, in total and per day).
:class:`WithContactPolicy` wraps any target policy: the probability it put on a removed
treatment goes to control — the customer gets nothing there, as the service does when the
policy removes everything.

**What this cannot see.** The history is the one the *logging* policy made: a stricter cap
would have contacted fewer people earlier, so fewer later decisions would be capped — the
replay removes somewhat more than the policy would have live. Money budgets are not applied
(the attributed costs of a counterfactual policy are unknown); a policy with one is refused.
A policy that would have picked another treatment where its first choice was removed is
valued as choosing control there. A log written under a contact policy holds only the
candidates it kept, so a policy *looser* than the logged one cannot be evaluated on it (the
treatments it would add back were never candidates: no support); a stricter one can. Contacts
count from their logged activation time (an activation reported late, with an earlier time,
is taken as known from that time on). The simulator (``offerbandit simulate --contact-policy``)
has none of these limits and a true value to compare with: see docs/contact-policies.md.
"""

from __future__ import annotations

import collections
import datetime as dt
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.contact import ContactPolicy
from bandit.contact.history import Budgets, BudgetUse, Contact, CustomerHistory, NegativeOutcome
from bandit.contact.policy import Budget, Situation, Suppression, resolve_zone
from bandit.log.reader import LogReader
from offline_eval.io.logs import CUSTOMER_PREFIX, LoggedBandit
from offline_eval.replay.policies import PolicyTarget, TargetPolicy, control_columns

__all__ = [
    "ContactMask",
    "Negative",
    "WithContactPolicy",
    "load_contact_policies",
    "negative_outcomes",
    "situations",
]

BoolArray = NDArray[np.bool_]
TIME_ZONE_COLUMN = CUSTOMER_PREFIX + "time_zone"


@dataclass(frozen=True, slots=True)
class Negative:
    """A negative outcome and when the service learnt of it (it counts for decisions made
    after it was received; its age, for a suppression's days, runs from when it occurred)."""

    received_at: float
    outcome: NegativeOutcome


def negative_outcomes(
    reader: LogReader, policy: ContactPolicy, lb: LoggedBandit, chunk_size: int = 50_000
) -> dict[str, list[Negative]]:
    """The outcomes a suppression of ``policy`` acts on, per customer, from ``reader``: an
    outcome naming an event of ``lb`` takes its decision's customer and channel."""
    types = policy.negative_outcomes
    out: dict[str, list[Negative]] = collections.defaultdict(list)
    if not types:
        return out
    f = lb.frame
    events = dict(
        zip(
            f["event_id"].astype(str),
            zip(f["customer_id"].astype(str), f["chosen_channel"].astype(str), strict=True),
            strict=True,
        )
    )
    for chunk in reader.outcomes(chunk_size=chunk_size):
        for o in chunk:
            if o.type not in types:
                continue
            customer, channel = events.get(o.event_id or "", (o.customer_id or "", ""))
            if customer:
                n = NegativeOutcome(o.occurred_at, o.type, channel)
                out[customer].append(Negative(o.received_at, n))
    return out


def situations(
    lb: LoggedBandit,
    policy: ContactPolicy,
    negatives: dict[str, list[Negative]] | None = None,
    *,
    progress: bool = False,
) -> Iterator[tuple[int, Situation]]:
    """Each row of ``lb`` (its index) with what ``policy``'s rules would have judged it by,
    in decision order: the customer's contacts activated before it, the negative outcomes
    received before it, the coupons handed out before it, its time and time zone."""
    if any(isinstance(r, Budget) and r.money is not None for r in policy.rules):
        raise ValueError(
            "contact policy: money budgets cannot be applied to a log (the attributed "
            "costs of another policy are unknown); remove them to compare the rest"
        )
    if any(isinstance(r, Suppression) for r in policy.rules) and negatives is None:
        raise ValueError(
            "contact policy: suppressions need the log's outcomes; give a SQLite log, not an export"
        )
    f = lb.frame
    n = lb.n
    order = np.argsort(f["decided_at"].to_numpy(), kind="stable")
    decided = f["decided_at"].to_numpy(dtype=np.float64)
    activated = f["activated_at"].to_numpy(dtype=np.float64)
    customers = f["customer_id"].astype(str).to_numpy()
    offers = f["chosen_offer"].astype(str).to_numpy()
    chans = f["chosen_channel"].astype(str).to_numpy()
    control = f["is_control"].to_numpy(dtype=bool)
    zones = (
        f[TIME_ZONE_COLUMN].to_numpy(dtype=object)
        if TIME_ZONE_COLUMN in f.columns
        else np.full(n, None, dtype=object)
    )
    budgets = _Coupons(policy)
    contacts: dict[str, list[Contact]] = collections.defaultdict(list)
    negs = negatives or {}
    for i in tqdm(order, total=n, desc="contact policy", unit="dec", disable=not progress):
        now = float(decided[i])
        customer = customers[i]
        history = CustomerHistory(
            contacts=tuple(c for c in contacts.get(customer, ()) if c.at <= now),
            negatives=tuple(x.outcome for x in negs.get(customer, ()) if x.received_at < now),
        )
        zone = zones[i]
        yield (
            int(i),
            Situation(now, history, budgets.at(now), zone if isinstance(zone, str) else ""),
        )
        if not control[i]:
            budgets.add(offers[i], now)
            at = activated[i]
            if math.isfinite(at):
                contacts[customer].append(Contact(float(at), offers[i], chans[i]))


@dataclass(frozen=True, slots=True)
class ContactMask:
    """Which candidates of each logged decision a contact policy leaves (``kept[i, j]``;
    False on padded columns) and how many each rule removed."""

    policy: ContactPolicy
    kept: BoolArray
    removed_by_rule: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.policy.version or self.policy.digest

    @classmethod
    def of(
        cls,
        lb: LoggedBandit,
        policy: ContactPolicy,
        negatives: dict[str, list[Negative]] | None = None,
        *,
        progress: bool = False,
    ) -> ContactMask:
        """Apply ``policy`` to every decision of ``lb`` (see :func:`situations`)."""
        started = time.perf_counter()
        kept = lb.action_mask().copy()
        cat_ids = lb.frame["catalogue_id"].to_numpy()
        refs = {cid: tuple(t.ref for t in cat) for cid, cat in lb.catalogues.items()}
        removed: collections.Counter[str] = collections.Counter()
        for i, situation in situations(lb, policy, negatives, progress=progress):
            cands = refs[int(cat_ids[i])]
            verdict = policy.apply(cands, situation)
            if len(verdict.kept) < len(cands):
                row = np.zeros(lb.max_treatments, dtype=bool)
                row[list(verdict.kept)] = True
                kept[i] = row
                removed.update(rule for _, rule in verdict.removed)
        return cls(policy, kept, dict(removed), time.perf_counter() - started)


class _Coupons:
    """Coupons handed out per budgeted offer, in total and per day in the rule's zone."""

    def __init__(self, policy: ContactPolicy) -> None:
        self.zones: dict[str, dt.tzinfo] = {}
        for r in policy.rules:
            if isinstance(r, Budget):
                self.zones.setdefault(r.offer, resolve_zone(r.time_zone))
        self.total: collections.Counter[str] = collections.Counter()
        self.days: dict[str, collections.Counter[dt.date]] = collections.defaultdict(
            collections.Counter
        )
        self._now = -math.inf
        self._cache = Budgets()

    def _day(self, offer: str, at: float) -> dt.date:
        return dt.datetime.fromtimestamp(at, self.zones[offer]).date()

    def add(self, offer: str, at: float) -> None:
        if offer in self.zones:
            self.total[offer] += 1
            self.days[offer][self._day(offer, at)] += 1
            self._now = -math.inf

    def at(self, now: float) -> Budgets:
        if not self.zones:
            return self._cache
        if now != self._now:
            self._cache = Budgets(
                {o: BudgetUse(self.total[o], self.days[o][self._day(o, now)]) for o in self.zones}
            )
            self._now = now
        return self._cache


@dataclass(frozen=True, slots=True)
class WithContactPolicy:
    """``inner`` with ``mask`` applied: removed treatments' probability goes to control."""

    inner: TargetPolicy
    mask: ContactMask
    label: str = ""

    @property
    def name(self) -> str:
        return f"{self.inner.name}+{self.label or self.mask.name}"

    def params(self) -> dict[str, str]:
        return {
            **self.inner.params(),
            "contact_policy": self.mask.policy.digest,
            "contact_policy_version": self.mask.policy.version,
        }

    def target(self, lb: LoggedBandit, *, progress: bool = False) -> PolicyTarget:
        t = self.inner.target(lb, progress=progress)
        if self.mask.kept.shape != t.pmf.shape:
            raise ValueError("contact policy: the mask was made for another log")
        pmf = np.where(self.mask.kept, t.pmf, 0.0)
        lost = 1.0 - pmf.sum(axis=1)
        control = control_columns(lb)  # every logged catalogue has control (else ValueError)
        pmf[np.arange(lb.n), control] += lost
        notes = list(t.notes)
        capped = int((lost > 1e-12).sum())
        notes.append(
            f"contact policy {self.mask.name}: {capped} of {lb.n} decisions lost probability "
            "to it (moved to control); removals by rule: "
            + (
                ", ".join(f"{r} {c}" for r, c in sorted(self.mask.removed_by_rule.items()))
                or "none"
            )
        )
        return PolicyTarget(
            pmf, t.model, t.vw_args, tuple(notes), t.seconds + self.mask.seconds, t.learned
        )


def load_contact_policies(paths: Iterable[str | Path]) -> list[tuple[str, ContactPolicy]]:
    """Contact-policy files with their labels (file stem)."""
    return [(Path(p).stem, ContactPolicy.load(p)) for p in paths]

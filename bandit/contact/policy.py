"""Contact policies: the marketing rules that remove treatments before scoring.

A policy is a TOML file of rules, each a table in an array named after its kind. Every rule
removes treatments (never control) from a Choose call's candidates given the customer's
history (:mod:`bandit.contact.history`) and the current time; the pmf is then over what is
left, so the logged propensities stay exact. Rules are pure: :meth:`ContactPolicy.apply`
reads records and returns which treatment each rule removed.

```toml
version = "2026-12 spring"          # optional label; the file's digest is stamped anyway

[[cap]]                             # contacts per customer over a rolling window
name = "one email a week"
channel = "email"                   # omit: contacts on any channel count, every channel capped
max = 1
days = 7

[[repeat]]                          # not the same offer again within the window
name = "no repeats"
days = 14                           # offer = "..." limits it to one offer

[[suppression]]                     # after negative outcomes
name = "unsubscribed"
outcomes = ["unsubscribe", "complaint", "spam_report"]
scope = "channel"                   # the outcome's channel ("all": every channel)
days = 0                            # 0: for good

[[quiet_hours]]                     # in the customer's time zone
name = "no sms at night"
channel = "sms"
start = "21:00"
end = "08:00"
time_zone = "Europe/Berlin"         # when the customer has no `time_zone` feature (default UTC)

[[validity]]                        # an offer only between two instants
offer = "black_friday"
start = 2026-11-27T00:00:00+01:00
end = 2026-11-30T00:00:00+01:00

[[budget]]                          # stop offering once spent
offer = "coupon10"
count = 1000                        # coupons in total
per_day = 100                       # and per day (in `time_zone`, default UTC)
money = 5000.0                      # offer costs charged, in the reward's currency
```

A rule without ``name`` is named after its kind and position (``cap[0]``). A suppression
with ``scope = "channel"`` whose outcome names no channel (it was attributed to no decision)
suppresses every channel: the customer's wish is known, the channel it concerned is not.
Unknown keys are refused (a typo would silently switch a rule off).

>>> policy = ContactPolicy.parse('[[cap]]\\nchannel = "email"\\nmax = 1\\ndays = 7')
>>> from bandit.contact.history import Contact, CustomerHistory
>>> from bandit.types import CONTROL
>>> seen = Situation(now=DAY, history=CustomerHistory((Contact(0.0, "o", "email"),)))
>>> email, sms = TreatmentRef("o", "email"), TreatmentRef("o", "sms")
>>> policy.apply([CONTROL, email, sms], seen).removed
((TreatmentRef(offer_id='o', channel_id='email'), 'cap[0]'),)
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bandit.contact.history import EMPTY_HISTORY, Budgets, CustomerHistory
from bandit.types import TreatmentRef

DAY = 86_400.0

__all__ = [
    "DAY",
    "Budget",
    "Cap",
    "ContactPolicy",
    "Cut",
    "PolicyError",
    "QuietHours",
    "Repeat",
    "Rule",
    "Situation",
    "Suppression",
    "Validity",
    "Verdict",
    "resolve_zone",
]


class PolicyError(ValueError):
    """A contact-policy file that cannot be used; the message names the rule and field."""


@functools.lru_cache(maxsize=512)
def resolve_zone(name: str) -> dt.tzinfo:
    """An IANA time zone by name (``ValueError`` for an unknown one).

    >>> resolve_zone("UTC").utcoffset(None)
    datetime.timedelta(0)
    """
    if name in ("UTC", "Z", ""):
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name[:64]!r}") from exc


@dataclass(frozen=True, slots=True)
class Situation:
    """What the rules judge a Choose call by."""

    now: float
    """Seconds since the epoch."""
    history: CustomerHistory = EMPTY_HISTORY
    budgets: Budgets = field(default_factory=Budgets)
    time_zone: str = ""
    """The customer's IANA time zone (a ``time_zone`` feature); empty: each rule's default."""


@dataclass(frozen=True, slots=True)
class Cut:
    """What one rule removes in one situation: every treatment, or those of some offers or
    of some channels. :meth:`ContactPolicy.apply` works each rule's out once per call, then
    checks the candidates against them (``removes`` is the same rule, candidate by
    candidate)."""

    rule: str
    everything: bool = False
    offers: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()


_ANY = TreatmentRef("-", "-")


@dataclass(frozen=True, slots=True)
class Cap:
    """At most ``max`` contacts within ``seconds`` — on ``channel``, or on all channels."""

    name: str
    max: int
    seconds: float
    channel: str | None = None

    def removes(self, t: TreatmentRef, s: Situation) -> bool:
        if self.channel is not None and t.channel_id != self.channel:
            return False
        return s.history.contacts_since(s.now - self.seconds, self.channel) >= self.max

    def cut(self, s: Situation) -> Cut | None:
        if s.history.contacts_since(s.now - self.seconds, self.channel) < self.max:
            return None
        if self.channel is None:
            return Cut(self.name, everything=True)
        return Cut(self.name, channels=frozenset((self.channel,)))


@dataclass(frozen=True, slots=True)
class Repeat:
    """Not the same offer again within ``seconds`` (one offer, or every offer)."""

    name: str
    seconds: float
    offer: str | None = None

    def removes(self, t: TreatmentRef, s: Situation) -> bool:
        if self.offer is not None and t.offer_id != self.offer:
            return False
        last = s.history.last_offered(t.offer_id)
        return last is not None and s.now - last < self.seconds

    def cut(self, s: Situation) -> Cut | None:
        recent = frozenset(
            c.offer_id
            for c in s.history.contacts
            if s.now - c.at < self.seconds and (self.offer is None or c.offer_id == self.offer)
        )
        return Cut(self.name, offers=recent) if recent else None


@dataclass(frozen=True, slots=True)
class Suppression:
    """No contact after one of ``outcomes`` — on its channel or on all — for ``seconds``
    (``None``: for good)."""

    name: str
    outcomes: frozenset[str]
    scope: str  # "channel" | "all"
    seconds: float | None

    def removes(self, t: TreatmentRef, s: Situation) -> bool:
        for n in s.history.negatives:
            if n.type not in self.outcomes:
                continue
            if self.seconds is not None and s.now - n.at >= self.seconds:
                continue
            if self.scope == "all" or not n.channel_id or n.channel_id == t.channel_id:
                return True
        return False

    def cut(self, s: Situation) -> Cut | None:
        channels: set[str] = set()
        for n in s.history.negatives:
            if n.type not in self.outcomes:
                continue
            if self.seconds is not None and s.now - n.at >= self.seconds:
                continue
            if self.scope == "all" or not n.channel_id:
                return Cut(self.name, everything=True)
            channels.add(n.channel_id)
        return Cut(self.name, channels=frozenset(channels)) if channels else None


@dataclass(frozen=True, slots=True)
class QuietHours:
    """No contact on ``channel`` (or any) between ``start`` and ``end`` minutes after local
    midnight (a window past midnight wraps), in the customer's time zone."""

    name: str
    start: int
    end: int
    time_zone: str = "UTC"
    channel: str | None = None

    def removes(self, t: TreatmentRef, s: Situation) -> bool:
        if self.channel is not None and t.channel_id != self.channel:
            return False
        zone = resolve_zone(s.time_zone or self.time_zone)
        local = dt.datetime.fromtimestamp(s.now, zone)
        minute = local.hour * 60 + local.minute
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def cut(self, s: Situation) -> Cut | None:
        if not self.removes(_ANY if self.channel is None else TreatmentRef("", self.channel), s):
            return None
        if self.channel is None:
            return Cut(self.name, everything=True)
        return Cut(self.name, channels=frozenset((self.channel,)))


@dataclass(frozen=True, slots=True)
class Validity:
    """``offer`` only from ``start`` (inclusive) to ``end`` (exclusive)."""

    name: str
    offer: str
    start: float = -math.inf
    end: float = math.inf

    def removes(self, t: TreatmentRef, s: Situation) -> bool:
        return t.offer_id == self.offer and not self.start <= s.now < self.end

    def cut(self, s: Situation) -> Cut | None:
        if self.start <= s.now < self.end:
            return None
        return Cut(self.name, offers=frozenset((self.offer,)))


@dataclass(frozen=True, slots=True)
class Budget:
    """``offer`` until its coupons (in total, or today) or its money are used up."""

    name: str
    offer: str
    count: int | None = None
    per_day: int | None = None
    money: float | None = None
    time_zone: str = "UTC"
    """Where a day starts, for ``per_day``."""

    def removes(self, t: TreatmentRef, s: Situation) -> bool:
        if t.offer_id != self.offer:
            return False
        used = s.budgets.of(self.offer)
        return (
            (self.count is not None and used.count >= self.count)
            or (self.per_day is not None and used.today >= self.per_day)
            or (self.money is not None and used.money >= self.money)
        )

    def cut(self, s: Situation) -> Cut | None:
        if not self.removes(TreatmentRef(self.offer, ""), s):
            return None
        return Cut(self.name, offers=frozenset((self.offer,)))


Rule = Cap | Repeat | Suppression | QuietHours | Validity | Budget


@dataclass(frozen=True, slots=True)
class Verdict:
    """Which candidates stay (their positions, control's included) and which rule removed
    each of the others: the first that removes it, in the order of the kinds (cap, repeat,
    suppression, quiet_hours, validity, budget), then of the file."""

    kept: tuple[int, ...]
    removed: tuple[tuple[TreatmentRef, str], ...]


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    """The rules of one policy file, its label and the digest stamped on decisions."""

    rules: tuple[Rule, ...] = ()
    version: str = ""
    digest: str = "none"

    def apply(self, treatments: Sequence[TreatmentRef], situation: Situation) -> Verdict:
        """The candidates the rules leave (control always stays)."""
        cuts = [c for r in self.rules if (c := r.cut(situation)) is not None]
        if not cuts:
            return Verdict(tuple(range(len(treatments))), ())
        kept: list[int] = []
        removed: list[tuple[TreatmentRef, str]] = []
        for i, t in enumerate(treatments):
            if t.is_control:
                kept.append(i)
                continue
            for c in cuts:
                if c.everything or t.offer_id in c.offers or t.channel_id in c.channels:
                    removed.append((t, c.rule))
                    break
            else:
                kept.append(i)
        return Verdict(tuple(kept), tuple(removed))

    def _first_removing(self, t: TreatmentRef, situation: Situation) -> str | None:
        for rule in self.rules:
            if rule.removes(t, situation):
                return rule.name
        return None

    @property
    def budget_offers(self) -> frozenset[str]:
        """Offers whose use a budget rule counts."""
        return frozenset(r.offer for r in self.rules if isinstance(r, Budget))

    @property
    def negative_outcomes(self) -> frozenset[str]:
        """Outcome types any suppression rule acts on."""
        return frozenset().union(*(r.outcomes for r in self.rules if isinstance(r, Suppression)))

    @property
    def longest_lookback(self) -> float:
        """How far back the rules read a customer's contacts (seconds; inf: for good)."""
        spans = [r.seconds for r in self.rules if isinstance(r, Cap | Repeat)]
        spans += [
            math.inf if r.seconds is None else r.seconds
            for r in self.rules
            if isinstance(r, Suppression)
        ]
        return max(spans, default=0.0)

    @classmethod
    def load(cls, path: str | Path) -> ContactPolicy:
        """Read and check a policy file (:class:`PolicyError` naming what is wrong)."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PolicyError(f"cannot read the contact policy {str(path)!r}: {exc}") from exc
        return cls.parse(data)

    @classmethod
    def parse(cls, text: str | bytes) -> ContactPolicy:
        """A policy from its TOML text (:class:`PolicyError` naming what is wrong)."""
        raw = text.encode() if isinstance(text, str) else text
        try:
            doc = tomllib.loads(raw.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise PolicyError(f"the contact policy is not valid TOML: {exc}") from exc
        unknown = set(doc) - {"version", *_KINDS}
        if unknown:
            raise PolicyError(
                f"unknown key(s) {sorted(unknown)}: a policy has version and "
                f"arrays of {', '.join(_KINDS)}"
            )
        version = doc.get("version", "")
        if not isinstance(version, str):
            raise PolicyError("version: must be a string")
        rules: list[Rule] = []
        for kind, build in _KINDS.items():
            tables = doc.get(kind, [])
            if not isinstance(tables, list):
                raise PolicyError(f"{kind}: must be an array of tables ([[{kind}]])")
            for i, table in enumerate(tables):
                where = f"{kind}[{i}]"
                if not isinstance(table, dict):
                    raise PolicyError(f"{where}: must be a table")
                rules.append(build(_Fields(where, table)))
        names = [r.name for r in rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise PolicyError(f"rule names must be unique: {twice}")
        digest = hashlib.sha256(raw).hexdigest()[:12]
        return cls(tuple(rules), version, digest)


class _Fields:
    """One rule's table, read field by field with errors naming ``where.field``."""

    def __init__(self, where: str, table: Mapping[str, Any]) -> None:
        self.where = where
        self.table = dict(table)
        self.read: set[str] = set()

    def _get(self, key: str) -> Any:
        self.read.add(key)
        return self.table.get(key)

    def fail(self, key: str, problem: str) -> PolicyError:
        return PolicyError(f"{self.where}.{key}: {problem}")

    def name(self) -> str:
        value = self._get("name")
        if value is None:
            return self.where
        if not isinstance(value, str) or not value.strip():
            raise self.fail("name", "must be a non-empty string")
        return value

    def text(self, key: str, required: bool = False) -> str | None:
        value = self._get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, "must be a non-empty string")
        return value

    def count(self, key: str, required: bool = False) -> int | None:
        value = self._get(key)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(key, "must be a whole number ≥ 0")
        return value

    def seconds(self, forever_is_zero: bool = False) -> float | None:
        """``days`` or ``hours`` (one of them), in seconds; with ``forever_is_zero``, 0 → None."""
        days, hours = self._get("days"), self._get("hours")
        if (days is None) == (hours is None):
            raise self.fail("days", "give either days or hours")
        key, value, unit = ("days", days, DAY) if days is not None else ("hours", hours, 3600.0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, "must be a number")
        if value == 0 and forever_is_zero:
            return None
        if not 0 < value < 36_500:
            raise self.fail(
                key,
                "must be > 0 and below 100 years" + (" (0: for good)" if forever_is_zero else ""),
            )
        return float(value) * unit

    def minute_of_day(self, key: str) -> int:
        value = self.text(key, required=True)
        assert value is not None
        try:
            t = dt.time.fromisoformat(value)
        except ValueError:
            raise self.fail(key, "must be a time of day, HH:MM") from None
        return t.hour * 60 + t.minute

    def zone(self) -> str:
        value = self.text("time_zone") or "UTC"
        try:
            resolve_zone(value)
        except ValueError as exc:
            raise self.fail("time_zone", str(exc)) from None
        return value

    def instant(self, key: str) -> float | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise self.fail(key, "must be a date-time with an offset (2026-11-27T00:00:00+01:00)")
        return value.timestamp()

    def money(self, key: str) -> float | None:
        value = self._get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e15:
            raise self.fail(key, "must be a number ≥ 0")
        return float(value)

    def done(self, rule: Rule) -> Rule:
        extra = sorted(set(self.table) - self.read)
        if extra:
            raise PolicyError(f"{self.where}: unknown key(s) {extra}")
        return rule


def _cap(f: _Fields) -> Rule:
    name, channel, most = f.name(), f.text("channel"), f.count("max", required=True)
    seconds = f.seconds()
    assert most is not None
    assert seconds is not None
    return f.done(Cap(name, most, seconds, channel))


def _repeat(f: _Fields) -> Rule:
    name, offer, seconds = f.name(), f.text("offer"), f.seconds()
    assert seconds is not None
    return f.done(Repeat(name, seconds, offer))


def _suppression(f: _Fields) -> Rule:
    name = f.name()
    outcomes = f._get("outcomes")
    if (
        not isinstance(outcomes, list)
        or not outcomes
        or not all(isinstance(o, str) and o for o in outcomes)
    ):
        raise f.fail("outcomes", "must be a non-empty list of outcome types")
    scope = f.text("scope") or "channel"
    if scope not in ("channel", "all"):
        raise f.fail("scope", 'must be "channel" or "all"')
    seconds = f.seconds(forever_is_zero=True)
    return f.done(Suppression(name, frozenset(outcomes), scope, seconds))


def _quiet_hours(f: _Fields) -> Rule:
    name, channel = f.name(), f.text("channel")
    start, end = f.minute_of_day("start"), f.minute_of_day("end")
    if start == end:
        raise f.fail("end", "must differ from start")
    return f.done(QuietHours(name, start, end, f.zone(), channel))


def _validity(f: _Fields) -> Rule:
    name, offer = f.name(), f.text("offer", required=True)
    start, end = f.instant("start"), f.instant("end")
    assert offer is not None
    if start is None and end is None:
        raise f.fail("start", "give start, end or both")
    lo, hi = -math.inf if start is None else start, math.inf if end is None else end
    if lo >= hi:
        raise f.fail("end", "must be after start")
    return f.done(Validity(name, offer, lo, hi))


def _budget(f: _Fields) -> Rule:
    name, offer = f.name(), f.text("offer", required=True)
    count, per_day, money = f.count("count"), f.count("per_day"), f.money("money")
    assert offer is not None
    if count is None and per_day is None and money is None:
        raise f.fail("count", "give count, per_day, money or several")
    return f.done(Budget(name, offer, count, per_day, money, f.zone()))


_KINDS: dict[str, Callable[[_Fields], Rule]] = {
    "cap": _cap,
    "repeat": _repeat,
    "suppression": _suppression,
    "quiet_hours": _quiet_hours,
    "validity": _validity,
    "budget": _budget,
}

"""Reading the decision log back, for offline analysis: the port's reader.

:class:`LogReader` is what offline tools (loading into columns, exports, reports, replay)
read the log through, whatever stores it; the SQLite implementation is
:class:`bandit.log.sqlite.reader.SqliteLogReader`, next to the schema. A reader covers the
decisions logged when it was opened (later ones are left to the next reader), reads them in
log order (``seq``) and in chunks, so a log larger than memory streams with constant memory.

Voided rows (``offerbandit void``: kept in the log, flagged, never learned) are left out by
default; :attr:`Selection.include_voided` reads them too, with ``voided_at`` set.

>>> Selection(since=10.0).closed_only, Selection().include_voided
(True, False)
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from bandit.types import Treatment

JsonFeature = float | str | bool | list[str]
"""A feature value as the log holds it (a JSON number, text, flag, or a list of tags)."""


class FeatureKind(StrEnum):
    """What a customer or trigger feature's values are, over a slice of the log."""

    NUMBER = "number"
    TEXT = "text"
    FLAG = "flag"
    TAGS = "tags"
    MIXED = "json"
    """Seen with several kinds (exports keep such values as JSON text)."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which decisions a read covers.

    ``closed_only`` keeps decisions whose reward is final (window closed); ``since`` and
    ``until`` bound the decision time, ``since <= decided_at < until`` (seconds since the
    epoch); ``include_voided`` also reads voided decisions (flagged by ``voided_at``).
    """

    closed_only: bool = True
    since: float | None = None
    until: float | None = None
    include_voided: bool = False


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """One logged decision with its attribution state, as an offline reader sees it.

    ``pmf`` is the full logged distribution over the catalogue ``catalogue_id``'s treatments
    (in its order); ``chosen`` indexes both. Features are as logged (JSON values).
    ``reward`` is ``None`` until ``closed``; ``revenue`` and ``n_outcomes`` count the
    attributed outcomes that are not voided.
    """

    seq: int
    event_id: str
    decided_at: float
    customer_id: str
    customer_features: Mapping[str, JsonFeature]
    trigger_type: str
    trigger_features: Mapping[str, JsonFeature]
    catalogue_id: int
    pmf: NDArray[np.float64]
    chosen: int
    chosen_offer: str
    chosen_channel: str
    is_control: bool
    holdout: bool
    propensity: float
    model_version: str
    policy: str
    deferred: bool
    activated_at: float | None
    closed: bool
    reward: float | None
    revenue: float
    n_outcomes: int
    fixed_cost: float
    discount_rate: float
    contact_cost: float
    voided_at: float | None = None
    contact_policy: str = ""
    """The digest of the contact policy it was decided under (empty: none)."""
    removed: tuple[tuple[str, str, str], ...] = ()
    """What that policy removed: (offer, channel, rule) per treatment."""


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """How far the decisions of a selection have come (``closed_only`` is ignored): closed,
    open (attribution window running), or deferred and not yet activated; and when the open
    windows close (seconds since the epoch; ``None`` without open windows)."""

    decisions: int
    closed: int
    open: int
    awaiting_activation: int
    first_close: float | None = None
    last_close: float | None = None


@dataclass(frozen=True, slots=True)
class LoggedOutcome:
    """One stored outcome: ``status`` is ``attributed``, ``unattributed`` or ``late``;
    ``event_id`` is the decision it counts for (or the one it named)."""

    outcome_id: str
    event_id: str | None
    customer_id: str | None
    type: str
    revenue: float
    occurred_at: float
    received_at: float
    status: str
    voided_at: float | None = None


class LogReader(Protocol):
    """A read-only, chunked view of a decision log (the port's reading side)."""

    @property
    def source(self) -> str:
        """Where the log is (a path, a URL): for reports and export metadata."""

    @property
    def schema_version(self) -> int:
        """The log's schema version."""

    def catalogues(self) -> Mapping[int, tuple[Treatment, ...]]:
        """Every candidate catalogue the covered decisions refer to, by id."""

    def catalogue_texts(self) -> Mapping[int, str]:
        """The same catalogues encoded (:func:`bandit.logcodec.decode_catalogue` reads one)."""

    def count(self, selection: Selection) -> int:
        """How many covered decisions ``selection`` keeps."""

    def window_counts(self, selection: Selection) -> WindowCounts:
        """How many covered decisions the selection keeps are closed, open or awaiting
        activation, and when the open windows close."""

    def decisions(self, selection: Selection, chunk_size: int) -> Iterator[list[LoggedDecision]]:
        """The covered decisions ``selection`` keeps, in log order, ``chunk_size`` at a time."""

    def feature_kinds(
        self, selection: Selection
    ) -> tuple[dict[str, FeatureKind], dict[str, FeatureKind]]:
        """The kind of every customer feature and every trigger feature in the selection."""

    def outcomes(
        self, *, since: float | None = None, include_voided: bool = False, chunk_size: int
    ) -> Iterator[list[LoggedOutcome]]:
        """Stored outcomes in arrival order, ``chunk_size`` at a time; ``since`` keeps those
        that occurred at or after it."""

    def close(self) -> None:
        """Release the log."""


# ---- what both SQL readers share -------------------------------------------------------------

DECISION_COLUMNS = (
    "seq, record, catalogue_id, activated_at, closed_seq, reward, revenue, n_outcomes,"
    " fixed_cost, discount_rate, contact_cost, chosen_offer, chosen_channel, is_control,"
    " propensity"
)
"""The columns a reader selects for :func:`decision_from_row`, then the packed pmf and
``voided_at`` (each backend names those two its own way)."""


def selection_sql(selection: Selection, mark: str, voided: bool = True) -> tuple[str, list[Any]]:
    """``selection`` as SQL conditions on the decisions table (each ``" AND …"``) and their
    parameters; ``mark``: the driver's placeholder (``?``, ``%s``); ``voided``: whether the
    table has a ``voided_at`` column (a log older than voiding has none)."""
    clauses: list[str] = []
    params: list[Any] = []
    if selection.closed_only:
        clauses.append("closed_seq IS NOT NULL")
    if not selection.include_voided and voided:
        clauses.append("voided_at IS NULL")
    if selection.since is not None:
        clauses.append(f"decided_at >= {mark}")
        params.append(selection.since)
    if selection.until is not None:
        clauses.append(f"decided_at < {mark}")
        params.append(selection.until)
    return "".join(f" AND {c}" for c in clauses), params


def decision_from_row(row: Sequence[Any]) -> LoggedDecision:
    """One decision from its :data:`DECISION_COLUMNS`, packed pmf and ``voided_at`` (a
    version-1 row has no packed pmf: it is in the record)."""
    (seq, record, cid, activated_at, closed_seq, reward, revenue, n_outcomes, fixed_cost,
     discount_rate, contact_cost, chosen_offer, chosen_channel, is_control, propensity,
     packed, voided_at) = row  # fmt: skip
    r = json.loads(record)
    pmf = (
        np.asarray(r["pmf"], dtype=np.float64)
        if packed is None
        else np.frombuffer(bytes(packed), dtype="<f8")
    )
    customer, trigger = r["customer"], r["trigger"]
    return LoggedDecision(
        seq=seq,
        event_id=r["event_id"],
        decided_at=r["decided_at"],
        customer_id=customer["id"],
        customer_features=customer["features"],
        trigger_type=trigger["type"],
        trigger_features=trigger["features"],
        catalogue_id=cid,
        pmf=pmf,
        chosen=r["chosen"],
        chosen_offer=chosen_offer,
        chosen_channel=chosen_channel,
        is_control=bool(is_control),
        holdout=bool(r.get("holdout", False)),
        propensity=propensity,
        model_version=r["model_version"],
        policy=r["policy"],
        deferred=r["deferred"],
        activated_at=activated_at,
        closed=closed_seq is not None,
        reward=reward,
        revenue=revenue,
        n_outcomes=n_outcomes,
        fixed_cost=fixed_cost,
        discount_rate=discount_rate,
        contact_cost=contact_cost,
        voided_at=voided_at,
        contact_policy=str(r.get("contact_policy", "")),
        removed=tuple((str(o), str(c), str(rule)) for o, c, rule in r.get("removed", ())),
    )


__all__ = [
    "DECISION_COLUMNS",
    "FeatureKind",
    "JsonFeature",
    "LogReader",
    "LoggedDecision",
    "LoggedOutcome",
    "Selection",
    "WindowCounts",
    "decision_from_row",
    "selection_sql",
]

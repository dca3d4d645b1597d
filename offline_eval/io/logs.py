"""Reading the service's decision log into columns for offline analysis.

:class:`LoggedBandit` is the one in-memory form every offline tool works on: a pandas frame
with one row per decision, a padded ``(n, K)`` array of the logged pmfs, and the candidate
catalogues the rows refer to. It holds contexts as flat feature columns (``c.<name>`` for
customer features, ``t.<name>`` for trigger features) instead of one Python object per row,
so a million decisions fit comfortably in memory.

Reading goes through the decision log's reader (:class:`bandit.log.reader.LogReader`; the
SQLite log's, read-only, while the service keeps writing), chunked (``chunk_size`` rows at a
time) with a progress bar. Voided decisions and outcomes (``offerbandit void``) are left out
unless asked for.

>>> lb = load_sqlite("data/decisions.sqlite")  # doctest: +SKIP
>>> lb.frame[["event_id", "chosen_offer", "propensity", "reward"]].head()  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.log.backends import open_log_reader
from bandit.log.reader import LoggedDecision, LogReader, Selection
from bandit.types import Treatment, TreatmentRef
from offline_eval.estimators.ope import BanditData

CUSTOMER_PREFIX = "c."
TRIGGER_PREFIX = "t."

BASE_COLUMNS = [
    "seq",
    "event_id",
    "decided_at",
    "customer_id",
    "trigger_type",
    "catalogue_id",
    "n_treatments",
    "chosen",
    "chosen_offer",
    "chosen_channel",
    "is_control",
    "holdout",
    "propensity",
    "model_version",
    "policy",
    "deferred",
    "activated_at",
    "closed",
    "reward",
    "revenue",
    "n_outcomes",
    "fixed_cost",
    "discount_rate",
    "contact_cost",
]
CONTACT_COLUMNS = ["contact_policy", "removed"]
"""The contact policy a decision was made under (its digest; empty: none) and what it removed
(JSON ``[[offer, channel, rule], …]``); in the log's frames and every export, after
:data:`BASE_COLUMNS`."""


@dataclass
class LoggedBandit:
    """Logged decisions in columns.

    ``frame`` has :data:`BASE_COLUMNS` plus one column per customer feature (``c.<name>``)
    and trigger feature (``t.<name>``); missing features are NaN/None. ``pmf[i, j]`` is the
    logged probability of treatment ``j`` of row ``i``'s catalogue (0 beyond its size), and
    ``catalogues[frame.catalogue_id[i]][j]`` is that treatment.
    """

    frame: pd.DataFrame
    pmf: NDArray[np.float64]
    catalogues: dict[int, tuple[Treatment, ...]]
    source: str = ""
    pmf_complete: bool = True
    """False when only the chosen action's probability is known (logs of other systems):
    then ``pmf`` rows hold just that entry, and :meth:`bandit_data` passes no logging pmf,
    so estimators rely on the propensities alone."""

    @property
    def n(self) -> int:
        return len(self.frame)

    @property
    def max_treatments(self) -> int:
        return int(self.pmf.shape[1]) if self.pmf.ndim == 2 else 0

    def action_mask(self) -> NDArray[np.bool_]:
        sizes = self.frame["n_treatments"].to_numpy()
        return np.arange(self.max_treatments)[None, :] < sizes[:, None]

    def treatment_refs(self) -> list[TreatmentRef]:
        """Every treatment that appears in any catalogue, control first, in first-seen order."""
        seen: dict[TreatmentRef, None] = {TreatmentRef("", ""): None}
        for cat in self.catalogues.values():
            for t in cat:
                seen.setdefault(t.ref, None)
        return list(seen)

    def select(self, mask: NDArray[np.bool_] | pd.Series) -> LoggedBandit:
        """The rows where ``mask`` holds (a new object; catalogues shared)."""
        m = np.asarray(mask, dtype=bool)
        return LoggedBandit(
            self.frame.loc[m].reset_index(drop=True),
            self.pmf[m],
            self.catalogues,
            self.source,
            self.pmf_complete,
        )

    def closed(self) -> LoggedBandit:
        """Only decisions whose reward is final (attribution window closed)."""
        return self.select(self.frame["closed"].to_numpy())

    def bandit_data(self) -> BanditData:
        """The estimators' view: rewards, chosen indices, propensities, full logged pmfs
        (``logging_pmf`` is ``None`` when :attr:`pmf_complete` is false).

        Raises ``ValueError`` when rows have no final reward yet (call :meth:`closed`)."""
        if not bool(self.frame["closed"].all()):
            raise ValueError("the log has decisions without a final reward; use .closed()")
        return BanditData(
            rewards=self.frame["reward"].to_numpy(dtype=np.float64),
            chosen=self.frame["chosen"].to_numpy(dtype=np.int64),
            propensities=self.frame["propensity"].to_numpy(dtype=np.float64),
            logging_pmf=self.pmf if self.pmf_complete else None,
            action_mask=self.action_mask(),
        )


def open_log(log: str | Path | LogReader) -> LogReader:
    """A reader of ``log``: a reader itself, a ``postgresql://`` URL, or the path of a SQLite
    log (a data folder or its ``decisions.sqlite``)."""
    if isinstance(log, str | Path):
        return open_log_reader(log)
    return log


def load_sqlite(
    path: str | Path | LogReader,
    *,
    closed_only: bool = True,
    since: float | None = None,
    until: float | None = None,
    include_voided: bool = False,
    chunk_size: int = 50_000,
    progress: bool = True,
) -> LoggedBandit:
    """Load the decision log at ``path`` (``decisions.sqlite``, a data folder, or an open
    :class:`~bandit.log.reader.LogReader`, which is left open).

    ``closed_only`` keeps decisions whose reward is final; ``since``/``until`` bound the
    decision time (seconds since the epoch). Voided decisions are left out unless
    ``include_voided``: then the frame has a ``voided_at`` column (NaN for the others).
    """
    reader = open_log(path)
    selection = Selection(closed_only, since, until, include_voided)
    try:
        total = reader.count(selection)
        catalogues = dict(reader.catalogues())
        k = max((len(c) for c in catalogues.values()), default=1)
        rows_out: list[dict[str, Any]] = []
        pmf = np.zeros((total, k), dtype=np.float64)
        bar = tqdm(total=total, desc="loading decisions", unit="dec", disable=not progress)
        i = 0
        for chunk in reader.decisions(selection, chunk_size):
            for d in chunk:
                if i >= total:  # closed while we read: keep the counted snapshot
                    break
                rows_out.append(decision_row(d, pmf, i, voided=include_voided))
                i += 1
            bar.update(len(chunk))
        bar.close()
    finally:
        if reader is not path:
            reader.close()
    frame = pd.DataFrame.from_records(rows_out[:i])
    if frame.empty:
        frame = pd.DataFrame(
            columns=[*BASE_COLUMNS, *CONTACT_COLUMNS, *(["voided_at"] if include_voided else [])]
        )
    return LoggedBandit(frame, pmf[:i], catalogues, source=reader.source)


def removed_text(removed: Any) -> str:
    """What the contact policy removed, as text: JSON ``[[offer, channel, rule], …]``
    (``[]`` when nothing was).

    >>> removed_text([["o", "sms", "cap[0]"]])
    '[["o","sms","cap[0]"]]'
    """
    return json.dumps([list(x) for x in removed], separators=(",", ":"), ensure_ascii=False)


def decision_row(
    d: LoggedDecision, pmf: NDArray[np.float64], i: int, *, voided: bool = False
) -> dict[str, Any]:
    """A logged decision as a frame row (:data:`BASE_COLUMNS`, then ``c.``/``t.`` features,
    then ``voided_at`` when ``voided``); its pmf goes into row ``i`` of ``pmf``."""
    p = d.pmf
    pmf[i, : len(p)] = p
    out: dict[str, Any] = {
        "seq": d.seq,
        "event_id": d.event_id,
        "decided_at": d.decided_at,
        "customer_id": d.customer_id,
        "trigger_type": d.trigger_type,
        "catalogue_id": d.catalogue_id,
        "n_treatments": len(p),
        "chosen": d.chosen,
        "chosen_offer": d.chosen_offer,
        "chosen_channel": d.chosen_channel,
        "is_control": d.is_control,
        "holdout": d.holdout,
        "propensity": d.propensity,
        "model_version": d.model_version,
        "policy": d.policy,
        "deferred": d.deferred,
        "activated_at": d.activated_at,
        "closed": d.closed,
        "reward": d.reward,
        "revenue": d.revenue,
        "n_outcomes": d.n_outcomes,
        "fixed_cost": d.fixed_cost,
        "discount_rate": d.discount_rate,
        "contact_cost": d.contact_cost,
        "contact_policy": d.contact_policy,
        "removed": removed_text(d.removed),
    }
    for name, value in d.customer_features.items():
        out[CUSTOMER_PREFIX + name] = tuple(value) if isinstance(value, list) else value
    for name, value in d.trigger_features.items():
        out[TRIGGER_PREFIX + name] = tuple(value) if isinstance(value, list) else value
    if voided:
        out["voided_at"] = d.voided_at
    return out


OUTCOME_COLUMNS = [
    "outcome_id",
    "event_id",
    "customer_id",
    "type",
    "revenue",
    "occurred_at",
    "received_at",
    "status",
]


def load_outcomes(
    path: str | Path | LogReader, *, include_voided: bool = False, chunk_size: int = 50_000
) -> pd.DataFrame:
    """Every outcome the service stored (attributed, unattributed, late), by arrival time.
    Voided outcomes are left out unless ``include_voided`` (then a ``voided_at`` column
    flags them)."""
    reader = open_log(path)
    names = [*OUTCOME_COLUMNS, *(["voided_at"] if include_voided else [])]
    try:
        rows = [
            tuple(getattr(o, n) for n in names)
            for chunk in reader.outcomes(include_voided=include_voided, chunk_size=chunk_size)
            for o in chunk
        ]
    finally:
        if reader is not path:
            reader.close()
    frame = pd.DataFrame.from_records(rows, columns=names)
    return frame.sort_values("received_at", kind="stable", ignore_index=True)


def contexts(lb: LoggedBandit, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Row ``i``'s customer and trigger features as dicts (NaN/None columns dropped)."""
    row = lb.frame.iloc[i]
    cust: dict[str, Any] = {}
    trig: dict[str, Any] = {}
    for col, value in row.items():
        name = str(col)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if isinstance(value, np.generic):
            value = value.item()  # numpy scalars → Python bool/float/str
        if name.startswith(CUSTOMER_PREFIX):
            cust[name[len(CUSTOMER_PREFIX) :]] = value
        elif name.startswith(TRIGGER_PREFIX):
            trig[name[len(TRIGGER_PREFIX) :]] = value
    return cust, trig

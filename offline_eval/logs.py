"""Reading the service's decision log into columns for offline analysis.

:class:`LoggedBandit` is the one in-memory form every offline tool works on: a pandas frame
with one row per decision, a padded ``(n, K)`` array of the logged pmfs, and the candidate
catalogues the rows refer to. It holds contexts as flat feature columns (``c.<name>`` for
customer features, ``t.<name>`` for trigger features) instead of one Python object per row,
so a million decisions fit comfortably in memory.

Reading is chunked (``chunk_size`` rows at a time) with a progress bar, straight from the
SQLite file, read-only, while the service keeps writing (WAL).

>>> lb = load_sqlite("data/decisions.sqlite")  # doctest: +SKIP
>>> lb.frame[["event_id", "chosen_offer", "propensity", "reward"]].head()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.log.sqlite import schema_version_of
from bandit.logcodec import PMF_IN_HEAD_SCHEMA, SCHEMA_VERSION, decode_catalogue
from bandit.types import Treatment, TreatmentRef
from offline_eval.estimators import BanditData

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


def _connect_readonly(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise FileNotFoundError(f"no decision log at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    found = schema_version_of(conn)
    if found not in (PMF_IN_HEAD_SCHEMA, SCHEMA_VERSION):
        conn.close()
        raise ValueError(
            f"{path} is a decision log of schema version {found}; this offerbandit reads "
            f"versions {PMF_IN_HEAD_SCHEMA} and {SCHEMA_VERSION}"
        )
    return conn


def pmf_column(conn: sqlite3.Connection) -> str:
    """The packed-pmf column, or ``NULL`` in a version-1 log (read as it is: its heads carry
    their pmfs; the server migrates a log when it opens it)."""
    columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(decisions)")}
    return "pmf" if "pmf" in columns else "NULL"


def row_pmf(record: Mapping[str, Any], packed: bytes | None) -> NDArray[np.float64]:
    """A decision's pmf: the packed column, or (version-1 rows) the head's list."""
    if packed is not None:
        return np.frombuffer(packed, dtype="<f8")
    return np.asarray(record["pmf"], dtype=np.float64)


def row_columns(conn: sqlite3.Connection) -> str:
    """The columns :func:`_row` reads, in its order, for a SELECT on ``decisions``."""
    return (
        "seq, record, catalogue_id, activated_at, closed_seq, reward, revenue, n_outcomes,"
        " fixed_cost, discount_rate, contact_cost, chosen_offer, chosen_channel, is_control,"
        f" propensity, {pmf_column(conn)}"
    )


def _chunks(
    conn: sqlite3.Connection, where: str, params: Sequence[Any], chunk_size: int
) -> Iterator[list[tuple[Any, ...]]]:
    last = 0
    sql = f"SELECT {row_columns(conn)} FROM decisions WHERE seq > ? {where} ORDER BY seq LIMIT ?"
    while True:
        rows = conn.execute(sql, (last, *params, chunk_size)).fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def load_sqlite(
    path: str | Path,
    *,
    closed_only: bool = True,
    since: float | None = None,
    until: float | None = None,
    chunk_size: int = 50_000,
    progress: bool = True,
) -> LoggedBandit:
    """Load the decision log at ``path`` (``decisions.sqlite``, or a data folder).

    ``closed_only`` keeps decisions whose reward is final; ``since``/``until`` bound the
    decision time (seconds since the epoch).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "decisions.sqlite"
    conn = _connect_readonly(p)
    try:
        clauses: list[str] = []
        params: list[Any] = []
        if closed_only:
            clauses.append("closed_seq IS NOT NULL")
        if since is not None:
            clauses.append("decided_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("decided_at < ?")
            params.append(until)
        where = "".join(f" AND {c}" for c in clauses)
        total = conn.execute("SELECT COUNT(*) FROM decisions WHERE 1=1" + where, params).fetchone()[
            0
        ]
        catalogues = {
            int(cid): decode_catalogue(body)
            for cid, body in conn.execute("SELECT id, body FROM catalogues")
        }
        k = max((len(c) for c in catalogues.values()), default=1)
        rows_out: list[dict[str, Any]] = []
        pmf = np.zeros((total, k), dtype=np.float64)
        bar = tqdm(total=total, desc="loading decisions", unit="dec", disable=not progress)
        i = 0
        for chunk in _chunks(conn, where, params, chunk_size):
            for row in chunk:
                if i >= total:  # rows appended while we read: keep the counted snapshot
                    break
                rows_out.append(_row(row, pmf, i))
                i += 1
            bar.update(len(chunk))
        bar.close()
    finally:
        conn.close()
    frame = pd.DataFrame.from_records(rows_out[:i])
    if frame.empty:
        frame = pd.DataFrame(columns=BASE_COLUMNS)
    return LoggedBandit(frame, pmf[:i], catalogues, source=str(p))


def removed_text(removed: Any) -> str:
    """What the contact policy removed, as text: JSON ``[[offer, channel, rule], …]``
    (``[]`` when nothing was).

    >>> removed_text([["o", "sms", "cap[0]"]])
    '[["o","sms","cap[0]"]]'
    """
    return json.dumps(list(removed), separators=(",", ":"), ensure_ascii=False)


def _row(row: tuple[Any, ...], pmf: NDArray[np.float64], i: int) -> dict[str, Any]:
    (
        seq,
        record,
        cid,
        activated_at,
        closed_seq,
        reward,
        revenue,
        n_outcomes,
        fixed_cost,
        discount_rate,
        contact_cost,
        chosen_offer,
        chosen_channel,
        is_control,
        propensity,
        packed,
    ) = row
    r = json.loads(record)
    p = row_pmf(r, packed)
    pmf[i, : len(p)] = p
    out: dict[str, Any] = {
        "seq": seq,
        "event_id": r["event_id"],
        "decided_at": r["decided_at"],
        "customer_id": r["customer"]["id"],
        "trigger_type": r["trigger"]["type"],
        "catalogue_id": cid,
        "n_treatments": len(p),
        "chosen": r["chosen"],
        "chosen_offer": chosen_offer,
        "chosen_channel": chosen_channel,
        "is_control": bool(is_control),
        "holdout": bool(r.get("holdout", False)),
        "propensity": propensity,
        "model_version": r["model_version"],
        "policy": r["policy"],
        "deferred": r["deferred"],
        "activated_at": activated_at,
        "closed": closed_seq is not None,
        "reward": reward,
        "revenue": revenue,
        "n_outcomes": n_outcomes,
        "fixed_cost": fixed_cost,
        "discount_rate": discount_rate,
        "contact_cost": contact_cost,
        "contact_policy": r.get("contact_policy", ""),
        "removed": removed_text(r.get("removed", ())),
    }
    for name, value in r["customer"]["features"].items():
        out[CUSTOMER_PREFIX + name] = tuple(value) if isinstance(value, list) else value
    for name, value in r["trigger"]["features"].items():
        out[TRIGGER_PREFIX + name] = tuple(value) if isinstance(value, list) else value
    return out


def load_outcomes(path: str | Path) -> pd.DataFrame:
    """Every outcome the service stored (attributed, unattributed, late)."""
    p = Path(path)
    if p.is_dir():
        p = p / "decisions.sqlite"
    conn = _connect_readonly(p)
    try:
        return pd.read_sql_query(
            "SELECT outcome_id, event_id, customer_id, type, revenue, occurred_at, received_at,"
            " status FROM outcomes ORDER BY received_at",
            conn,
        )
    finally:
        conn.close()


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

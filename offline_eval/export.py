"""Exporting the joined decision log, and importing logs back into a :class:`LoggedBandit`.

Export streams the SQLite log in chunks (``chunk_size`` decisions at a time, read-only, while
the service keeps writing), so a log larger than memory is written with constant memory:

* **Parquet**: one row per decision with the columns of :class:`LoggedBandit`'s frame
  (:data:`~offline_eval.logs.BASE_COLUMNS`, one ``c.<name>``/``t.<name>`` column per
  customer/trigger feature) and ``pmf`` (a list), one row group per chunk. The candidate
  catalogues ride in the file's key-value metadata (``offerbandit``).
* **CSV**: the same columns; tag lists and ``pmf`` are JSON text.
* **DSJson**: Vowpal Wabbit's Decision Service format, one line per decision
  (:mod:`offline_eval.dsjson`), ready for ``vw --cb_explore_adf --dsjson``.

Outcomes (every stored outcome: attributed, unattributed, late) go to a second file.

Import: :func:`read_parquet` and :func:`read_dsjson` read exports back losslessly (within
float precision); :func:`read_dsjson` also reads other systems' DSJson, and
:func:`read_table` reads any table with context columns, an action, a propensity and a reward.

Example (shell: ``offerbandit export --log data --format parquet --out log.parquet``)::

    export_log("data", "log.parquet", fmt="parquet", outcomes_out="outcomes.parquet")
    lb = read_parquet("log.parquet")
    SNIPS().estimate(lb.bandit_data(), target_pmf)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.log.sqlite import schema_version_of
from bandit.logcodec import decode_catalogue
from bandit.rewards import RewardRule
from bandit.types import CONTROL_TREATMENT, Channel, FeatureValue, Offer, Treatment
from bandit.vwformat import reward_to_cost
from offline_eval.dsjson import DSJsonRow, catalogue_multi, dsjson_line, parse_dsjson_line
from offline_eval.logs import (
    BASE_COLUMNS,
    CONTACT_COLUMNS,
    CUSTOMER_PREFIX,
    TRIGGER_PREFIX,
    LoggedBandit,
    _connect_readonly,
    _row,
    removed_text,
    row_columns,
    row_pmf,
)

__all__ = [
    "DEFAULT_REWARD_SCALE",
    "ExportFormat",
    "ExportResult",
    "export_log",
    "export_outcomes",
    "read_dsjson",
    "read_parquet",
    "read_table",
]

DEFAULT_REWARD_SCALE: Final = RewardRule().scale
"""The service's default money → VW cost scale (``cost = −reward × scale``)."""

PARQUET_META_KEY: Final = b"offerbandit"
_FORMAT_VERSION: Final = 1


class ExportFormat(StrEnum):
    PARQUET = "parquet"
    DSJSON = "dsjson"
    CSV = "csv"


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote."""

    path: Path
    rows: int
    seconds: float
    outcomes_path: Path | None = None
    outcomes: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else math.inf


_BASE_TYPES: Final[dict[str, pa.DataType]] = {
    "seq": pa.int64(),
    "event_id": pa.string(),
    "decided_at": pa.float64(),
    "customer_id": pa.string(),
    "trigger_type": pa.string(),
    "catalogue_id": pa.int64(),
    "n_treatments": pa.int64(),
    "chosen": pa.int64(),
    "chosen_offer": pa.string(),
    "chosen_channel": pa.string(),
    "is_control": pa.bool_(),
    "holdout": pa.bool_(),
    "propensity": pa.float64(),
    "model_version": pa.string(),
    "policy": pa.string(),
    "deferred": pa.bool_(),
    "activated_at": pa.float64(),
    "closed": pa.bool_(),
    "reward": pa.float64(),
    "revenue": pa.float64(),
    "n_outcomes": pa.int64(),
    "fixed_cost": pa.float64(),
    "discount_rate": pa.float64(),
    "contact_cost": pa.float64(),
    "contact_policy": pa.string(),
    "removed": pa.string(),
}
assert list(_BASE_TYPES) == [*BASE_COLUMNS, *CONTACT_COLUMNS]

_OUTCOME_SCHEMA: Final = pa.schema(
    [
        ("outcome_id", pa.string()),
        ("event_id", pa.string()),
        ("customer_id", pa.string()),
        ("type", pa.string()),
        ("revenue", pa.float64()),
        ("occurred_at", pa.float64()),
        ("received_at", pa.float64()),
        ("status", pa.string()),
    ]
)

# Feature kinds, from SQLite's json_each types.
_NUMBER, _TEXT, _FLAG, _TAGS, _JSON = "number", "text", "flag", "tags", "json"
_KIND_OF_JSON_TYPE: Final = {
    "integer": _NUMBER,
    "real": _NUMBER,
    "text": _TEXT,
    "true": _FLAG,
    "false": _FLAG,
    "array": _TAGS,
}
_ARROW_OF_KIND: Final[dict[str, pa.DataType]] = {
    _NUMBER: pa.float64(),
    _TEXT: pa.string(),
    _FLAG: pa.bool_(),
    _TAGS: pa.list_(pa.string()),
    _JSON: pa.string(),
}


def _log_path(log: str | Path) -> Path:
    p = Path(log)
    return p / "decisions.sqlite" if p.is_dir() else p


class _LogReader:
    """A consistent, chunked read of a slice of the log: the decisions up to the last ``seq``
    at opening time that match the filters."""

    def __init__(
        self, log: str | Path, *, closed_only: bool, since: float | None, until: float | None
    ) -> None:
        self.path = _log_path(log)
        self.conn = _connect_readonly(self.path)
        self.schema = schema_version_of(self.conn)
        clauses: list[str] = []
        self.params: list[Any] = []
        if closed_only:
            clauses.append("closed_seq IS NOT NULL")
        if since is not None:
            clauses.append("decided_at >= ?")
            self.params.append(since)
        if until is not None:
            clauses.append("decided_at < ?")
            self.params.append(until)
        self.where = "".join(f" AND {c}" for c in clauses)
        self.last_seq = int(self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM decisions")
                            .fetchone()[0])  # fmt: skip
        self.total = int(
            self.conn.execute(
                "SELECT COUNT(*) FROM decisions WHERE seq <= ?" + self.where,
                (self.last_seq, *self.params),
            ).fetchone()[0]
        )
        # Read after the snapshot: every catalogue a counted decision uses is committed.
        self.catalogue_bodies = {
            int(cid): str(body)
            for cid, body in self.conn.execute("SELECT id, body FROM catalogues")
        }

    def catalogues(self) -> dict[int, tuple[Treatment, ...]]:
        return {cid: decode_catalogue(body) for cid, body in self.catalogue_bodies.items()}

    def chunks(self, chunk_size: int) -> Iterator[list[tuple[Any, ...]]]:
        sql = (
            f"SELECT {row_columns(self.conn)} FROM decisions"
            f" WHERE seq > ? AND seq <= ?{self.where} ORDER BY seq LIMIT ?"
        )
        last = 0
        while True:
            rows = self.conn.execute(
                sql, (last, self.last_seq, *self.params, chunk_size)
            ).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def feature_kinds(self) -> dict[str, str]:
        """Column name → kind of every customer and trigger feature in the slice (SQLite's
        JSON functions scan the records in C; a name seen with several kinds is ``json``)."""
        kinds: dict[str, str] = {}
        for prefix, where in ((CUSTOMER_PREFIX, "customer"), (TRIGGER_PREFIX, "trigger")):
            sql = (
                f"SELECT j.key, j.type FROM decisions, json_each(record, '$.{where}.features') j"
                f" WHERE seq <= ?{self.where} GROUP BY j.key, j.type ORDER BY j.key"
            )
            for key, jtype in self.conn.execute(sql, (self.last_seq, *self.params)):
                kind = _KIND_OF_JSON_TYPE.get(str(jtype))
                if kind is None:
                    continue
                name = prefix + str(key)
                kinds[name] = kind if kinds.get(name, kind) == kind else _JSON
        return kinds

    def close(self) -> None:
        self.conn.close()


def _bar(total: int, desc: str, progress: bool) -> tqdm[Any]:
    return tqdm(total=total, desc=desc, unit="dec", disable=not progress)


def _columns(
    chunk: list[tuple[Any, ...]], kinds: Mapping[str, str], k: int, *, text_lists: bool
) -> dict[str, list[Any]]:
    """A chunk of SQL rows as columns (``text_lists``: tags and pmf as JSON text, for CSV)."""
    pmf = np.zeros((len(chunk), k), dtype=np.float64)
    rows = [_row(row, pmf, i) for i, row in enumerate(chunk)]
    cols: dict[str, list[Any]] = {
        c: [r[c] for r in rows] for c in (*BASE_COLUMNS, *CONTACT_COLUMNS)
    }
    for name, kind in kinds.items():
        values = [r.get(name) for r in rows]
        if kind == _JSON or (kind == _TAGS and text_lists):
            values = [None if v is None else _dumps(v) for v in values]
        cols[name] = values
    sizes = cols["n_treatments"]
    if text_lists:
        cols["pmf"] = [_dumps(pmf[i, :n].tolist()) for i, n in enumerate(sizes)]
    else:
        cols["pmf"] = [pmf[i, :n].tolist() for i, n in enumerate(sizes)]
    return cols


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _parquet_schema(kinds: Mapping[str, str], reader: _LogReader) -> pa.Schema:
    fields = [pa.field(c, t) for c, t in _BASE_TYPES.items()]
    fields += [pa.field(name, _ARROW_OF_KIND[kind]) for name, kind in kinds.items()]
    fields.append(pa.field("pmf", pa.list_(pa.float64())))
    meta = {
        "format": _FORMAT_VERSION,
        "log_schema": reader.schema,
        "source": str(reader.path),
        "catalogues": {str(cid): body for cid, body in reader.catalogue_bodies.items()},
        "json_columns": [n for n, kind in kinds.items() if kind == _JSON],
    }
    return pa.schema(fields, metadata={PARQUET_META_KEY: _dumps(meta).encode()})


def _write_parquet(reader: _LogReader, out: Path, chunk_size: int, progress: bool) -> int:
    kinds = reader.feature_kinds()
    schema = _parquet_schema(kinds, reader)
    k = max((len(c) for c in reader.catalogues().values()), default=1)
    written = 0
    bar = _bar(reader.total, f"writing {out.name}", progress)
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for chunk in reader.chunks(chunk_size):
            cols = _columns(chunk, kinds, k, text_lists=False)
            writer.write_table(pa.Table.from_pydict(cols, schema=schema))
            written += len(chunk)
            bar.update(len(chunk))
    bar.close()
    return written


def _write_csv(reader: _LogReader, out: Path, chunk_size: int, progress: bool) -> int:
    kinds = reader.feature_kinds()
    k = max((len(c) for c in reader.catalogues().values()), default=1)
    names = [*BASE_COLUMNS, *CONTACT_COLUMNS, *kinds, "pmf"]
    written = 0
    bar = _bar(reader.total, f"writing {out.name}", progress)
    with out.open("w", encoding="utf-8", newline="") as f:
        pd.DataFrame(columns=names).to_csv(f, index=False)
        for chunk in reader.chunks(chunk_size):
            cols = _columns(chunk, kinds, k, text_lists=True)
            pd.DataFrame(cols, columns=names).to_csv(f, index=False, header=False)
            written += len(chunk)
            bar.update(len(chunk))
    bar.close()
    return written


def _write_dsjson(
    reader: _LogReader, out: Path, chunk_size: int, progress: bool, reward_scale: float
) -> int:
    multi = {cid: catalogue_multi(cat) for cid, cat in reader.catalogues().items()}
    written = 0
    bar = _bar(reader.total, f"writing {out.name}", progress)
    with out.open("w", encoding="utf-8") as f:
        for chunk in reader.chunks(chunk_size):
            f.writelines(_dsjson_row(row, multi, reward_scale) + "\n" for row in chunk)
            written += len(chunk)
            bar.update(len(chunk))
    bar.close()
    return written


def _dsjson_row(row: tuple[Any, ...], multi: Mapping[int, str], reward_scale: float) -> str:
    (seq, record, cid, activated_at, closed_seq, reward, revenue, n_outcomes, *_, packed) = row
    r = json.loads(record)
    closed = closed_seq is not None
    meta = {
        "seq": seq,
        "customer_id": r["customer"]["id"],
        "decided_at": r["decided_at"],
        "activated_at": activated_at,
        "deferred": r["deferred"],
        "holdout": bool(r.get("holdout", False)),
        "policy": r["policy"],
        "catalogue_id": cid,
        "closed": closed,
        "reward": reward,
        "revenue": revenue,
        "n_outcomes": n_outcomes,
        "contact_policy": r.get("contact_policy", ""),
        "removed": r.get("removed", []),
    }
    return dsjson_line(
        event_id=r["event_id"],
        decided_at=r["decided_at"],
        customer_features=r["customer"]["features"],
        trigger_type=r["trigger"]["type"],
        trigger_features=r["trigger"]["features"],
        multi=multi[cid],
        pmf=row_pmf(r, packed).tolist(),
        chosen=r["chosen"],
        cost=reward_to_cost(reward, reward_scale) if closed and reward is not None else None,
        model_version=r["model_version"],
        meta=meta,
    )


def export_outcomes(
    log: str | Path,
    out: str | Path,
    *,
    fmt: ExportFormat | str = ExportFormat.PARQUET,
    since: float | None = None,
    chunk_size: int = 50_000,
) -> int:
    """Write every stored outcome (attributed, unattributed, late) in arrival order, as
    Parquet or CSV; ``since`` keeps outcomes that occurred at or after it. Returns the count.
    """
    fmt = ExportFormat(fmt)
    if fmt is ExportFormat.DSJSON:
        raise ValueError("outcomes are written as parquet or csv")
    conn = _connect_readonly(_log_path(log))
    out = Path(out)
    names = _OUTCOME_SCHEMA.names
    sql = (
        "SELECT rowid, " + ", ".join(names) + " FROM outcomes WHERE rowid > ?"
        + ("" if since is None else " AND occurred_at >= ?")
        + " ORDER BY rowid LIMIT ?"
    )  # fmt: skip
    written = 0
    try:
        writer = pq.ParquetWriter(out, _OUTCOME_SCHEMA) if fmt is ExportFormat.PARQUET else None
        f = out.open("w", encoding="utf-8", newline="") if writer is None else None
        try:
            if f is not None:
                pd.DataFrame(columns=names).to_csv(f, index=False)
            last = 0
            while True:
                params = (last,) + (() if since is None else (since,)) + (chunk_size,)
                rows = conn.execute(sql, params).fetchall()
                if not rows:
                    break
                last = rows[-1][0]
                cols = {n: [r[i + 1] for r in rows] for i, n in enumerate(names)}
                if writer is not None:
                    writer.write_table(pa.Table.from_pydict(cols, schema=_OUTCOME_SCHEMA))
                elif f is not None:
                    pd.DataFrame(cols, columns=names).to_csv(f, index=False, header=False)
                written += len(rows)
        finally:
            if writer is not None:
                writer.close()
            if f is not None:
                f.close()
    finally:
        conn.close()
    return written


def export_log(
    log: str | Path,
    out: str | Path,
    *,
    fmt: ExportFormat | str,
    outcomes_out: str | Path | None = None,
    closed_only: bool = True,
    since: float | None = None,
    until: float | None = None,
    reward_scale: float = DEFAULT_REWARD_SCALE,
    chunk_size: int = 10_000,
    progress: bool = True,
) -> ExportResult:
    """Export the decision log at ``log`` (a data folder or ``decisions.sqlite``) to ``out``.

    Args:
        fmt: ``parquet``, ``dsjson`` or ``csv``.
        outcomes_out: where to write the raw outcomes (Parquet unless it ends in ``.csv``);
            ``None`` writes none.
        closed_only: only decisions whose reward is final; with ``False`` open decisions
            are included (no reward; in DSJson no label and ``_skipLearn``).
        since, until: bound the decision time, ``since <= decided_at < until`` (seconds
            since the epoch).
        reward_scale: DSJson only: ``_label_cost = −reward × reward_scale``.
        chunk_size: decisions per read (and per Parquet row group).
    """
    fmt = ExportFormat(fmt)
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    if not math.isfinite(reward_scale) or reward_scale <= 0:
        raise ValueError("reward_scale must be a positive number")
    out = Path(out)
    t0 = time.perf_counter()
    reader = _LogReader(log, closed_only=closed_only, since=since, until=until)
    try:
        if fmt is ExportFormat.PARQUET:
            rows = _write_parquet(reader, out, chunk_size, progress)
        elif fmt is ExportFormat.CSV:
            rows = _write_csv(reader, out, chunk_size, progress)
        else:
            rows = _write_dsjson(reader, out, chunk_size, progress, reward_scale)
    finally:
        reader.close()
    n_outcomes = 0
    outcomes_path = None if outcomes_out is None else Path(outcomes_out)
    if outcomes_path is not None:
        ofmt = ExportFormat.CSV if outcomes_path.suffix.lower() == ".csv" else ExportFormat.PARQUET
        n_outcomes = export_outcomes(log, outcomes_path, fmt=ofmt, since=since)
    return ExportResult(out, rows, time.perf_counter() - t0, outcomes_path, n_outcomes)


# ---------------------------------------------------------------------------------- import


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    return value


def read_parquet(path: str | Path) -> LoggedBandit:
    """Read a Parquet file written by :func:`export_log` back into a :class:`LoggedBandit`.

    Raises ``ValueError`` for a Parquet file offerbandit did not write (read it with
    :func:`read_table`)."""
    p = Path(path)
    table = pq.read_table(p)
    raw = (table.schema.metadata or {}).get(PARQUET_META_KEY)
    if raw is None:
        raise ValueError(f"{p} is not an offerbandit export; read other tables with read_table")
    meta = json.loads(raw)
    if meta.get("format") != _FORMAT_VERSION:
        raise ValueError(f"{p} has export format {meta.get('format')!r}, not {_FORMAT_VERSION}")
    catalogues = {int(cid): decode_catalogue(body) for cid, body in meta["catalogues"].items()}
    k = max((len(c) for c in catalogues.values()), default=1)
    pmf_col = table.column("pmf").combine_chunks()
    pmf = np.zeros((table.num_rows, k), dtype=np.float64)
    offsets = pmf_col.offsets.to_numpy()
    values = pmf_col.values.to_numpy(zero_copy_only=False)
    sizes = np.diff(offsets)
    rows = np.repeat(np.arange(table.num_rows), sizes)
    cols = np.arange(len(values)) - np.repeat(offsets[:-1], sizes)
    pmf[rows, cols] = values
    frame = table.drop_columns(["pmf"]).to_pandas()
    for name in frame.columns:
        if name in meta["json_columns"]:
            frame[name] = [None if v is None else _tupled(json.loads(v)) for v in frame[name]]
        elif pa.types.is_list(table.schema.field(name).type):
            frame[name] = [None if v is None else _tupled(v) for v in frame[name]]
    return LoggedBandit(frame, pmf, catalogues, source=str(p))


def read_dsjson(
    path: str | Path, *, reward_scale: float = 1.0, progress: bool = True
) -> LoggedBandit:
    """Read a DSJson file (offerbandit's export, or another system's VW DSJson log).

    Offerbandit's lines carry the money reward; another system's reward is
    ``−_label_cost / reward_scale``, and its lines without a label are not ``closed``.
    When a line has no complete ``a``/``p``, only the chosen action's probability is known:
    its ``pmf`` row holds just that entry, the result has ``pmf_complete=False``, and
    :meth:`LoggedBandit.bandit_data` passes no logging pmf, so estimators use the
    propensities alone (IPS, SNIPS, DM, DR … all work; a target's full pmf is still needed).
    """
    p = Path(path)
    total = 0
    with p.open("rb") as f:
        for _ in f:
            total += 1
    catalogue_ids: dict[str, int] = {}
    catalogues: dict[int, tuple[Treatment, ...]] = {}
    records: list[dict[str, Any]] = []
    pmfs: list[tuple[float, ...]] = []
    complete = True
    decoded: dict[str, tuple[Treatment, ...]] = {}
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(tqdm(f, total=total, desc="reading", disable=not progress)):
            if not line.strip():
                continue
            try:
                r = parse_dsjson_line(line, decoded)
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{p}:{lineno + 1}: {e}") from e
            meta = r.meta or {}
            cid = catalogue_ids.get(r.multi_key)
            if cid is None:
                wanted = meta.get("catalogue_id")
                cid = int(wanted) if wanted is not None and wanted not in catalogues else None
                if cid is None:
                    cid = max(catalogues, default=-1) + 1
                catalogue_ids[r.multi_key] = cid
                catalogues[cid] = r.treatments
            if r.pmf is None:
                complete = False
                row_pmf = tuple(
                    r.propensity if i == r.chosen else 0.0 for i in range(len(r.treatments))
                )
            else:
                row_pmf = r.pmf
            pmfs.append(row_pmf)
            records.append(_dsjson_record(r, meta, cid, reward_scale, len(records)))
    k = max((len(c) for c in catalogues.values()), default=1)
    pmf = np.zeros((len(pmfs), k), dtype=np.float64)
    for i, row_pmf in enumerate(pmfs):
        pmf[i, : len(row_pmf)] = row_pmf
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=BASE_COLUMNS)
    return LoggedBandit(frame, pmf, catalogues, source=str(p), pmf_complete=complete)


def _dsjson_record(
    r: DSJsonRow, meta: Mapping[str, Any], cid: int, reward_scale: float, i: int
) -> dict[str, Any]:
    chosen_t = r.treatments[r.chosen]
    ref = chosen_t.ref
    if r.meta is not None:
        closed = bool(meta.get("closed", r.cost is not None))
        reward = meta.get("reward")
        decided_at = meta.get("decided_at", r.timestamp)
    else:
        closed = r.cost is not None
        reward = None if r.cost is None else -r.cost / reward_scale
        decided_at = r.timestamp
    out: dict[str, Any] = {
        "seq": meta.get("seq", i + 1),
        "event_id": r.event_id,
        "decided_at": decided_at,
        "customer_id": meta.get("customer_id", ""),
        "trigger_type": r.trigger_type,
        "catalogue_id": cid,
        "n_treatments": len(r.treatments),
        "chosen": r.chosen,
        "chosen_offer": ref.offer_id,
        "chosen_channel": ref.channel_id,
        "is_control": chosen_t.is_control,
        "holdout": bool(meta.get("holdout", False)),
        "propensity": r.propensity,
        "model_version": r.model_version,
        "policy": meta.get("policy", ""),
        "deferred": bool(meta.get("deferred", False)),
        "activated_at": meta.get("activated_at"),
        "closed": closed,
        "reward": reward,
        "revenue": meta.get("revenue"),
        "n_outcomes": meta.get("n_outcomes"),
        "fixed_cost": chosen_t.offer.fixed_cost if chosen_t.offer else 0.0,
        "discount_rate": chosen_t.offer.discount_rate if chosen_t.offer else 0.0,
        "contact_cost": chosen_t.channel.contact_cost if chosen_t.channel else 0.0,
        "contact_policy": str(meta.get("contact_policy", "")),
        "removed": removed_text(meta.get("removed", ())),
    }
    for name, value in r.customer_features.items():
        out[CUSTOMER_PREFIX + name] = value
    for name, value in r.trigger_features.items():
        out[TRIGGER_PREFIX + name] = value
    return out


def _action_treatment(name: str, control_action: str | None) -> Treatment:
    if control_action is not None and name == control_action:
        return CONTROL_TREATMENT
    offer, sep, channel = name.rpartition("@")
    if not sep or not offer:
        return Treatment(Offer(name), Channel(""))
    return Treatment(Offer(offer), Channel(channel))


def _feature_value(value: Any) -> FeatureValue | None:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return None if math.isnan(value) else float(value)
    return str(value)


def read_table(
    source: str | Path | pd.DataFrame,
    *,
    context_columns: Sequence[str],
    action_column: str,
    propensity_column: str,
    reward_column: str,
    actions: Sequence[str] | None = None,
    pmf_column: str | None = None,
    event_id_column: str | None = None,
    customer_id_column: str | None = None,
    timestamp_column: str | None = None,
    control_action: str | None = "control",
) -> LoggedBandit:
    """A logged bandit from another system's table (a DataFrame, ``.csv`` or ``.parquet``).

    Each row is one closed decision: its context (``context_columns`` become customer
    features ``c.<column>``: numbers, flags or texts), the action taken (a name), the
    probability it was taken with and the reward observed.

    ``actions`` is the action set, in the order ``pmf_column`` lists probabilities (default:
    ``control_action`` first when logged, then the other logged names sorted). An action
    named ``offer@channel`` becomes that offer through that channel, ``control_action``
    becomes control, any other name an offer through the channel ``""``.

    ``pmf_column`` holds each row's full logging pmf (a list, or JSON text in a CSV). Without
    it only the chosen action's probability is known: the result has ``pmf_complete=False``,
    its ``pmf`` rows hold just that entry, and :meth:`LoggedBandit.bandit_data` passes no
    logging pmf to the estimators (which then use the propensities alone).
    """
    if isinstance(source, pd.DataFrame):
        df, where = source, "DataFrame"
    else:
        p = Path(source)
        where = str(p)
        if p.suffix.lower() == ".csv":
            df = pd.read_csv(p)
        elif p.suffix.lower() in {".parquet", ".pq"}:
            df = pd.read_parquet(p)
        else:
            raise ValueError(f"{p}: read_table reads .csv and .parquet files")
    needed = [*context_columns, action_column, propensity_column, reward_column]
    needed += [c for c in (pmf_column, event_id_column, customer_id_column, timestamp_column) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{where} has no column(s) {missing}")
    n = len(df)
    names = [str(v) for v in df[action_column].tolist()]
    if actions is None:
        logged = sorted(set(names) - {control_action} if control_action else set(names))
        action_list = ([control_action] if control_action in names else []) + logged
    else:
        action_list = [str(a) for a in actions]
        unknown = sorted(set(names) - set(action_list))
        if unknown:
            raise ValueError(f"logged actions {unknown[:5]} are not in actions")
    index = {a: j for j, a in enumerate(action_list)}
    chosen = np.array([index[a] for a in names], dtype=np.int64)
    propensity = df[propensity_column].to_numpy(dtype=np.float64)
    k = len(action_list)
    pmf = np.zeros((n, k), dtype=np.float64)
    if pmf_column is not None:
        for i, v in enumerate(df[pmf_column].tolist()):
            row = json.loads(v) if isinstance(v, str) else list(v)
            if len(row) != k:
                raise ValueError(f"row {i}: {pmf_column} has {len(row)} entries, not {k}")
            pmf[i] = row
    else:
        pmf[np.arange(n), chosen] = propensity
    catalogue = tuple(_action_treatment(a, control_action) for a in action_list)
    refs = [t.ref for t in catalogue]

    def column(name: str | None, default: Any) -> list[Any]:
        return df[name].tolist() if name else [default] * n

    frame = pd.DataFrame(
        {
            "seq": np.arange(1, n + 1, dtype=np.int64),
            "event_id": [str(v) for v in column(event_id_column, None)]
            if event_id_column
            else [str(i) for i in range(n)],
            "decided_at": _timestamps(df[timestamp_column]) if timestamp_column else np.nan,
            "customer_id": [str(v) for v in column(customer_id_column, "")],
            "trigger_type": "",
            "catalogue_id": 0,
            "n_treatments": k,
            "chosen": chosen,
            "chosen_offer": [refs[j].offer_id for j in chosen],
            "chosen_channel": [refs[j].channel_id for j in chosen],
            "is_control": [catalogue[j].is_control for j in chosen],
            "holdout": False,
            "propensity": propensity,
            "model_version": "",
            "policy": "",
            "deferred": False,
            "activated_at": np.nan,
            "closed": True,
            "reward": df[reward_column].to_numpy(dtype=np.float64),
            "revenue": np.nan,
            "n_outcomes": 0,
            "fixed_cost": 0.0,
            "discount_rate": 0.0,
            "contact_cost": 0.0,
        }
    )
    features = {
        CUSTOMER_PREFIX + str(c): [_feature_value(v) for v in df[c].tolist()]
        for c in context_columns
    }
    if features:
        frame = pd.concat([frame, pd.DataFrame(features)], axis=1)
    return LoggedBandit(
        frame, pmf, {0: catalogue}, source=where, pmf_complete=pmf_column is not None
    )


def _timestamps(col: pd.Series) -> NDArray[np.float64]:
    """Seconds since the epoch from numbers or date-times (naive ones are UTC)."""
    if pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(dtype=np.float64)
    ts = pd.to_datetime(col, utc=True)
    seconds = (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return np.asarray(seconds, dtype=np.float64)

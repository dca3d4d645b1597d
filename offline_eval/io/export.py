"""Exporting the joined decision log, and importing logs back into a :class:`LoggedBandit`.

Export streams the log through its reader (:class:`bandit.log.reader.LogReader`; the SQLite
log's is read-only, while the service keeps writing) in chunks (``chunk_size`` decisions at a
time), so a log larger than memory is written with constant memory. Voided decisions and
outcomes (``offerbandit void``) are left out unless ``include_voided``:

* **Parquet**: one row per decision with the columns of :class:`LoggedBandit`'s frame
  (:data:`~offline_eval.io.logs.BASE_COLUMNS`, one ``c.<name>``/``t.<name>`` column per
  customer/trigger feature) and ``pmf`` (a list), one row group per chunk. The candidate
  catalogues ride in the file's key-value metadata (``offerbandit``).
* **CSV**: the same columns; tag lists and ``pmf`` are JSON text.
* **DSJson**: Vowpal Wabbit's Decision Service format, one line per decision
  (:mod:`offline_eval.io.dsjson`), ready for ``vw --cb_explore_adf --dsjson``.

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

from bandit.log.reader import FeatureKind, LoggedDecision, LogReader, Selection
from bandit.logcodec import decode_catalogue
from bandit.rewards import RewardRule
from bandit.types import CONTROL_TREATMENT, Channel, FeatureValue, Offer, Treatment
from bandit.vwformat import reward_to_cost
from offline_eval.io.dsjson import DSJsonRow, catalogue_multi, dsjson_line, parse_dsjson_line
from offline_eval.io.logs import (
    BASE_COLUMNS,
    CUSTOMER_PREFIX,
    TRIGGER_PREFIX,
    LoggedBandit,
    open_log,
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
}
assert list(_BASE_TYPES) == BASE_COLUMNS
_DECISION_FIELDS: Final = [c for c in BASE_COLUMNS if c != "n_treatments"]
"""The frame's columns that are fields of :class:`~bandit.log.reader.LoggedDecision`."""

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

_ARROW_OF_KIND: Final[dict[FeatureKind, pa.DataType]] = {
    FeatureKind.NUMBER: pa.float64(),
    FeatureKind.TEXT: pa.string(),
    FeatureKind.FLAG: pa.bool_(),
    FeatureKind.TAGS: pa.list_(pa.string()),
    FeatureKind.MIXED: pa.string(),
}

VOIDED_COLUMN: Final = "voided_at"
"""Written after the pmf when voided rows are exported (``include_voided``)."""


@dataclass
class _Slice:
    """What one export reads: a reader, the selection, and the column kinds."""

    reader: LogReader
    selection: Selection
    total: int

    def kinds(self) -> dict[str, FeatureKind]:
        customer, trigger = self.reader.feature_kinds(self.selection)
        kinds = {CUSTOMER_PREFIX + n: k for n, k in customer.items()}
        kinds.update((TRIGGER_PREFIX + n, k) for n, k in trigger.items())
        return kinds

    def chunks(self, chunk_size: int) -> Iterator[list[LoggedDecision]]:
        return self.reader.decisions(self.selection, chunk_size)


def _bar(total: int, desc: str, progress: bool) -> tqdm[Any]:
    return tqdm(total=total, desc=desc, unit="dec", disable=not progress)


def _columns(
    chunk: list[LoggedDecision],
    kinds: Mapping[str, FeatureKind],
    *,
    text_lists: bool,
    voided: bool,
) -> dict[str, list[Any]]:
    """A chunk of decisions as columns (``text_lists``: tags and pmf as JSON text, for CSV;
    ``voided``: a last ``voided_at`` column)."""
    cols: dict[str, list[Any]] = {c: [getattr(d, c) for d in chunk] for c in _DECISION_FIELDS}
    cols["n_treatments"] = [len(d.pmf) for d in chunk]
    cols = {c: cols[c] for c in BASE_COLUMNS}
    for name, kind in kinds.items():
        prefix, feature = name[: len(CUSTOMER_PREFIX)], name[len(CUSTOMER_PREFIX) :]
        if prefix == CUSTOMER_PREFIX:
            values = [d.customer_features.get(feature) for d in chunk]
        else:
            values = [d.trigger_features.get(feature) for d in chunk]
        if kind is FeatureKind.MIXED or (kind is FeatureKind.TAGS and text_lists):
            values = [None if v is None else _dumps(v) for v in values]
        cols[name] = values
    if text_lists:
        cols["pmf"] = [_dumps(d.pmf.tolist()) for d in chunk]
    else:
        cols["pmf"] = [d.pmf.tolist() for d in chunk]
    if voided:
        cols[VOIDED_COLUMN] = [d.voided_at for d in chunk]
    return cols


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _parquet_schema(kinds: Mapping[str, FeatureKind], part: _Slice) -> pa.Schema:
    fields = [pa.field(c, t) for c, t in _BASE_TYPES.items()]
    fields += [pa.field(name, _ARROW_OF_KIND[kind]) for name, kind in kinds.items()]
    fields.append(pa.field("pmf", pa.list_(pa.float64())))
    if part.selection.include_voided:
        fields.append(pa.field(VOIDED_COLUMN, pa.float64()))
    meta = {
        "format": _FORMAT_VERSION,
        "log_schema": part.reader.schema_version,
        "source": part.reader.source,
        "catalogues": {str(cid): body for cid, body in part.reader.catalogue_texts().items()},
        "json_columns": [n for n, kind in kinds.items() if kind is FeatureKind.MIXED],
    }
    return pa.schema(fields, metadata={PARQUET_META_KEY: _dumps(meta).encode()})


def _write_parquet(part: _Slice, out: Path, chunk_size: int, progress: bool) -> int:
    kinds = part.kinds()
    schema = _parquet_schema(kinds, part)
    voided = part.selection.include_voided
    written = 0
    bar = _bar(part.total, f"writing {out.name}", progress)
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for chunk in part.chunks(chunk_size):
            cols = _columns(chunk, kinds, text_lists=False, voided=voided)
            writer.write_table(pa.Table.from_pydict(cols, schema=schema))
            written += len(chunk)
            bar.update(len(chunk))
    bar.close()
    return written


def _write_csv(part: _Slice, out: Path, chunk_size: int, progress: bool) -> int:
    kinds = part.kinds()
    voided = part.selection.include_voided
    names = [*BASE_COLUMNS, *kinds, "pmf", *([VOIDED_COLUMN] if voided else [])]
    written = 0
    bar = _bar(part.total, f"writing {out.name}", progress)
    with out.open("w", encoding="utf-8", newline="") as f:
        pd.DataFrame(columns=names).to_csv(f, index=False)
        for chunk in part.chunks(chunk_size):
            cols = _columns(chunk, kinds, text_lists=True, voided=voided)
            pd.DataFrame(cols, columns=names).to_csv(f, index=False, header=False)
            written += len(chunk)
            bar.update(len(chunk))
    bar.close()
    return written


def _write_dsjson(
    part: _Slice, out: Path, chunk_size: int, progress: bool, reward_scale: float
) -> int:
    multi = {cid: catalogue_multi(cat) for cid, cat in part.reader.catalogues().items()}
    voided = part.selection.include_voided
    written = 0
    bar = _bar(part.total, f"writing {out.name}", progress)
    with out.open("w", encoding="utf-8") as f:
        for chunk in part.chunks(chunk_size):
            f.writelines(_dsjson_row(d, multi, reward_scale, voided) + "\n" for d in chunk)
            written += len(chunk)
            bar.update(len(chunk))
    bar.close()
    return written


def _dsjson_row(
    d: LoggedDecision, multi: Mapping[int, str], reward_scale: float, voided: bool
) -> str:
    meta: dict[str, Any] = {
        "seq": d.seq,
        "customer_id": d.customer_id,
        "decided_at": d.decided_at,
        "activated_at": d.activated_at,
        "deferred": d.deferred,
        "holdout": d.holdout,
        "policy": d.policy,
        "catalogue_id": d.catalogue_id,
        "closed": d.closed,
        "reward": d.reward,
        "revenue": d.revenue,
        "n_outcomes": d.n_outcomes,
    }
    if voided:
        meta[VOIDED_COLUMN] = d.voided_at
    return dsjson_line(
        event_id=d.event_id,
        decided_at=d.decided_at,
        customer_features=d.customer_features,
        trigger_type=d.trigger_type,
        trigger_features=d.trigger_features,
        multi=multi[d.catalogue_id],
        pmf=d.pmf.tolist(),
        chosen=d.chosen,
        cost=reward_to_cost(d.reward, reward_scale) if d.closed and d.reward is not None else None,
        model_version=d.model_version,
        meta=meta,
    )


def export_outcomes(
    log: str | Path | LogReader,
    out: str | Path,
    *,
    fmt: ExportFormat | str = ExportFormat.PARQUET,
    since: float | None = None,
    include_voided: bool = False,
    chunk_size: int = 50_000,
) -> int:
    """Write every stored outcome (attributed, unattributed, late) in arrival order, as
    Parquet or CSV; ``since`` keeps outcomes that occurred at or after it. Voided outcomes
    are left out unless ``include_voided`` (then a last ``voided_at`` column flags them).
    Returns the count.
    """
    fmt = ExportFormat(fmt)
    if fmt is ExportFormat.DSJSON:
        raise ValueError("outcomes are written as parquet or csv")
    schema = _OUTCOME_SCHEMA
    if include_voided:
        schema = schema.append(pa.field(VOIDED_COLUMN, pa.float64()))
    names = schema.names
    reader = open_log(log)
    out = Path(out)
    written = 0
    try:
        writer = pq.ParquetWriter(out, schema) if fmt is ExportFormat.PARQUET else None
        f = out.open("w", encoding="utf-8", newline="") if writer is None else None
        try:
            if f is not None:
                pd.DataFrame(columns=names).to_csv(f, index=False)
            chunks = reader.outcomes(
                since=since, include_voided=include_voided, chunk_size=chunk_size
            )
            for chunk in chunks:
                cols = {n: [getattr(o, n) for o in chunk] for n in names}
                if writer is not None:
                    writer.write_table(pa.Table.from_pydict(cols, schema=schema))
                elif f is not None:
                    pd.DataFrame(cols, columns=names).to_csv(f, index=False, header=False)
                written += len(chunk)
        finally:
            if writer is not None:
                writer.close()
            if f is not None:
                f.close()
    finally:
        if reader is not log:
            reader.close()
    return written


def export_log(
    log: str | Path | LogReader,
    out: str | Path,
    *,
    fmt: ExportFormat | str,
    outcomes_out: str | Path | None = None,
    closed_only: bool = True,
    since: float | None = None,
    until: float | None = None,
    include_voided: bool = False,
    reward_scale: float = DEFAULT_REWARD_SCALE,
    chunk_size: int = 10_000,
    progress: bool = True,
) -> ExportResult:
    """Export the decision log at ``log`` (a data folder, ``decisions.sqlite``, or an open
    :class:`~bandit.log.reader.LogReader`, left open) to ``out``.

    Args:
        fmt: ``parquet``, ``dsjson`` or ``csv``.
        outcomes_out: where to write the raw outcomes (Parquet unless it ends in ``.csv``);
            ``None`` writes none.
        closed_only: only decisions whose reward is final; with ``False`` open decisions
            are included (no reward; in DSJson no label and ``_skipLearn``).
        since, until: bound the decision time, ``since <= decided_at < until`` (seconds
            since the epoch).
        include_voided: also voided decisions and outcomes (``offerbandit void``), flagged
            by a last ``voided_at`` column (in DSJson, in ``_meta``); left out by default.
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
    reader = open_log(log)
    try:
        selection = Selection(closed_only, since, until, include_voided)
        part = _Slice(reader, selection, reader.count(selection))
        if fmt is ExportFormat.PARQUET:
            rows = _write_parquet(part, out, chunk_size, progress)
        elif fmt is ExportFormat.CSV:
            rows = _write_csv(part, out, chunk_size, progress)
        else:
            rows = _write_dsjson(part, out, chunk_size, progress, reward_scale)
        n_outcomes = 0
        outcomes_path = None if outcomes_out is None else Path(outcomes_out)
        if outcomes_path is not None:
            ofmt = (
                ExportFormat.CSV if outcomes_path.suffix.lower() == ".csv" else ExportFormat.PARQUET
            )
            n_outcomes = export_outcomes(
                reader, outcomes_path, fmt=ofmt, since=since, include_voided=include_voided
            )
    finally:
        if reader is not log:
            reader.close()
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
    }
    for name, value in r.customer_features.items():
        out[CUSTOMER_PREFIX + name] = value
    for name, value in r.trigger_features.items():
        out[TRIGGER_PREFIX + name] = value
    if VOIDED_COLUMN in meta:
        out[VOIDED_COLUMN] = meta[VOIDED_COLUMN]
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

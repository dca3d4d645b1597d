"""Exporting the joined decision log as Parquet, CSV or VW DSJson.

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

:mod:`offline_eval.io.read` reads the exports back (and other systems' logs).

Example (shell: ``offerbandit export --log data --format parquet --out log.parquet``)::

    export_log("data", "log.parquet", fmt="parquet", outcomes_out="outcomes.parquet")
    lb = read_parquet("log.parquet")  # offline_eval.io.read
    SNIPS().estimate(lb.bandit_data(), target_pmf)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from bandit.log.reader import FeatureKind, LoggedDecision, LogReader, Selection
from bandit.rewards import RewardRule
from bandit.vwformat import reward_to_cost
from offline_eval.io.dsjson import catalogue_multi, dsjson_line
from offline_eval.io.logs import (
    BASE_COLUMNS,
    CONTACT_COLUMNS,
    CUSTOMER_PREFIX,
    TRIGGER_PREFIX,
    open_log,
    removed_text,
)

__all__ = [
    "DEFAULT_REWARD_SCALE",
    "FORMAT_VERSION",
    "PARQUET_META_KEY",
    "VOIDED_COLUMN",
    "ExportFormat",
    "ExportResult",
    "export_log",
    "export_outcomes",
]

DEFAULT_REWARD_SCALE: Final = RewardRule().scale
"""The service's default money → VW cost scale (``cost = −reward × scale``)."""

PARQUET_META_KEY: Final = b"offerbandit"
"""The Parquet metadata key of the export's own metadata (catalogues, log schema …)."""
FORMAT_VERSION: Final = 1


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
    cols["contact_policy"] = [d.contact_policy for d in chunk]
    cols["removed"] = [removed_text(d.removed) for d in chunk]
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
        "format": FORMAT_VERSION,
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
    names = [*BASE_COLUMNS, *CONTACT_COLUMNS, *kinds, "pmf", *([VOIDED_COLUMN] if voided else [])]
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
        "contact_policy": d.contact_policy,
        "removed": [list(x) for x in d.removed],
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

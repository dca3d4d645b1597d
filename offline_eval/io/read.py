"""Reading logs back into a :class:`~offline_eval.io.logs.LoggedBandit`: offerbandit's own
exports (:func:`read_parquet`, :func:`read_dsjson`; lossless within float precision) and other
systems' logs (:func:`read_dsjson` for any VW DSJson, :func:`read_table` for any table with
context columns, an action, a propensity and a reward).

    lb = read_parquet("log.parquet")
    SNIPS().estimate(lb.bandit_data(), target_pmf)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.logcodec import decode_catalogue
from bandit.types import CONTROL_TREATMENT, Channel, FeatureValue, Offer, Treatment
from offline_eval.io.dsjson import DSJsonRow, parse_dsjson_line
from offline_eval.io.export import FORMAT_VERSION, PARQUET_META_KEY, VOIDED_COLUMN
from offline_eval.io.logs import (
    BASE_COLUMNS,
    CONTACT_COLUMNS,
    CUSTOMER_PREFIX,
    TRIGGER_PREFIX,
    LoggedBandit,
    removed_text,
)

__all__ = ["read_dsjson", "read_parquet", "read_table"]


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
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{p} has export format {meta.get('format')!r}, not {FORMAT_VERSION}")
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
    frame = (
        pd.DataFrame.from_records(records)
        if records
        else pd.DataFrame(columns=[*BASE_COLUMNS, *CONTACT_COLUMNS])
    )
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

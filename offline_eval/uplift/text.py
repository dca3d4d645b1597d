"""The uplift report as text and JSON: the fixed-width table, money, JSON-safe copies."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from offline_eval.uplift.report import OVERALL, Status

__all__ = ["finite", "format_table", "money"]


def money(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:,.2f}"


def format_table(table: pd.DataFrame) -> str:
    """Fixed-width text of the effect table, statuses instead of numbers where not ok: the
    shrunk estimate and interval, the raw estimate, the total over the treated decisions."""
    header = (
        f"{'slice':<38} {'treatment':<26} {'incr/decision':>13} {'CI (shrunk)':>21} "
        f"{'raw':>9} {'total':>12} {'treated':>8} {'control':>8}  status"
    )
    lines = [header, "-" * len(header)]
    for r in table.itertuples(index=False):
        slice_ = str(r.slice) if r.dimension != OVERALL else "all"
        if r.status == Status.OK.value:
            nums = (
                f"{r.shrunk:>13,.3f} {f'[{r.shrunk_low:,.3f}, {r.shrunk_high:,.3f}]':>21} "
                f"{r.value:>9,.2f} {r.total:>12,.0f}"
            )
        else:
            nums = f"{r.status!s:>13} {'':>21} {'':>9} {'':>12}"
        lines.append(
            f"{slice_[:38]:<38} {str(r.treatment)[:26]:<26} {nums} {r.n_treated:>8} "
            f"{r.n_control:>8}  {r.status if r.status == Status.OK.value else r.note!s}"
        )
    return "\n".join(lines)


def finite(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, enums → values, tuples → lists."""
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if isinstance(obj, StrEnum):
        return obj.value
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj

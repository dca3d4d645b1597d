"""What an uplift report holds: slice effects, the live policy's and candidates' incremental
net revenue, the holdout comparison, the cumulative curve and exclusions
(:class:`UpliftReport`: table, summary, JSON/CSV files, plots, MLflow)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from statistics import NormalDist
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_DIMENSIONS",
    "LIVE_POLICY",
    "OVERALL",
    "TREATMENT_LEVELS",
    "CumulativeIncremental",
    "Exclusions",
    "HoldoutComparison",
    "PolicyIncremental",
    "SliceEffect",
    "Status",
    "UpliftReport",
    "UpliftSettings",
]

FloatArray = NDArray[np.float64]

Level = Literal["treatment", "offer", "channel", "policy"]
TREATMENT_LEVELS: Final = ("treatment", "offer", "channel")
"""Dimensions that group treatments rather than decisions."""
DEFAULT_DIMENSIONS: Final = ("stage", "trigger", "offer", "channel")
"""What ``uplift_report`` slices by when ``by`` is not given."""
LIVE_POLICY: Final = "live policy"
OVERALL: Final = "overall"


TABLE_COLUMNS: Final = (
    "dimension",
    "slice",
    "level",
    "treatment",
    "value",
    "ci_low",
    "ci_high",
    "std_error",
    "total",
    "n",
    "n_treated",
    "n_control",
    "n_slice",
    "status",
    "note",
)


class Status(StrEnum):
    """Whether a number may be shown."""

    OK = "ok"
    INSUFFICIENT = "insufficient data"
    NO_SUPPORT = "no support"


@dataclass(frozen=True, slots=True)
class UpliftSettings:
    """How a report was made.

    Attributes:
        by: single dimensions sliced by (``stage``, ``trigger``, ``offer``, ``channel``,
            ``treatment`` or any frame column, with or without its ``c.``/``t.`` prefix).
        pairs: pairs of dimensions crossed.
        segment_column: the customer feature column that ``stage``/``segment`` stands for.
        min_count: fewest logged treated **and** control rows a slice needs to be reported.
        max_ci_width: widest interval (EUR per decision) still reported; ``None``: no limit.
        alpha: miscoverage of the intervals (0.05 gives 95 % intervals).
        folds: cross-fitting folds of the reward model.
        prior_strength: pseudo-rows with which a reward-model cell shrinks to its parent.
        seed: seed of the fold assignment.
    """

    by: tuple[str, ...] = DEFAULT_DIMENSIONS
    pairs: tuple[tuple[str, str], ...] = ()
    segment_column: str = "c.stage"
    min_count: int = 30
    max_ci_width: float | None = None
    alpha: float = 0.05
    folds: int = 5
    prior_strength: float = 20.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count!r}")
        if self.max_ci_width is not None and not self.max_ci_width > 0.0:
            raise ValueError(f"max_ci_width must be > 0, got {self.max_ci_width!r}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds!r}")
        if not self.prior_strength >= 0.0:
            raise ValueError(f"prior_strength must be >= 0, got {self.prior_strength!r}")
        for pair in self.pairs:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"a pair names two different dimensions, got {pair!r}")

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(1.0 - self.alpha / 2.0)


@dataclass(frozen=True, slots=True)
class SliceEffect:
    """Incremental net revenue of one treatment (or group, or the live policy) vs control.

    Attributes:
        dimension: what the slice is cut by: ``"overall"``, ``"stage"``, ``"stage × offer"``.
        slice: the decisions it covers: ``"all"``, ``"stage=at_risk"``,
            ``"stage=at_risk, trigger=cart_abandoned"``.
        level: ``"treatment"`` (one offer@channel), ``"offer"`` (an offer over the channels
            the logging policy used for it), ``"channel"`` or ``"policy"`` (the live policy).
        treatment: ``"discount_10@sms"``, ``"offer discount_10"``, ``"channel sms"``,
            ``"live policy"``.
        value: incremental net revenue per decision (EUR) against control; ``nan`` when no
            supported row exists.
        ci_low: lower end of the ``1 − alpha`` normal interval.
        ci_high: upper end.
        std_error: standard error of ``value``.
        n: supported decisions in the slice (treatment and control both possible).
        n_treated: supported decisions where the treatment (group) was logged; for the live
            policy, where any treatment (not control) was.
        n_control: supported decisions where control was logged.
        n_slice: all decisions of the slice that entered the analysis (holdout excluded).
        status: :class:`Status`; only ``ok`` rows are shown as numbers.
        note: why a row is not ``ok``, and what was excluded.
        alpha: miscoverage of the interval.
    """

    dimension: str
    slice: str
    level: Level
    treatment: str
    value: float
    ci_low: float
    ci_high: float
    std_error: float
    n: int
    n_treated: int
    n_control: int
    n_slice: int
    status: Status
    note: str
    alpha: float

    @property
    def reportable(self) -> bool:
        return self.status is Status.OK

    @property
    def total(self) -> float:
        """``value × n``: for the live policy what it earned over the slice's supported
        decisions; for a treatment what giving it to all of them would have earned."""
        return self.value * self.n


@dataclass(frozen=True, slots=True)
class PolicyIncremental:
    """A policy's incremental net revenue against all-control over the analysed decisions.

    Attributes:
        policy: ``"live policy"`` or the candidate's name.
        per_decision: mean incremental net revenue per decision (EUR).
        ci_low: lower end of the ``1 − alpha`` interval (per decision).
        ci_high: upper end.
        std_error: standard error per decision.
        n: decisions it is averaged over (non-holdout, control possible).
        policy_value: the policy's own net value per decision (realised for the live policy,
            DR-estimated for a candidate).
        control_value: DR estimate of all-control's net value per decision.
        unsupported_mass: mean target mass on treatments the logging policy could not take
            (always 0 for the live policy); above 0, the estimate leans on the reward model.
        period_start: first decision time (seconds since the epoch), ``nan`` if unknown.
        period_end: last decision time.
        alpha: miscoverage of the interval.
        note: what was excluded.
    """

    policy: str
    per_decision: float
    ci_low: float
    ci_high: float
    std_error: float
    n: int
    policy_value: float
    control_value: float
    unsupported_mass: float
    period_start: float
    period_end: float
    alpha: float
    note: str

    @property
    def total(self) -> float:
        """Total incremental net revenue over the period (``per_decision × n``)."""
        return self.per_decision * self.n

    @property
    def total_ci(self) -> tuple[float, float]:
        return self.ci_low * self.n, self.ci_high * self.n


@dataclass(frozen=True, slots=True)
class HoldoutComparison:
    """Mean net revenue per decision of customers outside vs inside the persistent holdout.

    A policy-level incrementality number that needs no model and no propensities: the
    holdout is a random (hashed) set of customers who always get control. Welch interval on
    the difference of means; decisions of one customer are treated as independent, which
    understates the width when customers repeat often.

    Attributes:
        mean_targeted: mean net revenue per decision of non-holdout customers.
        mean_holdout: mean net revenue per decision of holdout customers.
        difference: ``mean_targeted − mean_holdout`` (``nan`` without holdout rows).
        ci_low: lower end of the Welch ``1 − alpha`` interval.
        ci_high: upper end.
        n_targeted: non-holdout decisions.
        n_holdout: holdout decisions.
        status: ``ok``, or ``no support`` when there are no holdout (or no other) rows.
        note: explanation.
        alpha: miscoverage of the interval.
    """

    mean_targeted: float
    mean_holdout: float
    difference: float
    ci_low: float
    ci_high: float
    n_targeted: int
    n_holdout: int
    status: Status
    note: str
    alpha: float


@dataclass(frozen=True, slots=True)
class Exclusions:
    """Decisions left out of the AIPW scores, and why.

    Attributes:
        rows: decisions in the log given.
        open: decisions whose attribution window had not closed (no final reward).
        holdout: decisions of holdout customers (no support for any treatment).
        no_control: decisions where control had logging probability 0 (no paired baseline).
        analysed: decisions that entered the AIPW scores.
    """

    rows: int
    open: int
    holdout: int
    no_control: int
    analysed: int

    def describe(self) -> str:
        parts = [f"{self.analysed:,} of {self.rows:,} decisions analysed"]
        if self.open:
            parts.append(f"{self.open:,} without a final reward (window open) excluded")
        if self.holdout:
            parts.append(
                f"{self.holdout:,} holdout decisions excluded from the AIPW scores (holdout "
                "customers can never be treated: no support); see the holdout comparison"
            )
        if self.no_control:
            parts.append(
                f"{self.no_control:,} decisions where control was not a candidate excluded "
                "(no control to compare with)"
            )
        return "; ".join(parts)


@dataclass(frozen=True, slots=True, eq=False)
class CumulativeIncremental:
    """Cumulative incremental net revenue of the live policy over decisions in time order.

    ``cumulative[t] = Σ_{i ≤ t} (r_i − ψ_i(control))``: realised net value minus the AIPW
    estimate of what all-control would have earned; the band is
    ``± z·sqrt(Σ_{i ≤ t} (d_i − d̄)²)``.
    """

    times: FloatArray
    cumulative: FloatArray
    low: FloatArray
    high: FloatArray


# ---- the scored log -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class UpliftReport:
    """Incremental net revenue by slice, of the live policy, and of the holdout.

    Attributes:
        effects: every slice effect (see :class:`SliceEffect`), in plan order.
        policy_incremental: the live policy against all-control over the analysed decisions.
        holdout: the persistent-holdout comparison.
        cumulative: the live policy's cumulative incremental net revenue over time.
        exclusions: what was left out of the AIPW scores and why.
        settings: how the report was made.
    """

    effects: tuple[SliceEffect, ...]
    policy_incremental: PolicyIncremental
    holdout: HoldoutComparison
    cumulative: CumulativeIncremental
    exclusions: Exclusions
    settings: UpliftSettings
    candidates: tuple[PolicyIncremental, ...] = field(default=())

    @property
    def overall(self) -> tuple[SliceEffect, ...]:
        """Effects over all analysed decisions (per treatment, offer, channel, live policy)."""
        return tuple(e for e in self.effects if e.dimension == OVERALL)

    def find(self, treatment: str, slice: str = "all") -> SliceEffect:
        """The effect of ``treatment`` (a label as in the table) in ``slice``."""
        for e in self.effects:
            if e.treatment == treatment and e.slice == slice:
                return e
        raise KeyError(f"no effect of {treatment!r} in slice {slice!r}")

    @property
    def table(self) -> pd.DataFrame:
        """One row per effect, sorted by incremental net revenue per decision (largest
        first); rows that are not ``ok`` come last with their numbers blanked (``NaN``)."""
        records = []
        for e in self.effects:
            row: dict[str, Any] = {c: getattr(e, c) for c in TABLE_COLUMNS}
            row["status"] = e.status.value
            if not e.reportable:
                for c in ("value", "ci_low", "ci_high", "std_error", "total"):
                    row[c] = math.nan
            records.append(row)
        table = pd.DataFrame.from_records(records, columns=list(TABLE_COLUMNS))
        table["_ok"] = table["status"] == Status.OK.value
        table = table.sort_values(["_ok", "value"], ascending=[False, False], kind="stable")
        return table.drop(columns="_ok").reset_index(drop=True)

    def summary(self, top: int | None = 40) -> str:
        """A plain-text report: exclusions, live policy, holdout, the top of the table."""
        p = self.policy_incremental
        h = self.holdout
        pct = f"{1 - self.settings.alpha:.0%}"
        lines = [
            "Incremental net revenue (EUR, net of offer and contact costs) against control",
            f"  {self.exclusions.describe()}",
            f"  live policy: {_money(p.per_decision)} per decision "
            f"[{pct} CI {_money(p.ci_low)} … {_money(p.ci_high)}], total {_money(p.total)} "
            f"[{_money(p.total_ci[0])} … {_money(p.total_ci[1])}] over {p.n:,} decisions "
            f"(realised {_money(p.policy_value)} vs all-control {_money(p.control_value)})",
        ]
        for c in self.candidates:
            lines.append(
                f"  {c.policy}: {_money(c.per_decision)} per decision "
                f"[{_money(c.ci_low)} … {_money(c.ci_high)}], total {_money(c.total)}"
            )
        if h.status is Status.OK:
            lines.append(
                f"  holdout comparison: targeted {_money(h.mean_targeted)} vs holdout "
                f"{_money(h.mean_holdout)} per decision: {_money(h.difference)} "
                f"[{_money(h.ci_low)} … {_money(h.ci_high)}] "
                f"({h.n_targeted:,} vs {h.n_holdout:,} decisions)"
            )
        else:
            lines.append(f"  holdout comparison: {h.note}")
        table = self.table
        shown = table if top is None else table.head(top)
        lines += ["", _format_table(shown)]
        hidden = len(table) - len(shown)
        not_ok = int((table["status"] != Status.OK.value).sum())
        if hidden > 0:
            lines.append(f"… {hidden} more rows (see the CSV)")
        if not_ok:
            lines.append(
                f"{not_ok} rows are 'insufficient data' or 'no support': shown without numbers "
                f"(need ≥ {self.settings.min_count} treated and control decisions"
                + (
                    f" and an interval ≤ {self.settings.max_ci_width:g} EUR"
                    if self.settings.max_ci_width is not None
                    else ""
                )
                + ")"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Summary numbers (live policy, candidates, holdout, exclusions, settings)."""
        out: dict[str, Any] = _finite(
            {
                "policy_incremental": {**asdict(self.policy_incremental)},
                "candidates": [asdict(c) for c in self.candidates],
                "holdout": {**asdict(self.holdout), "status": self.holdout.status.value},
                "exclusions": asdict(self.exclusions),
                "settings": asdict(self.settings),
            }
        )
        return out

    def write(self, out_dir: str | Path) -> list[Path]:
        """Table (CSV, JSON), summary (JSON, text) and both plots into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        table = self.table
        paths = [out / "uplift_table.csv", out / "uplift_table.json", out / "uplift_summary.json"]
        table.to_csv(paths[0], index=False)
        paths[1].write_text(
            json.dumps(_finite(table.to_dict(orient="records")), indent=1), encoding="utf-8"
        )
        paths[2].write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        text = out / "uplift_report.txt"
        text.write_text(self.summary(top=None) + "\n", encoding="utf-8")
        paths.append(text)
        paths.append(self.plot_slices(out / "uplift_slices.png"))
        paths.append(self.plot_cumulative(out / "uplift_cumulative.png"))
        return paths

    def plot_slices(self, path: str | Path, top: int = 15) -> Path:
        """Incremental net revenue by slice with error bars (PNG); see
        :func:`offline_eval.uplift.plots.plot_slices`."""
        from offline_eval.uplift.plots import plot_slices

        return plot_slices(self, Path(path), top=top)

    def plot_cumulative(self, path: str | Path) -> Path:
        """Cumulative incremental net revenue over time with its band (PNG)."""
        from offline_eval.uplift.plots import plot_cumulative

        return plot_cumulative(self, Path(path))

    def log_to_mlflow(
        self,
        study: str,
        *,
        tracking_uri: str | None = None,
        run_name: str = "uplift",
        out_dir: str | Path | None = None,
        params: dict[str, Any] | None = None,
    ) -> str:
        """Log the report as an MLflow run (parent) with one child run per dimension
        (:func:`offline_eval.tracking.runs.track_uplift_report`); returns the parent run id."""
        from offline_eval.tracking.runs import track_uplift_report

        return track_uplift_report(
            self,
            study,
            tracking_uri=tracking_uri,
            run_name=run_name,
            out_dir=out_dir,
            params=params,
        )


def _money(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:,.2f}"


def _format_table(table: pd.DataFrame) -> str:
    """Fixed-width text of the effect table, statuses instead of numbers where not ok."""
    header = (
        f"{'slice':<38} {'treatment':<26} {'incr/decision':>13} {'CI':>21} "
        f"{'total':>12} {'treated':>8} {'control':>8}  status"
    )
    lines = [header, "-" * len(header)]
    for r in table.itertuples(index=False):
        slice_ = str(r.slice) if r.dimension != OVERALL else "all"
        if r.status == Status.OK.value:
            nums = (
                f"{r.value:>13,.3f} {f'[{r.ci_low:,.3f}, {r.ci_high:,.3f}]':>21} {r.total:>12,.0f}"
            )
        else:
            nums = f"{r.status!s:>13} {'':>21} {'':>12}"
        lines.append(
            f"{slice_[:38]:<38} {str(r.treatment)[:26]:<26} {nums} {r.n_treated:>8} "
            f"{r.n_control:>8}  {r.status if r.status == Status.OK.value else r.note!s}"
        )
    return "\n".join(lines)


def _finite(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, enums → values, tuples → lists."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, StrEnum):
        return obj.value
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj

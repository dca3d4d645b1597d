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
    "DEFAULT_MAX_CI_WIDTH",
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
DEFAULT_MAX_CI_WIDTH: Final = 20.0
"""Widest slice interval (EUR per decision) shown as a number by default: wider says nothing
at the scale of treatment effects (a few EUR per decision)."""
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
    "shrunk",
    "shrunk_low",
    "shrunk_high",
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
        max_ci_width: widest interval (EUR per decision) still reported
            (:data:`DEFAULT_MAX_CI_WIDTH`); ``None``: no limit.
        alpha: miscoverage of the intervals (0.05 gives 95 % intervals).
        folds: cross-fitting folds of the reward model.
        prior_strength: pseudo-rows with which a reward-model cell shrinks to its parent.
        seed: seed of the fold assignment.
    """

    by: tuple[str, ...] = DEFAULT_DIMENSIONS
    pairs: tuple[tuple[str, str], ...] = ()
    segment_column: str = "c.stage"
    min_count: int = 30
    max_ci_width: float | None = DEFAULT_MAX_CI_WIDTH
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
        shrunk: the empirical-Bayes estimate (:mod:`offline_eval.uplift.shrinkage`): small
            slices pulled towards their family's mean; what the table ranks and plots.
        shrunk_low: lower end of its ``1 − alpha`` interval.
        shrunk_high: upper end.
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
    shrunk: float = math.nan
    shrunk_low: float = math.nan
    shrunk_high: float = math.nan

    @property
    def reportable(self) -> bool:
        return self.status is Status.OK

    @property
    def total(self) -> float:
        """What was earned against control on the slice's decisions, from the raw (additive)
        estimate: for the live policy ``value × n`` (its slices add up to the policy's
        total); for a treatment (group) ``value × n_treated``, over the decisions that got
        it — not a hypothetical "everyone gets it", which dwarfed the policy's total."""
        return self.value * (self.n if self.level == "policy" else self.n_treated)


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
        """One row per effect, ranked by the lower end of the shrunk interval (largest first:
        the rows most surely above control on top); rows that are not ``ok`` come last with
        their numbers blanked (``NaN``)."""
        records = []
        for e in self.effects:
            row: dict[str, Any] = {c: getattr(e, c) for c in TABLE_COLUMNS}
            row["status"] = e.status.value
            if not e.reportable:
                for c in ("value", "ci_low", "ci_high", "std_error", "total", "shrunk"):
                    row[c] = math.nan
                row["shrunk_low"] = row["shrunk_high"] = math.nan
            records.append(row)
        table = pd.DataFrame.from_records(records, columns=list(TABLE_COLUMNS))
        table["_ok"] = table["status"] == Status.OK.value
        table["_rank"] = table["shrunk_low"].fillna(table["ci_low"])
        table = table.sort_values(["_ok", "_rank"], ascending=[False, False], kind="stable")
        return table.drop(columns=["_ok", "_rank"]).reset_index(drop=True)

    def summary(self, top: int | None = 40) -> str:
        """A plain-text report: exclusions, live policy, holdout, the top of the table."""
        from offline_eval.uplift.text import format_table, money

        p = self.policy_incremental
        h = self.holdout
        pct = f"{1 - self.settings.alpha:.0%}"
        table = self.table
        hidden_rows = int((table["status"] != Status.OK.value).sum())
        limit = self.settings.max_ci_width
        lines = [
            "Incremental net revenue (EUR, net of offer and contact costs) against control",
            f"  {self.exclusions.describe()}",
            f"  {hidden_rows:,} of {len(table):,} slice rows hidden (fewer than "
            f"{self.settings.min_count} treated or control decisions"
            + (f", or an interval wider than {limit:g} EUR per decision" if limit else "")
            + ", or no support); ranked by the lower end of the shrunk (empirical-Bayes) "
            "interval; totals from the raw estimates, over the decisions that got each "
            "treatment",
            f"  live policy: {money(p.per_decision)} per decision "
            f"[{pct} CI {money(p.ci_low)} … {money(p.ci_high)}], total {money(p.total)} "
            f"[{money(p.total_ci[0])} … {money(p.total_ci[1])}] over {p.n:,} decisions "
            f"(realised {money(p.policy_value)} vs all-control {money(p.control_value)})",
        ]
        for c in self.candidates:
            lines.append(
                f"  {c.policy}: {money(c.per_decision)} per decision "
                f"[{money(c.ci_low)} … {money(c.ci_high)}], total {money(c.total)}"
            )
        if h.status is Status.OK:
            lines.append(
                f"  holdout comparison: targeted {money(h.mean_targeted)} vs holdout "
                f"{money(h.mean_holdout)} per decision: {money(h.difference)} "
                f"[{money(h.ci_low)} … {money(h.ci_high)}] "
                f"({h.n_targeted:,} vs {h.n_holdout:,} decisions)"
            )
        else:
            lines.append(f"  holdout comparison: {h.note}")
        shown = table if top is None else table.head(top)
        lines += ["", format_table(shown)]
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
        from offline_eval.uplift.text import finite

        out: dict[str, Any] = finite(
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
        from offline_eval.uplift.text import finite

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        table = self.table
        paths = [out / "uplift_table.csv", out / "uplift_table.json", out / "uplift_summary.json"]
        table.to_csv(paths[0], index=False)
        paths[1].write_text(
            json.dumps(finite(table.to_dict(orient="records")), indent=1), encoding="utf-8"
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

"""Incremental net revenue: what each customer–trigger–offer–channel combination really earned.

Everything here is in money, **net** of offer and channel costs: the logged ``reward`` of a
treated decision already is ``revenue − offer cost − contact cost`` and control's reward is
its revenue (:class:`bandit.rewards.RewardRule`), so "incremental net revenue of a against
control" is ``E[reward | a] − E[reward | control]`` in EUR per decision.

Estimates are doubly robust (AIPW). For row ``i`` with logged action ``a_i``, logging pmf
``μ(·|x_i)``, reward ``r_i`` and a cross-fitted reward model ``q̂``, the per-row score of a
treatment ``a`` is

    ψ_i(a) = q̂(x_i, a) + 1{a_i = a} / μ(a|x_i) · (r_i − q̂(x_i, a))

and the effect of ``a`` against control in a slice is the mean over the slice of
``ψ_i(a) − ψ_i(control)``, with the normal interval of those paired per-row differences.
Groups of treatments (an offer over its channels, a channel over its offers) are scored as
the stochastic policy "play the group with the logging policy's own mix inside it",
``π_G(a|x) = μ(a|x) / μ(G|x)``:

    ψ_i(G) = Σ_{a∈G} μ(a|x_i)·q̂(x_i, a) / μ(G|x_i) + 1{a_i ∈ G} / μ(G|x_i) · (r_i − q̂(x_i, a_i))

Support: a row counts for the effect of ``a`` (or ``G``) only when both ``a`` and control
had a logging probability > 0 on it; rows of the persistent customer **holdout** have
probability 0 for every treatment and are excluded from all AIPW scores (they get their own
comparison, :class:`HoldoutComparison`). ``q̂`` is a hierarchy of shrunken cell means
(treatment → treatment × segment → treatment × segment × trigger), cross-fitted: the row
being scored never contributed to its own prediction.

>>> from offline_eval.io.logs import load_sqlite
>>> lb = load_sqlite("data/decisions.sqlite")  # doctest: +SKIP
>>> report = uplift_report(lb, by=["stage"], pairs=[("stage", "offer")])  # doctest: +SKIP
>>> report.table.head()  # doctest: +SKIP
>>> report.plot_slices("slices.png"); report.plot_cumulative("cumulative.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from statistics import NormalDist
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.types import TreatmentRef
from offline_eval.io.logs import LoggedBandit

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
    "UpliftAnalysis",
    "UpliftReport",
    "UpliftSettings",
    "holdout_comparison",
    "uplift_report",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

Level = Literal["treatment", "offer", "channel", "policy"]
TREATMENT_LEVELS: Final = ("treatment", "offer", "channel")
"""Dimensions that group treatments rather than decisions."""
DEFAULT_DIMENSIONS: Final = ("stage", "trigger", "offer", "channel")
"""What ``uplift_report`` slices by when ``by`` is not given."""
LIVE_POLICY: Final = "live policy"
OVERALL: Final = "overall"
_MAX_LEVELS: Final = 12  # numeric columns with more distinct values are cut into quintiles


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


def _codes(values: pd.Series) -> tuple[IntArray, list[str]]:
    """Integer codes and their labels; numeric columns with many values cut into quintiles."""
    series = values
    if pd.api.types.is_bool_dtype(series.dtype):
        series = series.astype(str)
    elif pd.api.types.is_numeric_dtype(series.dtype) and series.nunique() > _MAX_LEVELS:
        series = pd.qcut(series, 5, duplicates="drop").astype(str)
    codes, uniques = pd.factorize(series, sort=True, use_na_sentinel=True)
    labels = [str(u) for u in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(labels), codes)
        labels.append("(missing)")
    return codes.astype(np.int64), labels


@dataclass(frozen=True, slots=True)
class _Context:
    """A context slicing: codes per analysed row and the label of each code."""

    dimension: str
    codes: IntArray
    labels: list[str]
    sizes: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def of(cls, dimension: str, codes: IntArray, labels: list[str]) -> _Context:
        return cls(dimension, codes, labels, np.bincount(codes, minlength=len(labels)))


@dataclass(frozen=True, slots=True)
class _Group:
    level: Level
    label: str
    members: tuple[int, ...]  # global treatment indices


class UpliftAnalysis:
    """A log prepared for incremental-revenue questions: supports, folds and ``q̂`` fitted once.

    Build it with :meth:`fit`, then ask :meth:`report` (the slice table) or
    :meth:`policy_incremental` (a candidate policy against all-control) as often as needed.
    """

    def __init__(
        self,
        lb: LoggedBandit,
        settings: UpliftSettings,
        *,
        progress: bool = False,
    ) -> None:
        if not getattr(lb, "pmf_complete", True):
            raise ValueError(
                "incremental revenue needs the full logging pmf of every decision (which "
                "treatments could have been taken, and how likely); this log holds only the "
                "chosen action's propensity"
            )
        self.settings = settings
        self.progress = progress
        frame = lb.frame
        rows = lb.n
        closed = frame["closed"].to_numpy(dtype=bool) if "closed" in frame else np.ones(rows, bool)
        holdout = (
            frame["holdout"].to_numpy(dtype=bool) if "holdout" in frame else np.zeros(rows, bool)
        )
        self.refs: list[TreatmentRef] = lb.treatment_refs()
        index = {ref: k for k, ref in enumerate(self.refs)}
        n_t = len(self.refs)
        width = max(lb.max_treatments, 1)
        small = np.int16 if n_t < np.iinfo(np.int16).max else np.int32
        # Global treatment index of every (catalogue, local action); padding → n_t (a dummy).
        lut = np.full((max(lb.catalogues, default=0) + 1, width), n_t, dtype=small)
        for cid, cat in lb.catalogues.items():
            for j, t in enumerate(cat):
                lut[cid, j] = index[t.ref]
        control_col = np.where((lut == 0).any(axis=1), np.argmax(lut == 0, axis=1), -1)
        cids = frame["catalogue_id"].to_numpy(dtype=np.int64) if rows else np.zeros(0, np.int64)
        ccol = control_col[cids]
        mu_control_all = np.where(
            ccol >= 0, lb.pmf[np.arange(rows), np.maximum(ccol, 0)] if rows else 0.0, 0.0
        )
        keep = closed & ~holdout & (mu_control_all > 0.0)
        self.exclusions = Exclusions(
            rows=rows,
            open=int((~closed).sum()),
            holdout=int((closed & holdout).sum()),
            no_control=int((closed & ~holdout & ~(mu_control_all > 0.0)).sum()),
            analysed=int(keep.sum()),
        )
        self.keep = keep
        self.holdout = holdout_comparison(lb, alpha=settings.alpha)
        self._source = frame
        self._pmf = lb.pmf
        self._rows = np.flatnonzero(keep)
        m = int(self._rows.shape[0])
        self.m = m
        self.gmap = lut[cids[self._rows]]
        chosen_local = self._values("chosen").astype(np.int64)
        self.chosen_local = chosen_local
        ar = np.arange(m)
        self.chosen = self.gmap[ar, chosen_local].astype(np.int64) if m else np.zeros(0, np.int64)
        self.rewards = self._values("reward").astype(np.float64)
        if not np.isfinite(self.rewards).all():
            raise ValueError("closed decisions must have a finite reward")
        self.propensity = self._values("propensity").astype(np.float64)
        # μ(a|x) per global treatment, one contiguous row per treatment: (n_t + 1, m).
        mu = np.zeros((n_t + 1, m))
        for j in range(self.gmap.shape[1]):
            mu[self.gmap[:, j], ar] = self._pmf[self._rows, j]
        mu[n_t] = 0.0
        self.mu = mu
        self.control_logged = self.chosen == 0
        self.times = (
            self._values("decided_at").astype(np.float64)
            if "decided_at" in frame.columns
            else np.arange(m, dtype=np.float64)
        )
        self._contexts: dict[str, _Context] = {}
        self._fit_q_hat()
        self.psi_control = self._psi([0])

    def _values(self, column: str) -> NDArray[Any]:
        """A source column's values on the analysed rows."""
        values: NDArray[Any] = self._source[column].to_numpy()[self._rows]
        return values

    def _series(self, column: str) -> pd.Series:
        return self._source[column].iloc[self._rows].reset_index(drop=True)

    def _has(self, column: str) -> bool:
        return column in self._source.columns

    @classmethod
    def fit(
        cls,
        lb: LoggedBandit,
        settings: UpliftSettings | None = None,
        *,
        progress: bool = False,
    ) -> UpliftAnalysis:
        """Prepare ``lb`` (any decisions; open and holdout ones are set aside, and counted)."""
        return cls(lb, settings or UpliftSettings(), progress=progress)

    # ---- reward model ---------------------------------------------------------------------

    def _fit_q_hat(self) -> None:
        """Cross-fitted shrunken cell means ``q̂[fold, a, cell]`` (cell = segment × trigger).

        Each level shrinks to its parent with ``prior_strength`` pseudo-rows: the treatment's
        mean to the overall mean, treatment × segment to the treatment, treatment × segment ×
        trigger to treatment × segment. The table for fold ``f`` uses only the other folds.
        """
        s = self.settings
        m, n_t = self.m, len(self.refs)
        seg = self._segment_codes()
        trig = (
            _codes(self._series("trigger_type"))[0]
            if self._has("trigger_type") and m
            else np.zeros(m, np.int64)
        )
        n_seg = int(seg.max()) + 1 if m else 1
        n_trig = int(trig.max()) + 1 if m else 1
        self.cell = seg * n_trig + trig
        self.fold = np.random.default_rng(s.seed).permutation(m) % s.folds
        k = s.prior_strength
        shape = (n_t, n_seg, n_trig)
        size = int(np.prod(shape))
        flat = (self.chosen * n_seg + seg) * n_trig + trig
        table = np.zeros((s.folds, n_t + 1, n_seg * n_trig))
        sums_all = np.bincount(flat, self.rewards, size).reshape(shape)
        counts_all = np.bincount(flat, minlength=size).reshape(shape).astype(np.float64)
        for f in range(s.folds):
            own = self.fold == f
            sums = sums_all - np.bincount(flat[own], self.rewards[own], size).reshape(shape)
            counts = counts_all - np.bincount(flat[own], minlength=size).reshape(shape)
            total = counts.sum()
            grand = float(sums.sum() / total) if total > 0 else 0.0
            top = (sums.sum(axis=(1, 2)) + k * grand) / (counts.sum(axis=(1, 2)) + k + 1e-12)
            top = np.where(counts.sum(axis=(1, 2)) > 0, top, grand)
            mid_n = counts.sum(axis=2)
            mid = (sums.sum(axis=2) + k * top[:, None]) / np.maximum(mid_n + k, 1e-12)
            mid = np.where(mid_n > 0, mid, top[:, None])
            cell = (sums + k * mid[:, :, None]) / np.maximum(counts + k, 1e-12)
            cell = np.where(counts > 0, cell, mid[:, :, None])
            table[f, :n_t] = cell.reshape(n_t, -1)
        self.q_table = table
        self.q_logged = self.q_of(self.chosen) if m else np.zeros(0)

    def q_of(self, a: int | IntArray) -> FloatArray:
        """``q̂(x_i, a)`` for every analysed row (``a`` a global index, or one per row)."""
        out: FloatArray = self.q_table[self.fold, a, self.cell]
        return out

    def _segment_codes(self) -> IntArray:
        col = self.settings.segment_column
        if self._has(col) and self.m:
            return _codes(self._series(col))[0]
        return np.zeros(self.m, np.int64)

    # ---- scores ---------------------------------------------------------------------------

    def _psi(self, members: Sequence[int]) -> FloatArray:
        """AIPW score of playing group ``members`` with the logging mix inside it; ``nan``
        where the group had no logging probability."""
        mu_g = np.zeros(self.m)
        num = np.zeros(self.m)
        for a in members:
            mu_a = self.mu[a]
            mu_g += mu_a
            num += mu_a * self.q_of(a)
        in_group = self._logged_in(members)
        with np.errstate(divide="ignore", invalid="ignore"):
            psi = (num + np.where(in_group, self.rewards - self.q_logged, 0.0)) / mu_g
        psi[mu_g <= 0.0] = np.nan
        return psi

    def _logged_in(self, members: Sequence[int]) -> BoolArray:
        """Rows whose logged treatment is one of ``members``."""
        member = np.zeros(len(self.refs) + 1, dtype=bool)
        member[list(members)] = True
        out: BoolArray = member[self.chosen]
        return out

    def groups(self, level: Level) -> list[_Group]:
        """The treatments (or offers, or channels) present in the log, control excluded."""
        if level == "policy":
            return [_Group("policy", LIVE_POLICY, ())]
        out: dict[str, list[int]] = {}
        for k, ref in enumerate(self.refs):
            if ref.is_control:
                continue
            if level == "treatment":
                label = ref.key
            elif level == "offer":
                label = f"offer {ref.offer_id}"
            else:
                label = f"channel {ref.channel_id}"
            out.setdefault(label, []).append(k)
        return [_Group(level, label, tuple(ms)) for label, ms in out.items()]

    def _group_scores(self, group: _Group) -> tuple[FloatArray, BoolArray, BoolArray]:
        """Per-row differences vs control, support, and 'the group was logged'."""
        if group.level == "policy":
            diff = self.rewards - self.psi_control
            return diff, np.ones(self.m, dtype=bool), ~self.control_logged
        psi = self._psi(group.members)
        support = np.isfinite(psi)
        diff = np.where(support, psi - self.psi_control, 0.0)
        treated = self._logged_in(group.members)
        return diff, support, treated

    # ---- contexts -------------------------------------------------------------------------

    def column_for(self, dimension: str) -> str:
        """The frame column a context dimension names."""
        columns = self._source.columns
        if dimension in ("stage", "segment", "lifecycle"):
            return self.settings.segment_column
        if dimension in ("trigger", "trigger_type"):
            return "trigger_type"
        for col in (dimension, f"c.{dimension}", f"t.{dimension}"):
            if col in columns:
                return col
        known = ", ".join(
            ["stage", "trigger", *TREATMENT_LEVELS]
            + [str(c) for c in columns if str(c).startswith(("c.", "t."))]
        )
        raise ValueError(f"unknown dimension {dimension!r}; known: {known}")

    def context(self, dimensions: Sequence[str]) -> _Context:
        """Codes of the (possibly crossed) context dimensions for every analysed row."""
        key = " × ".join(dimensions)
        found = self._contexts.get(key)
        if found is not None:
            return found
        if not dimensions:
            ctx = _Context.of(OVERALL, np.zeros(self.m, np.int64), ["all"])
        else:
            codes = np.zeros(self.m, np.int64)
            labels = [""]
            for dim in dimensions:
                col = self.column_for(dim)
                if not self._has(col):
                    raise ValueError(
                        f"dimension {dim!r} needs column {col!r}, which the log does not have"
                    )
                c, names = _codes(self._series(col)) if self.m else (codes, [])
                codes = codes * max(len(names), 1) + c
                labels = [
                    f"{prev}, {dim}={n}" if prev else f"{dim}={n}" for prev in labels for n in names
                ]
            ctx = _Context.of(key, codes, labels)
        self._contexts[key] = ctx
        return ctx

    # ---- the report -----------------------------------------------------------------------

    def _plan(self) -> list[tuple[tuple[str, ...], Level]]:
        """Which (context dimensions, treatment level) combinations the report holds."""
        s = self.settings
        plan: list[tuple[tuple[str, ...], Level]] = [
            ((), "policy"),
            ((), "treatment"),
            ((), "offer"),
            ((), "channel"),
        ]
        for dim in s.by:
            if dim in TREATMENT_LEVELS:
                continue  # offer / channel / treatment overall are always there
            self.column_for(dim)
            plan += [((dim,), "policy"), ((dim,), "treatment")]
        for a, b in s.pairs:
            levels = [d for d in (a, b) if d in TREATMENT_LEVELS]
            contexts = tuple(d for d in (a, b) if d not in TREATMENT_LEVELS)
            for d in contexts:
                self.column_for(d)
            if len(levels) == 2:
                plan.append(((), "treatment"))  # offer × channel is the treatment
            elif len(levels) == 1:
                plan.append((contexts, _level(levels[0])))
            else:
                plan += [(contexts, "policy"), (contexts, "treatment")]
        return list(dict.fromkeys(plan))

    def effects(self) -> list[SliceEffect]:
        """Every slice effect of the report's plan."""
        plan = self._plan()
        by_level: dict[Level, list[tuple[str, ...]]] = {}
        for dims, level in plan:
            by_level.setdefault(level, []).append(dims)
        work = [(g, by_level[lvl]) for lvl in by_level for g in self.groups(lvl)]
        out: list[SliceEffect] = []
        bar = tqdm(work, desc="uplift: scoring treatments", unit="grp", disable=not self.progress)
        for group, contexts in bar:
            diff, support, treated = self._group_scores(group)
            for dims in contexts:
                out += self._aggregate(group, self.context(dims), diff, support, treated)
        bar.close()
        order = {p: i for i, p in enumerate(plan)}
        out.sort(key=lambda e: order.get((_dims_of(e.dimension), e.level), len(order)))
        return out

    def _aggregate(
        self,
        group: _Group,
        ctx: _Context,
        diff: FloatArray,
        support: BoolArray,
        treated: BoolArray,
    ) -> list[SliceEffect]:
        s = self.settings
        size = len(ctx.labels)
        codes = ctx.codes
        n_slice = ctx.sizes
        # Codes of unsupported rows go to an overflow bin; one bincount gives the counts of
        # (slice, treated, control-logged), two more the sums of d and d² (shifted by the
        # overall mean to keep the one-pass variance accurate).
        kind = treated.astype(np.int64) * 2 + self.control_logged
        where = np.where(support, codes, size)
        counts = np.bincount(where * 4 + kind, minlength=4 * (size + 1))
        counts = counts[: 4 * size].reshape(size, 4)
        n = counts.sum(axis=1)
        nt = counts[:, 2] + counts[:, 3]
        nc = counts[:, 1] + counts[:, 3]
        shift = float(diff[support].mean()) if support.any() else 0.0
        d = np.where(support, diff - shift, 0.0)
        s1 = np.bincount(where, d, minlength=size + 1)[:size]
        s2 = np.bincount(where, d * d, minlength=size + 1)[:size]
        with np.errstate(divide="ignore", invalid="ignore"):
            centred = s1 / n
            mean = centred + shift
            ss = np.maximum(s2 - n * centred * centred, 0.0)
            se = np.sqrt(ss / (n - 1) / n)
        z = s.z
        out = []
        for j in range(size):
            if n_slice[j] == 0:
                continue
            value = float(mean[j]) if n[j] > 0 else math.nan
            err = float(se[j]) if n[j] > 1 else math.nan
            low, high = value - z * err, value + z * err
            status, note = self._status(group, int(n[j]), int(nt[j]), int(nc[j]), high - low)
            if 0 < n[j] < n_slice[j]:
                note = _join(
                    note,
                    f"{int(n_slice[j] - n[j]):,} decisions where {group.label} was not a "
                    "candidate excluded",
                )
            out.append(
                SliceEffect(
                    dimension=ctx.dimension,
                    slice=ctx.labels[j],
                    level=group.level,
                    treatment=group.label,
                    value=value,
                    ci_low=low,
                    ci_high=high,
                    std_error=err,
                    n=int(n[j]),
                    n_treated=int(nt[j]),
                    n_control=int(nc[j]),
                    n_slice=int(n_slice[j]),
                    status=status,
                    note=note,
                    alpha=s.alpha,
                )
            )
        return out

    def _status(
        self, group: _Group, n: int, n_treated: int, n_control: int, width: float
    ) -> tuple[Status, str]:
        s = self.settings
        what = "any treatment" if group.level == "policy" else group.label
        if n == 0:
            return Status.NO_SUPPORT, f"{what} was never a candidate here (logging probability 0)"
        if n_treated == 0:
            return Status.NO_SUPPORT, f"{what} was never tried in this slice"
        if n_control == 0:
            return Status.NO_SUPPORT, "control was never logged in this slice"
        if n_treated < s.min_count or n_control < s.min_count:
            return (
                Status.INSUFFICIENT,
                f"{n_treated} treated / {n_control} control decisions; "
                f"at least {s.min_count} of each needed",
            )
        if not math.isfinite(width) or (s.max_ci_width is not None and width > s.max_ci_width):
            return Status.INSUFFICIENT, f"interval {width:.3g} EUR wide > {s.max_ci_width:g}"
        return Status.OK, ""

    def live_policy(self) -> PolicyIncremental:
        """The logged policy's realised net value minus the AIPW estimate of all-control."""
        diff = self.rewards - self.psi_control
        return self._policy_estimate(
            LIVE_POLICY, diff, float(np.mean(self.rewards)) if self.m else math.nan, 0.0
        )

    def policy_incremental(
        self, target_pmf: FloatArray, name: str = "candidate"
    ) -> PolicyIncremental:
        """DR estimate of a candidate policy's incremental net revenue against all-control.

        ``target_pmf`` is ``(n, K)`` over the rows and local actions of the log given to
        :meth:`fit` (like ``lb.pmf``; 0 on padded actions); rows not analysed (open,
        holdout) are ignored. ``ψ_i(π) = Σ_a π(a|x_i)·q̂(x_i, a) + π(a_i|x_i)/μ(a_i|x_i)·
        (r_i − q̂(x_i, a_i))``.
        """
        target = np.asarray(target_pmf, dtype=np.float64)
        if target.shape != (self.keep.shape[0], self.gmap.shape[1]):
            raise ValueError(
                f"target_pmf must have shape {(self.keep.shape[0], self.gmap.shape[1])}, "
                f"got {target.shape}"
            )
        target = target[self.keep]
        if not np.isfinite(target).all() or (target < 0.0).any():
            raise ValueError("target_pmf must be finite and >= 0")
        if not np.allclose(target.sum(axis=1), 1.0, atol=1e-6):
            raise ValueError("target_pmf rows must sum to 1")
        padded = self.gmap == len(self.refs)
        if (target[padded] > 0.0).any():
            raise ValueError("target_pmf puts mass on padded actions")
        rows = np.arange(self.m)
        q_local = self.q_table[self.fold[:, None], self.gmap, self.cell[:, None]]
        w = target[rows, self.chosen_local] / self.propensity
        psi = np.einsum("ij,ij->i", target, q_local) + w * (self.rewards - self.q_logged)
        unsupported = float(np.sum(target, where=self._pmf[self._rows] <= 0.0)) / max(self.m, 1)
        return self._policy_estimate(
            name, psi - self.psi_control, float(np.mean(psi)) if self.m else math.nan, unsupported
        )

    def _policy_estimate(
        self, name: str, diff: FloatArray, own_value: float, unsupported: float
    ) -> PolicyIncremental:
        s = self.settings
        n = self.m
        value = float(np.mean(diff)) if n else math.nan
        err = float(np.std(diff, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        notes = [self.exclusions.describe()]
        if unsupported > 1e-9:
            notes.append(
                f"{unsupported:.1%} of the policy's mass is on treatments the logging policy "
                "could not take: that part rests on the reward model alone"
            )
        return PolicyIncremental(
            policy=name,
            per_decision=value,
            ci_low=value - s.z * err,
            ci_high=value + s.z * err,
            std_error=err,
            n=n,
            policy_value=own_value,
            control_value=float(np.mean(self.psi_control)) if n else math.nan,
            unsupported_mass=unsupported,
            period_start=float(self.times.min()) if n else math.nan,
            period_end=float(self.times.max()) if n else math.nan,
            alpha=s.alpha,
            note="; ".join(notes),
        )

    def cumulative(self) -> CumulativeIncremental:
        """The live policy's cumulative incremental net revenue, decisions in time order."""
        order = np.argsort(self.times, kind="stable")
        diff = (self.rewards - self.psi_control)[order]
        dev = diff - (float(diff.mean()) if self.m else 0.0)
        cum = np.cumsum(diff)
        band = self.settings.z * np.sqrt(np.cumsum(dev * dev))
        return CumulativeIncremental(self.times[order], cum, cum - band, cum + band)

    def report(self) -> UpliftReport:
        """The full report: slice effects, the live policy, the holdout comparison."""
        return UpliftReport(
            effects=tuple(self.effects()),
            policy_incremental=self.live_policy(),
            holdout=self.holdout,
            cumulative=self.cumulative(),
            exclusions=self.exclusions,
            settings=self.settings,
        )


def _level(name: str) -> Level:
    if name == "treatment":
        return "treatment"
    if name == "offer":
        return "offer"
    if name == "channel":
        return "channel"
    raise ValueError(f"not a treatment level: {name!r}")


def _dims_of(dimension: str) -> tuple[str, ...]:
    return () if dimension == OVERALL else tuple(dimension.split(" × "))


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def holdout_comparison(lb: LoggedBandit, alpha: float = 0.05) -> HoldoutComparison:
    """Non-holdout vs holdout customers' mean net revenue per decision (Welch interval).

    Only decisions with a final reward count. This compares *customers* the service may
    treat with customers it never treats, so it measures the whole programme (policy,
    control share and eligibility together), with no model.
    """
    frame = lb.frame
    closed = frame["closed"].to_numpy(dtype=bool) if "closed" in frame else np.ones(lb.n, bool)
    holdout = frame["holdout"].to_numpy(dtype=bool) if "holdout" in frame else np.zeros(lb.n, bool)
    reward = frame["reward"].to_numpy(dtype=np.float64) if lb.n else np.zeros(0)
    inside, outside = reward[closed & holdout], reward[closed & ~holdout]
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    mean_in = float(inside.mean()) if inside.size else math.nan
    mean_out = float(outside.mean()) if outside.size else math.nan
    if inside.size < 2 or outside.size < 2:
        note = (
            "no holdout decisions in the log (holdout_share = 0): no holdout comparison"
            if inside.size == 0
            else "too few holdout or non-holdout decisions for an interval"
        )
        return HoldoutComparison(
            mean_out, mean_in, math.nan, math.nan, math.nan, outside.size, inside.size,
            Status.NO_SUPPORT, note, alpha,
        )  # fmt: skip
    diff = mean_out - mean_in
    se = math.sqrt(
        float(outside.var(ddof=1)) / outside.size + float(inside.var(ddof=1)) / inside.size
    )
    return HoldoutComparison(
        mean_targeted=mean_out,
        mean_holdout=mean_in,
        difference=diff,
        ci_low=diff - z * se,
        ci_high=diff + z * se,
        n_targeted=int(outside.size),
        n_holdout=int(inside.size),
        status=Status.OK,
        note="targeted customers (live policy incl. control share) minus holdout customers "
        "(always control); decisions treated as independent",
        alpha=alpha,
    )


# ---- the report ---------------------------------------------------------------------------

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
        """Log the report as an MLflow run (parent) with one child run per dimension.

        Metrics: the live policy's incremental revenue, the holdout comparison and every
        ``ok`` slice effect; artifacts: the table as CSV/JSON, the summary, both PNGs.
        Returns the parent run id.
        """
        import tempfile

        from offline_eval.tracking.tracker import Tracker

        tracker = Tracker(tracking_uri)
        p, h = self.policy_incremental, self.holdout
        run_params = {
            "by": ",".join(self.settings.by),
            "pairs": ";".join(",".join(pair) for pair in self.settings.pairs),
            "segment_column": self.settings.segment_column,
            "min_count": self.settings.min_count,
            "max_ci_width": self.settings.max_ci_width,
            "alpha": self.settings.alpha,
            "folds": self.settings.folds,
            "rows": self.exclusions.rows,
            "analysed": self.exclusions.analysed,
            "excluded_holdout": self.exclusions.holdout,
            "excluded_open": self.exclusions.open,
            **(params or {}),
        }
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(out_dir) if out_dir is not None else Path(tmp)
            paths = self.write(folder)
            with tracker.comparison(study, run_name, params=run_params) as cmp:
                metrics = {
                    "live.incremental_per_decision": p.per_decision,
                    "live.ci_low": p.ci_low,
                    "live.ci_high": p.ci_high,
                    "live.total": p.total,
                    "live.realised_per_decision": p.policy_value,
                    "live.control_per_decision": p.control_value,
                    "holdout.difference": h.difference,
                    "holdout.ci_low": h.ci_low,
                    "holdout.ci_high": h.ci_high,
                    "rows.analysed": float(self.exclusions.analysed),
                    "rows.holdout_excluded": float(self.exclusions.holdout),
                }
                for c in self.candidates:
                    key = _metric_key(c.policy)
                    metrics[f"{key}.incremental_per_decision"] = c.per_decision
                    metrics[f"{key}.ci_low"] = c.ci_low
                    metrics[f"{key}.ci_high"] = c.ci_high
                cmp.log_metrics(metrics)
                cmp.set_tags({"holdout_note": h.note, "exclusions": self.exclusions.describe()})
                for path in paths:
                    cmp.log_artifact(path)
                dims: dict[str, list[SliceEffect]] = {}
                for e in self.effects:
                    dims.setdefault(e.dimension, []).append(e)
                for dim, effects in dims.items():
                    with cmp.child(dim, params={"dimension": dim}) as child:
                        child_metrics: dict[str, float] = {}
                        for e in effects:
                            if not e.reportable:
                                continue
                            key = _metric_key(f"{e.slice}/{e.treatment}")
                            child_metrics[f"{key}.value"] = e.value
                            child_metrics[f"{key}.ci_low"] = e.ci_low
                            child_metrics[f"{key}.ci_high"] = e.ci_high
                        child.log_metrics(child_metrics)
                        child.set_tags(
                            {
                                "rows_not_reported": sum(not e.reportable for e in effects),
                            }
                        )
                return cmp.run_id


def _metric_key(text: str) -> str:
    """An MLflow-safe metric name.

    >>> _metric_key("stage=at_risk/discount_10@sms")
    'stage:at_risk/discount_10_sms'
    """
    return re.sub(r"[^A-Za-z0-9_\-./ :]", "_", text.replace("=", ":"))[:250]


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


def uplift_report(
    lb: LoggedBandit,
    by: Iterable[str] = DEFAULT_DIMENSIONS,
    pairs: Iterable[tuple[str, str]] = (),
    *,
    segment_column: str | None = None,
    min_count: int = 30,
    max_ci_width: float | None = None,
    alpha: float = 0.05,
    folds: int = 5,
    seed: int = 0,
    candidates: dict[str, FloatArray] | None = None,
    progress: bool = False,
) -> UpliftReport:
    """Incremental net revenue of the log's treatments, by slice, plus the live policy.

    ``segment_column`` defaults to ``c.stage`` when the log has it (else ``c.segment``).
    ``candidates`` maps names to candidate pmfs (``(n, K)`` like ``lb.pmf``) whose
    incremental net revenue against all-control is added to the report.

    A treatment worth 2 EUR more than control per decision, logged half the time:

    >>> from bandit.types import CONTROL_TREATMENT, Channel, Offer, Treatment
    >>> cat = (CONTROL_TREATMENT, Treatment(Offer("d10", discount_rate=0.1), Channel("sms")))
    >>> rng = np.random.default_rng(0)
    >>> chosen = rng.integers(0, 2, 2000)
    >>> frame = pd.DataFrame({
    ...     "catalogue_id": 0, "n_treatments": 2, "chosen": chosen, "propensity": 0.5,
    ...     "reward": 10.0 + 2.0 * chosen + rng.normal(0.0, 1.0, 2000), "closed": True,
    ...     "holdout": False, "trigger_type": "login", "decided_at": np.arange(2000.0)})
    >>> lb = LoggedBandit(frame, np.full((2000, 2), 0.5), {0: cat})
    >>> report = uplift_report(lb, by=["trigger"])
    >>> e = report.find("d10@sms", "trigger=login")
    >>> round(e.value, 1), bool(e.ci_low < 2.0 < e.ci_high), e.status.value
    (2.0, True, 'ok')
    >>> round(report.policy_incremental.per_decision)  # half the decisions were treated
    1
    """
    if segment_column is None:
        cols = lb.frame.columns
        segment_column = "c.stage" if "c.stage" in cols or "c.segment" not in cols else "c.segment"
    settings = UpliftSettings(
        by=tuple(by),
        pairs=tuple((a, b) for a, b in pairs),
        segment_column=segment_column,
        min_count=min_count,
        max_ci_width=max_ci_width,
        alpha=alpha,
        folds=folds,
        seed=seed,
    )
    analysis = UpliftAnalysis.fit(lb, settings, progress=progress)
    report = analysis.report()
    if candidates:
        extra = tuple(analysis.policy_incremental(pmf, name) for name, pmf in candidates.items())
        report = UpliftReport(
            report.effects,
            report.policy_incremental,
            report.holdout,
            report.cumulative,
            report.exclusions,
            report.settings,
            extra,
        )
    return report

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

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.types import TreatmentRef
from offline_eval.estimators import DR, BanditData
from offline_eval.estimators.reward_models import CellMeans
from offline_eval.io.logs import LoggedBandit
from offline_eval.uplift.report import (
    DEFAULT_DIMENSIONS,
    DEFAULT_MAX_CI_WIDTH,
    LIVE_POLICY,
    OVERALL,
    TREATMENT_LEVELS,
    CumulativeIncremental,
    Exclusions,
    HoldoutComparison,
    Level,
    PolicyIncremental,
    SliceEffect,
    Status,
    UpliftReport,
    UpliftSettings,
)
from offline_eval.uplift.shrinkage import shrink_effects

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

_MAX_LEVELS: Final = 12  # numeric columns with more distinct values are cut into quintiles

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


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
        """Cross-fitted shrunken cell means (:class:`~offline_eval.estimators.reward_models.
        CellMeans`, cell = segment × trigger) over the global treatments."""
        s = self.settings
        m = self.m
        seg = self._segment_codes()
        trig = (
            _codes(self._series("trigger_type"))[0]
            if self._has("trigger_type") and m
            else np.zeros(m, np.int64)
        )
        model = CellMeans(prior_strength=s.prior_strength, folds=s.folds, seed=s.seed)
        fitted = model.fit(self.chosen, self.rewards, seg, trig, n_actions=len(self.refs))
        self.q_table, self.fold, self.cell = fitted.table, fitted.fold, fitted.cell
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
        """AIPW score ``ψ_i(G)`` of playing group ``members`` with the logging mix inside it;
        ``nan`` where the group had no logging probability.

        It is the DR estimator's per-row score (:class:`~offline_eval.estimators.DR`) of the
        policy ``π_G(a|x) = μ(a|x) / μ(G|x)``, over the group's treatments plus one slot that
        stands for every other logged treatment (target mass 0, reward model ``q̂`` of the
        logged one).
        """
        group = list(members)
        k = len(group)
        if self.m == 0:
            return np.zeros(0)
        mu = self.mu[group].T  # (m, k)
        mu_g = mu.sum(axis=1)
        supported = mu_g > 0.0
        target = np.zeros((self.m, k + 1))
        target[supported, :k] = mu[supported] / mu_g[supported, None]
        target[~supported, k] = 1.0  # any pmf: these rows are nan below
        q_hat = np.empty((self.m, k + 1))
        for j, a in enumerate(group):
            q_hat[:, j] = self.q_of(a)
        q_hat[:, k] = self.q_logged
        slot = np.full(len(self.refs) + 1, k, dtype=np.int64)
        slot[group] = np.arange(k)
        # μ(a_i|x_i) as the pmf has it (a logged treatment always had some probability).
        logged_mu = self.mu[self.chosen, np.arange(self.m)]
        data = BanditData(self.rewards, slot[self.chosen], np.where(logged_mu > 0, logged_mu, 1.0))
        psi = DR().scores(data, target, q_hat).additive
        psi[~supported] = np.nan
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
        q_local = self.q_table[self.fold[:, None], self.gmap, self.cell[:, None]]
        psi = (
            DR()
            .scores(BanditData(self.rewards, self.chosen_local, self.propensity), target, q_local)
            .additive
            if self.m
            else np.zeros(0)
        )
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
            effects=tuple(shrink_effects(self.effects(), self.settings.z)),
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


def uplift_report(
    lb: LoggedBandit,
    by: Iterable[str] = DEFAULT_DIMENSIONS,
    pairs: Iterable[tuple[str, str]] = (),
    *,
    segment_column: str | None = None,
    min_count: int = 30,
    max_ci_width: float | None = DEFAULT_MAX_CI_WIDTH,
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

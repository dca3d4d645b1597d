"""Compare candidate policies on a decision log: the notebook-friendly API.

>>> from offline_eval.io.logs import load_sqlite
>>> from offline_eval.study.study import Study, Uniform, AllControl, VWReplay
>>> study = Study(load_sqlite("data"), name="spring")  # doctest: +SKIP
>>> result = study.compare([Uniform(), AllControl(), VWReplay("--squarecb")])  # doctest: +SKIP
>>> result.table()  # one row per policy × estimator (pandas)  # doctest: +SKIP
>>> result.plot()  # values with their intervals (a matplotlib Figure)  # doctest: +SKIP
>>> result.track(Tracker())  # MLflow: a parent run, a child run per policy  # doctest: +SKIP
>>> study.search().table()  # VW settings ranked by the DR lower bound  # doctest: +SKIP

How a comparison is computed:

1. Rows: every decision of the log is shown to every policy (replays learn from all of them,
   in log order), but only decisions with a final reward **outside the persistent holdout**
   are used for estimates: a holdout customer always gets control (its logged pmf is
   control = 1), so the log carries no evidence about treatments for them. The result says
   how many rows were left out.
2. A cross-fitted reward model ``q̂`` (:class:`RewardModel`) for the DM family, fitted once.
3. For every policy: its target pmf, then each estimator's :class:`Estimate` (value,
   interval, diagnostics). The logged policy is always included as the baseline; its
   on-policy value is the mean logged reward.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.checkpoint import Checkpoint
from bandit.learner import DEFAULT_EXPLORATION
from offline_eval.estimators import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    BanditData,
    Estimate,
    OffPolicyEstimator,
    SwitchDR,
)
from offline_eval.estimators.intervals import (
    BootstrapInterval,
    EmpiricalLikelihoodInterval,
    Interval,
    NormalInterval,
)
from offline_eval.estimators.reward_models import cross_fit_q_hat
from offline_eval.io.logs import CUSTOMER_PREFIX, TRIGGER_PREFIX, LoggedBandit
from offline_eval.replay.policies import (
    AllControl,
    FixedTreatment,
    LoggedPolicy,
    PolicyTarget,
    RuleTable,
    SavedModel,
    TargetPolicy,
    Uniform,
    describe,
    treatment_matrix,
)
from offline_eval.replay.uplift_replay import UpliftReplay
from offline_eval.replay.vw_replay import VWReplay, settings_grid

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from offline_eval.tracking.tracker import Tracker

__all__ = [
    "DEFAULT_ESTIMATORS",
    "AllControl",
    "FixedTreatment",
    "LoggedPolicy",
    "PolicyResult",
    "Promotion",
    "RewardModel",
    "RuleTable",
    "SavedModel",
    "Study",
    "StudyResult",
    "Uniform",
    "VWReplay",
    "make_interval",
    "parse_estimators",
    "parse_policy",
]

FloatArray = NDArray[np.float64]

DEFAULT_ESTIMATORS: Final = ("ips", "snips", "dm", "dr", "sndr", "switchdr")
SWITCH_TAU: Final = 20.0
"""Switch-DR's default weight threshold."""
CURVE_POINTS: Final = 200
"""How many steps of a replay's running estimate are kept (and tracked)."""

_ESTIMATORS: Final[dict[str, OffPolicyEstimator]] = {
    "ips": IPS(),
    "snips": SNIPS(),
    "dm": DM(),
    "dr": DR(),
    "sndr": SNDR(),
    "switchdr": SwitchDR(tau=SWITCH_TAU),
}


def parse_estimators(spec: str | Sequence[str | OffPolicyEstimator]) -> list[OffPolicyEstimator]:
    """``"ips,snips,dr"`` (or a list of names or estimators) as estimators.

    ``switchdr:10`` sets Switch-DR's threshold.

    >>> [e.label for e in parse_estimators("ips, dr,switchdr:5")]
    ['IPS', 'DR', 'SwitchDR(tau=5)']
    """
    items: Sequence[str | OffPolicyEstimator] = spec.split(",") if isinstance(spec, str) else spec
    out: list[OffPolicyEstimator] = []
    for item in items:
        if isinstance(item, OffPolicyEstimator):
            out.append(item)
            continue
        name, _, arg = item.strip().lower().partition(":")
        if not name:
            continue
        if name == "switchdr" and arg:
            out.append(SwitchDR(tau=float(arg)))
        elif name in _ESTIMATORS and not arg:
            out.append(_ESTIMATORS[name])
        else:
            raise ValueError(f"unknown estimator {item!r}; use {', '.join(_ESTIMATORS)}")
    if not out:
        raise ValueError("no estimator given")
    return out


def make_interval(name: str, alpha: float, seed: int = 0) -> Interval:
    """``normal``, ``bootstrap`` or ``el`` (empirical likelihood; IPS/SNIPS only — the other
    estimators then use the normal interval)."""
    key = name.strip().lower()
    if key == "normal":
        return NormalInterval(alpha)
    if key == "bootstrap":
        return BootstrapInterval(alpha, seed=seed)
    if key in ("el", "empirical-likelihood"):
        return EmpiricalLikelihoodInterval(alpha)
    raise ValueError(f"unknown interval {name!r}; use normal, bootstrap or el")


def parse_policy(
    spec: str,
    *,
    lb: LoggedBandit | None = None,
    seed: int = 0,
    control_share: float = 0.0,
    tracking_uri: str | None = None,
) -> TargetPolicy:
    """A policy from its command-line spec.

    ``logged``, ``uniform``, ``control``, ``fixed:OFFER@CHANNEL``, ``rules:FILE.json``,
    ``model:PATH_OR_URI``, ``uplift:"OPTIONS"`` (the uplift policy replayed with these
    options; ``uplift:`` for the defaults), ``vw:"VW ARGS"`` (``vw:logged`` replays the
    logging settings).

    >>> parse_policy("fixed:discount_10@sms").name
    'fixed:discount_10@sms'
    >>> parse_policy('vw:--squarecb -q co').vw_args[4:]
    ['--squarecb', '-q', 'co']
    """
    text = spec.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.lower()
    if not sep:
        simple: dict[str, TargetPolicy] = {
            "logged": LoggedPolicy(),
            "uniform": Uniform(),
            "control": AllControl(),
        }
        if kind in simple:
            return simple[kind]
    elif kind == "fixed":
        return FixedTreatment.parse(arg)
    elif kind == "rules":
        return RuleTable.from_file(arg)
    elif kind == "model":
        return SavedModel(arg, tracking_uri=tracking_uri, control_share=control_share)
    elif kind == "uplift":
        return UpliftReplay.parse(arg, seed=seed, control_share=control_share)
    elif kind == "vw":
        if arg.strip() == "logged":
            if lb is None:
                raise ValueError("vw:logged needs the log")
            return VWReplay.logged(lb, seed=seed, control_share=control_share)
        return VWReplay.parse(arg, seed=seed, control_share=control_share)
    raise ValueError(
        f"unknown policy {spec!r}; use logged, uniform, control, fixed:OFFER@CHANNEL, "
        "rules:FILE, model:PATH_OR_URI, uplift:'OPTIONS' or vw:'VW ARGS'"
    )


# ---- reward model ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RewardModel:
    """The cross-fitted ``q̂(x, a)`` of the DM family: ridge on treatment × key features.

    The features of a (decision, treatment) pair are ``onehot(treatment) ⊗ [1, g(x)]``:
    ``g(x)`` one-hot encodes the categorical customer/trigger features (at most
    ``max_levels`` levels each, the trigger type included) and standardises the numeric
    ones. That design is block-diagonal across treatments, so the joint ridge fit is one
    small ridge per treatment, on the decisions that chose it (with its own unpenalised
    intercept): one :func:`~offline_eval.estimators.reward_models.cross_fit_q_hat` call per
    treatment.

    Cross-fitting holds for every (row, action): the model of treatment ``t`` is fitted on
    rows that chose ``t`` only, in folds, and a row that chose ``t`` is predicted by the model
    of the other folds; every other row's reward never enters that model. The rows that did
    not choose ``t`` (but could have) are packed as extra "actions" of the fitting rows, so
    one call predicts them too, each with some fold's model, at a cost linear in the rows.
    A treatment chosen fewer than ``2 × folds`` times gets a cross-fitted constant (the mean
    reward of the other folds).

    Attributes:
        features: the log columns to use (``c.stage``, ``trigger_type`` …); ``None`` picks
            every customer/trigger feature column automatically.
        folds: cross-fitting folds.
        ridge: L2 penalty (rewards are in money, features about unit scale).
        seed: seed of the fold assignment.
        max_levels: categorical columns with more distinct values are skipped.
    """

    features: tuple[str, ...] | None = None
    folds: int = 5
    ridge: float = 10.0
    seed: int = 0
    max_levels: int = 12

    def design(self, frame: pd.DataFrame) -> tuple[FloatArray, list[str]]:
        """``g(x)`` for every row, and the names of its columns."""
        if self.features is not None:
            columns = list(self.features)
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"reward model features not in the log: {', '.join(missing)}")
        else:
            columns = ["trigger_type"] + [
                str(c)
                for c in frame.columns
                if str(c).startswith((CUSTOMER_PREFIX, TRIGGER_PREFIX))
            ]
        blocks: list[FloatArray] = []
        names: list[str] = []
        for col in columns:
            series = frame[col]
            if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
                x = series.to_numpy(dtype=np.float64, na_value=np.nan)
                ok = np.isfinite(x)
                if ok.sum() < 2:
                    continue
                mean, std = float(x[ok].mean()), float(x[ok].std())
                z = np.where(ok, (x - mean) / (std if std > 0 else 1.0), 0.0)
                blocks.append(np.clip(z, -5.0, 5.0)[:, None])
                names.append(col)
                continue
            codes, levels = pd.factorize(series.astype(object), sort=False)
            if not 0 < len(levels) <= self.max_levels:
                continue
            hot = np.zeros((len(codes), len(levels)))
            present = codes >= 0
            hot[np.flatnonzero(present), codes[present]] = 1.0
            blocks.append(hot)
            names += [f"{col}={lv}" for lv in levels]
        if not blocks:
            return np.zeros((len(frame), 0)), []
        return np.hstack(blocks), names

    def q_hat(self, lb: LoggedBandit, data: BanditData) -> FloatArray:
        """Cross-fitted ``(n, K)`` predictions for ``lb``'s rows (``data`` from the same rows)."""
        if not self.ridge > 0.0:
            raise ValueError(f"ridge must be > 0, got {self.ridge!r}")
        _, matrix = treatment_matrix(lb)
        g, _ = self.design(lb.frame)
        n, k = matrix.shape
        rewards = data.rewards
        logged = matrix[np.arange(n), data.chosen]
        fold_of = np.random.default_rng(self.seed).permutation(n) % self.folds
        fold_sum = np.bincount(fold_of, weights=rewards, minlength=self.folds)
        fold_n = np.bincount(fold_of, minlength=self.folds)
        out_mean = (rewards.sum() - fold_sum) / np.maximum(n - fold_n, 1)
        q = np.zeros((n, k))
        for t in np.unique(matrix[matrix >= 0]).tolist():
            cells = matrix == t
            rows = np.flatnonzero(cells.any(axis=1))
            column = np.argmax(cells[rows], axis=1)
            members = np.flatnonzero(logged == t)
            if members.size < 2 * self.folds:
                q[rows, column] = out_mean[fold_of[rows]]
                continue
            others = np.setdiff1d(rows, members, assume_unique=True)
            m = members.size
            width = 1 + -(-others.size // m)
            features = np.zeros((m, width, g.shape[1]))
            features[:, 0] = g[members]
            slot = np.arange(others.size)
            features[slot % m, 1 + slot // m] = g[others]
            fit = BanditData(rewards[members], np.zeros(m, dtype=np.int64), np.ones(m))
            pred = cross_fit_q_hat(
                features, fit, folds=self.folds, ridge=self.ridge, seed=self.seed
            )
            value = np.empty(n)
            value[members] = pred[:, 0]
            value[others] = pred[slot % m, 1 + slot // m]
            q[rows, column] = value[rows]
        return q


# ---- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class PolicyResult:
    """One policy's estimates, with what is needed to track and promote it."""

    name: str
    params: Mapping[str, str]
    estimates: Mapping[str, Estimate]
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    model: bytes | None = None
    vw_args: tuple[str, ...] = ()
    learned: int = 0
    curves: Mapping[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    """Running estimates over the log, step = decisions seen (replays only)."""

    def estimate(self, estimator: str) -> Estimate:
        """The estimate of ``estimator`` (its label, case-insensitive: ``dr``, ``SNIPS`` …)."""
        for label, est in self.estimates.items():
            if label.lower() == estimator.lower():
                return est
        raise KeyError(f"{self.name} has no {estimator} estimate; it has {list(self.estimates)}")

    def checkpoint(self) -> Checkpoint | None:
        """The policy's model as a checkpoint file body (replays and saved models)."""
        if self.model is None:
            return None
        return Checkpoint(
            version=1,
            position=0,
            learned=self.learned,
            vw_args=list(self.vw_args),
            created_at=time.time(),
            model=self.model,
        )


@dataclass(frozen=True, slots=True)
class Promotion:
    """The outcome of the promotion gate (see :meth:`StudyResult.promotion`)."""

    candidate: str | None
    approved: bool
    reason: str
    candidate_low: float = math.nan
    baseline: float = math.nan


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") if math.isfinite(t) else ""


_METRIC_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


def metric_key(text: str) -> str:
    """An MLflow-safe metric name: ``SwitchDR(tau=20)`` → ``SwitchDR_tau_20``.

    >>> metric_key("SwitchDR(tau=20)")
    'SwitchDR_tau_20'
    """
    return _METRIC_BAD.sub("_", text).strip("_")


@dataclass(frozen=True, slots=True, eq=False)
class StudyResult:
    """A comparison of policies on one log: estimates, diagnostics, and how they were made."""

    study: str
    source: str
    rows: int
    """Decisions shown to the policies."""
    evaluated: int
    """Decisions the estimates use (final reward, outside the holdout)."""
    holdout_excluded: int
    open_excluded: int
    """Decisions without a final reward (not estimated)."""
    time_range: tuple[float, float]
    alpha: float
    interval: str
    estimators: tuple[str, ...]
    logged_value: float
    """Mean logged reward of the evaluated decisions: the logging policy's on-policy value."""
    logged_std_error: float
    results: tuple[PolicyResult, ...]
    mode: str = "compare"

    def __iter__(self) -> Iterator[PolicyResult]:
        return iter(self.results)

    def __getitem__(self, name: str) -> PolicyResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def notes(self) -> list[str]:
        out = []
        if self.holdout_excluded:
            out.append(
                f"{self.holdout_excluded} holdout decisions excluded from the estimates "
                "(holdout customers always get control: no support for treatments)"
            )
        if self.open_excluded:
            out.append(f"{self.open_excluded} decisions without a final reward excluded")
        return out

    def table(self) -> pd.DataFrame:
        """One row per policy × estimator: value, interval, standard error, diagnostics."""
        rows = []
        for r in self.results:
            for est in r.estimates.values():
                rows.append({"policy": r.name, **asdict(est)})
        return pd.DataFrame(rows)

    def wide(self, column: str = "value") -> pd.DataFrame:
        """Policies × estimators of one column (``value``, ``ci_low`` …)."""
        return self.table().pivot(index="policy", columns="estimator", values=column)

    def params(self) -> dict[str, str]:
        """What defines the comparison, for tracking."""
        return {
            "log_source": self.source,
            "rows": str(self.rows),
            "rows_evaluated": str(self.evaluated),
            "holdout_excluded": str(self.holdout_excluded),
            "open_excluded": str(self.open_excluded),
            "time_from": _utc(self.time_range[0]),
            "time_to": _utc(self.time_range[1]),
            "alpha": str(self.alpha),
            "interval": self.interval,
            "estimators": ",".join(self.estimators),
            "policies": ",".join(r.name for r in self.results),
            "mode": self.mode,
        }

    def best(self, estimator: str = "DR", *, models_only: bool = False) -> PolicyResult:
        """The policy with the highest lower confidence bound of ``estimator``."""
        pool = [r for r in self.results if not models_only or r.model is not None]
        pool = [r for r in pool if r.name != "logged"]
        if not pool:
            raise ValueError("no candidate policy" + (" with a model" if models_only else ""))
        return max(pool, key=lambda r: _nan_low(r.estimate(estimator).ci_low))

    def promotion(self, estimator: str = "DR", candidate: str | None = None) -> Promotion:
        """Whether the best model (or ``candidate``) may be promoted.

        Gate: the candidate's ``estimator`` lower bound must exceed the logged policy's
        ``estimator`` estimate (offline evidence that it beats what runs today).
        """
        try:
            cand = self[candidate] if candidate else self.best(estimator, models_only=True)
        except (KeyError, ValueError) as exc:
            return Promotion(None, False, f"nothing to promote: {exc}")
        if cand.model is None:
            return Promotion(cand.name, False, f"{cand.name} has no model to register")
        low = cand.estimate(estimator).ci_low
        base = self["logged"].estimate(estimator).value if "logged" in self.names() else math.nan
        if not math.isfinite(base):
            base = self.logged_value
        if math.isfinite(low) and low > base:
            reason = (
                f"{cand.name}: {estimator} lower bound {low:.4g} > logged policy's "
                f"{estimator} estimate {base:.4g}"
            )
            return Promotion(cand.name, True, reason, low, base)
        reason = (
            f"not promoted: {cand.name}'s {estimator} lower bound {low:.4g} does not beat the "
            f"logged policy's {estimator} estimate {base:.4g} (not enough offline evidence)"
        )
        return Promotion(cand.name, False, reason, low, base)

    def names(self) -> list[str]:
        return [r.name for r in self.results]

    def summary(self, estimators: Sequence[str] | None = None) -> str:
        """A readable table: one line per policy × estimator."""
        t = self.table()
        if estimators is not None:
            keep = {e.lower() for e in estimators}
            t = t[t["estimator"].str.lower().isin(keep)]
        pct = f"{1 - self.alpha:.0%}"
        lines = [
            f"study {self.study!r}: {self.evaluated} decisions evaluated of {self.rows} "
            f"({_utc(self.time_range[0])} .. {_utc(self.time_range[1])}), {pct} intervals "
            f"({self.interval})",
            f"logged policy's on-policy value (mean reward): {self.logged_value:.4f} "
            f"± {self.logged_std_error:.4f} (s.e.)",
        ]
        lines += [f"note: {n}" for n in self.notes()]
        width = max([len("policy"), *(len(n) for n in t["policy"])])
        head = (
            f"{'policy':<{width}}  {'estimator':<16} {'value':>10} {'ci_low':>10} "
            f"{'ci_high':>10} {'s.e.':>9} {'ess':>9} {'max w':>8}"
        )
        lines += ["", head, "-" * len(head)]
        previous = ""
        for row in t.itertuples(index=False):
            name = str(row.policy) if row.policy != previous else ""
            previous = str(row.policy)
            lines.append(
                f"{name:<{width}}  {row.estimator!s:<16} {row.value:>10.4f} {row.ci_low:>10.4f} "
                f"{row.ci_high:>10.4f} {row.std_error:>9.4f} {row.ess:>9.1f} "
                f"{row.max_weight:>8.2f}"
            )
        for r in self.results:
            lines += [f"{r.name}: {n}" for n in r.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in self.params().items()},
            "study": self.study,
            "logged_value": self.logged_value,
            "logged_std_error": self.logged_std_error,
            "notes": self.notes(),
            "policies": [
                {
                    "name": r.name,
                    "params": dict(r.params),
                    "notes": list(r.notes),
                    "seconds": r.seconds,
                    "estimates": [_finite(asdict(e)) for e in r.estimates.values()],
                }
                for r in self.results
            ],
        }

    def plot(
        self, path: str | Path | None = None, estimators: Sequence[str] | None = None
    ) -> Figure:
        """Values with their intervals per policy and estimator (saved as PNG when ``path``)."""
        from offline_eval.study.plots import comparison_plot

        return comparison_plot(self, path=path, estimators=estimators)

    def write(self, folder: str | Path) -> dict[str, Path]:
        """``results.csv``, ``results.json`` and ``comparison.png`` in ``folder``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "csv": out / "results.csv",
            "json": out / "results.json",
            "plot": out / "comparison.png",
        }
        self.table().to_csv(paths["csv"], index=False)
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        self.plot(paths["plot"])
        if any(r.curves for r in self.results):
            from offline_eval.study.plots import learning_curve_plot

            paths["curves"] = out / "learning_curves.png"
            learning_curve_plot(self, paths["curves"])
        return paths

    def track(
        self,
        tracker: Tracker,
        run_name: str | None = None,
        *,
        artifacts_dir: str | Path | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> TrackedStudy:
        """Log the comparison to MLflow: a parent run, one child run per policy."""
        return track_result(self, tracker, run_name, artifacts_dir=artifacts_dir, tags=tags)


def _nan_low(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


# ---- the study -------------------------------------------------------------------------------


class Study:
    """Off-policy comparisons on one log.

    Args:
        lb: the log (e.g. :func:`offline_eval.io.logs.load_sqlite`).
        name: the study (the MLflow experiment when tracked).
        alpha: miscoverage of the intervals (0.05: 95% intervals).
        interval: ``normal``, ``bootstrap`` or ``el``.
        estimators: default estimators of :meth:`compare`.
        reward_model: how ``q̂`` is fitted.
        progress: show progress bars.
    """

    def __init__(
        self,
        lb: LoggedBandit,
        *,
        name: str = "offerbandit",
        alpha: float = 0.05,
        interval: str = "normal",
        estimators: str | Sequence[str | OffPolicyEstimator] = DEFAULT_ESTIMATORS,
        reward_model: RewardModel | None = None,
        progress: bool = False,
        seed: int = 0,
    ) -> None:
        if lb.n == 0:
            raise ValueError("the log is empty")
        self.lb = lb
        self.name = name
        self.alpha = alpha
        self.interval_name = interval
        self.interval = make_interval(interval, alpha, seed)
        self.normal = NormalInterval(alpha)
        self.estimators = parse_estimators(estimators)
        self.reward_model = reward_model or RewardModel(seed=seed)
        self.progress = progress
        frame = lb.frame
        closed = frame["closed"].to_numpy(dtype=bool) & np.isfinite(
            frame["reward"].to_numpy(dtype=np.float64, na_value=np.nan)
        )
        holdout = frame["holdout"].to_numpy(dtype=bool)
        self.mask = closed & ~holdout
        self.holdout_excluded = int((holdout & closed).sum())
        self.open_excluded = int((~closed).sum())
        if not self.mask.any():
            raise ValueError("no decision with a final reward outside the holdout to evaluate")
        self.eval_lb = lb.select(self.mask)
        self.data = self.eval_lb.bandit_data()
        order = np.argsort(self.eval_lb.frame["seq"].to_numpy(), kind="stable")
        self._order = order
        self._q_hat: FloatArray | None = None

    @property
    def q_hat(self) -> FloatArray:
        """The cross-fitted reward model's ``(n_evaluated, K)`` predictions (fitted once)."""
        if self._q_hat is None:
            self._q_hat = self.reward_model.q_hat(self.eval_lb, self.data)
        return self._q_hat

    def estimate(
        self, pmf: FloatArray, estimators: Sequence[OffPolicyEstimator] | None = None
    ) -> dict[str, Estimate]:
        """Every estimator's estimate of a target pmf over the **evaluated** rows."""
        out = {}
        for est in estimators or self.estimators:
            q = self.q_hat if est.needs_q_hat else None
            interval = self.interval
            if isinstance(interval, EmpiricalLikelihoodInterval) and not isinstance(
                est, IPS | SNIPS
            ):
                interval = self.normal
            e = est.estimate(self.data, pmf, q, interval=interval)
            out[e.estimator] = e
        return out

    def curves(
        self, pmf: FloatArray, estimators: Sequence[OffPolicyEstimator]
    ) -> dict[str, tuple[tuple[int, float], ...]]:
        """Running estimates in log order (IPS, SNIPS, DR when chosen), at ~200 steps."""
        n = self.data.n
        order = self._order
        steps = np.unique(np.linspace(1, n, min(CURVE_POINTS, n)).astype(np.int64))
        w = pmf[np.arange(n), self.data.chosen] / self.data.propensities
        wr = (w * self.data.rewards)[order]
        out: dict[str, tuple[tuple[int, float], ...]] = {}
        labels = {e.label for e in estimators}
        if "IPS" in labels:
            run = np.cumsum(wr)[steps - 1] / steps
            out["running.IPS"] = tuple(zip(steps.tolist(), run.tolist(), strict=True))
        if "SNIPS" in labels:
            denom = np.cumsum(w[order])[steps - 1]
            run = np.cumsum(wr)[steps - 1] / np.where(denom > 0, denom, np.nan)
            out["running.SNIPS"] = tuple(zip(steps.tolist(), run.tolist(), strict=True))
        if "DR" in labels:
            psi = DR().scores(self.data, pmf, self.q_hat).additive[order]
            run = np.cumsum(psi)[steps - 1] / steps
            out["running.DR"] = tuple(zip(steps.tolist(), run.tolist(), strict=True))
        return out

    def evaluate(
        self,
        policy: TargetPolicy,
        estimators: Sequence[OffPolicyEstimator] | None = None,
        *,
        progress: bool | None = None,
    ) -> PolicyResult:
        """One policy's :class:`PolicyResult`."""
        show = self.progress if progress is None else progress
        start = time.perf_counter()
        target: PolicyTarget = policy.target(self.lb, progress=show)
        pmf = target.pmf[self.mask]
        ests = list(estimators or self.estimators)
        estimates = self.estimate(pmf, ests)
        curves = self.curves(pmf, ests) if target.learned else {}
        return PolicyResult(
            name=policy.name,
            params=policy.params(),
            estimates=estimates,
            notes=target.notes,
            seconds=time.perf_counter() - start,
            model=target.model,
            vw_args=target.vw_args,
            learned=target.learned,
            curves=curves,
        )

    def _result(self, results: list[PolicyResult], estimators: list[str], mode: str) -> StudyResult:
        r = self.data.rewards
        t = self.eval_lb.frame["decided_at"].to_numpy(dtype=np.float64)
        return StudyResult(
            study=self.name,
            source=self.lb.source,
            rows=self.lb.n,
            evaluated=self.data.n,
            holdout_excluded=self.holdout_excluded,
            open_excluded=self.open_excluded,
            time_range=(float(t.min()), float(t.max())),
            alpha=self.alpha,
            interval=self.interval.name,
            estimators=tuple(estimators),
            logged_value=float(r.mean()),
            logged_std_error=float(r.std(ddof=1) / math.sqrt(r.size)) if r.size > 1 else math.nan,
            results=tuple(results),
            mode=mode,
        )

    def compare(
        self,
        policies: Sequence[TargetPolicy],
        *,
        estimators: str | Sequence[str | OffPolicyEstimator] | None = None,
        include_logged: bool = True,
    ) -> StudyResult:
        """Estimate every policy's value (the logged policy first, as the baseline)."""
        ests = parse_estimators(estimators) if estimators is not None else self.estimators
        todo = list(policies)
        if include_logged and not any(isinstance(p, LoggedPolicy) for p in todo):
            todo.insert(0, LoggedPolicy())
        describe(todo)
        bar = tqdm(todo, desc="policies", unit="policy", disable=not self.progress or len(todo) < 2)
        results = []
        for p in bar:
            bar.set_postfix_str(p.name[:40])
            results.append(self.evaluate(p, ests))
        return self._result(results, [e.label for e in ests], "compare")

    def search(
        self,
        grid: Sequence[VWReplay] | None = None,
        *,
        estimators: str | Sequence[str | OffPolicyEstimator] | None = None,
        rank_by: str = "DR",
        baselines: Sequence[TargetPolicy] = (),
        **grid_options: Any,
    ) -> StudyResult:
        """Replay a grid of VW settings (default
        :func:`~offline_eval.replay.vw_replay.settings_grid`) and rank them by the lower
        confidence bound of ``rank_by`` (best first)."""
        ests = parse_estimators(estimators) if estimators is not None else self.estimators
        if rank_by.lower() not in {e.label.lower() for e in ests}:
            ests = [*ests, *parse_estimators(rank_by)]
        candidates = list(grid) if grid is not None else settings_grid(**grid_options)
        describe([*baselines, *candidates])
        results = [self.evaluate(LoggedPolicy(), ests, progress=False)]
        results += [self.evaluate(p, ests, progress=False) for p in baselines]
        bar = tqdm(candidates, desc="settings search", unit="setting", disable=not self.progress)
        ranked = []
        for cand in bar:
            bar.set_postfix_str(cand.name[:50])
            ranked.append(self.evaluate(cand, ests, progress=False))
        ranked.sort(key=lambda r: _nan_low(r.estimate(rank_by).ci_low), reverse=True)
        return self._result(results + ranked, [e.label for e in ests], "search")


# ---- tracking --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrackedStudy:
    """Where a tracked comparison went."""

    experiment_id: str
    parent_run_id: str
    child_run_ids: Mapping[str, str]
    artifacts: Mapping[str, Path]


def _metrics(est: Estimate) -> dict[str, float]:
    key = metric_key(est.estimator)
    return {
        f"{key}.value": est.value,
        f"{key}.ci_low": est.ci_low,
        f"{key}.ci_high": est.ci_high,
        f"{key}.std_error": est.std_error,
        f"{key}.ess": est.ess,
        f"{key}.max_weight": est.max_weight,
        f"{key}.mean_weight": est.mean_weight,
        f"{key}.unsupported_mass": est.unsupported_mass,
    }


def track_result(
    result: StudyResult,
    tracker: Tracker,
    run_name: str | None = None,
    *,
    artifacts_dir: str | Path | None = None,
    tags: Mapping[str, Any] | None = None,
) -> TrackedStudy:
    """See :meth:`StudyResult.track`. Artifacts are written to ``artifacts_dir`` (a
    temporary folder by default) and uploaded: the plot(s), CSV, JSON and each model's
    checkpoint (``model/model.ckpt`` of its child run)."""
    import tempfile

    from bandit.checkpoint import CheckpointStore
    from offline_eval.tracking.registry import ARTIFACT_DIR, CHECKPOINT_FILE

    name = run_name or f"{result.mode} {datetime.now(UTC).isoformat(timespec='seconds')}"
    common_tags = {"offerbandit.mode": result.mode, **(tags or {})}
    with tempfile.TemporaryDirectory(prefix="offerbandit-eval-") as tmp:
        folder = Path(artifacts_dir) if artifacts_dir is not None else Path(tmp)
        paths = result.write(folder)
        children: dict[str, str] = {}
        with tracker.comparison(
            result.study, name, params=result.params(), tags=common_tags
        ) as parent:
            parent.log_metrics(
                {
                    "logged.mean_reward": result.logged_value,
                    "logged.std_error": result.logged_std_error,
                    "rows": float(result.rows),
                    "rows_evaluated": float(result.evaluated),
                    "holdout_excluded": float(result.holdout_excluded),
                }
            )
            for rank, r in enumerate(result.results):
                child_tags = {
                    **common_tags,
                    "offerbandit.policy": r.name,
                    "offerbandit.kind": r.params.get("policy", ""),
                    "offerbandit.rank": rank,
                }
                params = {
                    **dict(r.params),
                    "log_source": result.source,
                    "rows_evaluated": result.evaluated,
                    "time_from": _utc(result.time_range[0]),
                    "time_to": _utc(result.time_range[1]),
                }
                if r.vw_args:
                    params["vw_args"] = " ".join(r.vw_args)
                with parent.child(r.name, params=params, tags=child_tags) as run:
                    metrics: dict[str, float] = {"seconds": r.seconds}
                    for est in r.estimates.values():
                        metrics.update(_metrics(est))
                    if r.learned:
                        metrics["learned"] = float(r.learned)
                    run.log_metrics(metrics)
                    for key, series in r.curves.items():
                        run.log_series(key, list(series))
                    if r.notes:
                        run.set_tags({"offerbandit.notes": " | ".join(r.notes)[:4900]})
                    ckpt = r.checkpoint()
                    if ckpt is not None:
                        model_dir = folder / "models" / metric_key(r.name)
                        saved = CheckpointStore(model_dir, keep=1).save(ckpt)
                        final = saved.with_name(CHECKPOINT_FILE)
                        saved.replace(final)
                        run.log_artifact(final, ARTIFACT_DIR)
                    children[r.name] = run.run_id
            for key in ("plot", "curves", "csv", "json"):
                if key in paths:
                    parent.log_artifact(paths[key])
            experiment_id = parent.experiment_id
            parent_id = parent.run_id
        kept = paths if artifacts_dir is not None else {}
    return TrackedStudy(experiment_id, parent_id, children, kept)


def run_offline_comparison(log_path: str | Path, report: Mapping[str, Any]) -> str:
    """The demo's offline step: compare a few policies on its log, tracked in MLflow.

    Evaluates the logged policy, uniform random, all-control and two VW settings replayed
    through the log (the service's default and epsilon-greedy) with SNIPS, DR and SNDR, logs
    the comparison to ``report["mlflow_tracking_uri"]`` (experiment ``offerbandit-demo``),
    and returns the printable summary.
    """
    from offline_eval.io.logs import load_sqlite
    from offline_eval.tracking.tracker import Tracker

    lb = load_sqlite(log_path, closed_only=True, progress=False)
    study = Study(lb, name="offerbandit-demo", estimators="snips,dr,sndr", progress=True)
    interactions = ("co", "ch", "to", "th", "oh")
    result = study.compare(
        [
            Uniform(),
            AllControl(),
            UpliftReplay(),
            VWReplay(DEFAULT_EXPLORATION, interactions),
            VWReplay("--epsilon 0.05", interactions),
        ]
    )
    tracker = Tracker(str(report.get("mlflow_tracking_uri") or "") or None)
    result.track(tracker, "demo comparison")
    return result.summary()

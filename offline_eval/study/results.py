"""What a comparison gives: each policy's estimates (:class:`PolicyResult`), the comparison as
a whole (:class:`StudyResult`: tables, summary, plots, files, MLflow) and the promotion gate
(:class:`Promotion`)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from bandit.checkpoint import Checkpoint
from offline_eval.estimators import Estimate
from offline_eval.study.verdict import Verdict, format_verdicts, verdict_records

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from offline_eval.tracking.runs import TrackedStudy
    from offline_eval.tracking.tracker import Tracker

__all__ = ["PolicyResult", "Promotion", "StudyResult"]


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
    influence: NDArray[np.float64] | None = None
    """Per-row scores of the recommended estimator (for paired differences)."""
    headline: Estimate | None = None
    """The recommended estimator's estimate with a normal interval (the verdict's)."""
    weight_share: float = math.nan
    """Largest importance weight over their sum."""

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
    verdicts: tuple[Verdict, ...] = ()
    """One per policy, best first (:mod:`offline_eval.study.verdict`)."""
    recommended: str = "DR"
    """The estimator behind the verdicts."""

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

    def verdict_table(self) -> pd.DataFrame:
        """The ranked table: policy, value and interval, paired differences to the logged
        policy and to control, ESS, largest weight, verdict, warnings."""
        return pd.DataFrame(verdict_records(self.verdicts))

    def verdict_summary(self) -> str:
        """The ranked table as text, with the warnings under it."""
        return format_verdicts(self.verdicts, self.recommended, self.alpha, self.evaluated)

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
        not_ci = False
        for row in t.itertuples(index=False):
            name = str(row.policy) if row.policy != previous else ""
            previous = str(row.policy)
            mark = "*" if "not a CI" in str(row.interval) else ""
            not_ci = not_ci or bool(mark)
            lines.append(
                f"{name:<{width}}  {str(row.estimator) + mark:<16} {row.value:>10.4f} "
                f"{row.ci_low:>10.4f} {row.ci_high:>10.4f} {row.std_error:>9.4f} "
                f"{row.ess:>9.1f} {row.max_weight:>8.2f}"
            )
        if not_ci:
            lines.append(
                "* not a confidence interval: DM treats its reward model as exact (kept out "
                "of the verdicts)"
            )
        for r in self.results:
            lines += [f"{r.name}: {n}" for n in r.notes]
        if self.verdicts:
            lines += ["", self.verdict_summary()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in self.params().items()},
            "study": self.study,
            "logged_value": self.logged_value,
            "logged_std_error": self.logged_std_error,
            "notes": self.notes(),
            "recommended": self.recommended,
            "verdicts": [_finite(v) for v in verdict_records(self.verdicts)],
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
        """``results.csv``, ``results.json``, ``verdict.csv``, ``comparison.png`` and
        ``differences.png`` (paired differences to the logged policy) in ``folder``."""
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
        if self.verdicts:
            from offline_eval.study.plots import difference_plot

            paths["verdict"] = out / "verdict.csv"
            self.verdict_table().to_csv(paths["verdict"], index=False)
            paths["differences"] = out / "differences.png"
            difference_plot(self, paths["differences"])
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
        """Log the comparison to MLflow: a parent run, one child run per policy
        (:func:`offline_eval.tracking.runs.track_study`)."""
        from offline_eval.tracking.runs import track_study

        return track_study(self, tracker, run_name, artifacts_dir=artifacts_dir, tags=tags)


def _nan_low(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

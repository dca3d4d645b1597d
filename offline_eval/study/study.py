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

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.learner import DEFAULT_EXPLORATION
from bandit.service import ServiceConfig
from offline_eval.estimators import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
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
from offline_eval.estimators.reward_models import RewardModel
from offline_eval.io.logs import LoggedBandit
from offline_eval.replay.policies import (
    AllControl,
    FixedTreatment,
    LoggedPolicy,
    PolicyTarget,
    SavedModel,
    TargetPolicy,
    Uniform,
    describe,
)
from offline_eval.replay.rules import RuleTable
from offline_eval.replay.uplift_replay import UpliftReplay
from offline_eval.replay.vw_replay import VWReplay, settings_grid
from offline_eval.study.results import PolicyResult, Promotion, StudyResult, _nan_low
from offline_eval.study.verdict import RECOMMENDED, Verdict, paired_difference, verdict_for

if TYPE_CHECKING:
    pass


__all__ = [
    "DEFAULT_ESTIMATORS",
    "SERVICE_CONTROL_SHARE",
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
SERVICE_CONTROL_SHARE: Final = ServiceConfig(data_dir=Path()).control_share
"""The service's default control share: what replays mix in unless told otherwise."""
NOT_A_CI: Final = "not a CI: the reward model's own error is ignored"
"""How DM's interval is labelled: it treats the fitted reward model as exact (measured
coverage 0–27%, docs/offline-evaluation.md), so it never enters a verdict."""
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
        seed: seed of the folds, the bootstrap and the replays.
        recommended: the estimator behind the verdicts (normal intervals, paired
            differences).
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
        recommended: str = RECOMMENDED,
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
        self.recommended = parse_estimators(recommended)[0]
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
            if isinstance(est, DM):
                e = dataclasses.replace(e, interval=f"{e.interval}, {NOT_A_CI}")
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
        rec = self.recommended
        q = self.q_hat if rec.needs_q_hat else None
        w = pmf[np.arange(self.data.n), self.data.chosen] / self.data.propensities
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
            influence=rec.scores(self.data, pmf, q).influence(),
            headline=rec.estimate(self.data, pmf, q, interval=self.normal),
            weight_share=float(w.max() / w.sum()) if w.sum() > 0 else math.nan,
        )

    def verdicts(self, results: Sequence[PolicyResult]) -> tuple[Verdict, ...]:
        """The ranked verdicts (:mod:`offline_eval.study.verdict`): the recommended
        estimator, paired differences to the logged policy and to all-control."""
        rec = self.recommended
        try:
            control_pmf = AllControl().target(self.lb).pmf[self.mask]
        except ValueError:  # a row without control: no all-control baseline
            psi_control = None
        else:
            q = self.q_hat if rec.needs_q_hat else None
            psi_control = rec.scores(self.data, control_pmf, q).influence()
        out = []
        for r in results:
            if r.influence is None or r.headline is None:
                continue
            logged = r.name == LoggedPolicy().name
            vs_logged = (
                None
                if logged
                else paired_difference(r.influence, self.data.rewards, alpha=self.alpha)
            )
            vs_control = (
                None
                if psi_control is None or r.name == AllControl().name
                else paired_difference(
                    r.influence, psi_control, alpha=self.alpha, baseline="control"
                )
            )
            out.append(
                verdict_for(r.name, r.headline, vs_logged, vs_control, weight_share=r.weight_share)
            )
        out.sort(key=lambda v: v.rank_key, reverse=True)
        return tuple(out)

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
            verdicts=self.verdicts(results),
            recommended=self.recommended.label,
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


def run_offline_comparison(
    log_path: str | Path, report: Mapping[str, Any], progress: bool = True
) -> str:
    """The demo's offline step: compare a few policies on its log, tracked in MLflow.

    Evaluates the logged policy, uniform random, all-control and two VW settings replayed
    through the log (the service's default and epsilon-greedy) with SNIPS, DR and SNDR, logs
    the comparison to ``report["mlflow_tracking_uri"]`` (experiment ``offerbandit-demo``),
    and returns the printable summary (``progress``: progress bars on standard error).
    """
    from offline_eval.io.logs import load_sqlite
    from offline_eval.tracking.tracker import Tracker

    lb = load_sqlite(log_path, closed_only=True, progress=False)
    study = Study(lb, name="offerbandit-demo", estimators="snips,dr,sndr", progress=progress)
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

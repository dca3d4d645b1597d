"""The simulator's truth next to the off-policy estimates of the same decisions.

A simulated run knows what every treatment was worth for every decision
(:class:`bandit.sim.driver.RunTruth`), so an off-policy estimate made from its log can be
checked: the logged policy, uniform random and all-control are estimated from the log as
``offerbandit eval`` does, their true values are computed on the very decisions the
estimates use, and each line says in plain words whether the interval covers the truth and
how many decisions effectively carry the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bandit.sim.driver import RunTruth
from offline_eval.estimators import Estimate
from offline_eval.io.logs import LoggedBandit, load_sqlite
from offline_eval.replay.policies import AllControl, LoggedPolicy, TargetPolicy, Uniform
from offline_eval.study.study import Study

FloatArray = NDArray[np.float64]

LOW_SUPPORT_SHARE = 0.1
"""Below this effective share of the decisions (ESS / n), an estimate is flagged."""
LOW_SUPPORT_ESS = 100.0
"""… and below this effective sample size whatever the share."""
LATE_SHARE = 0.1
"""Above this share of late purchases, the check warns that the log missed them."""


@dataclass(frozen=True, slots=True)
class TruthCheck:
    """One policy × estimator: the estimate and the truth on the same decisions.

    ``truth`` counts every purchase the policy causes; ``in_window`` only those within the
    attribution window — what the log's rewards measure, so what the estimate is checked
    against (``truth`` when the window is unknown).
    """

    policy: str
    truth: float
    estimate: Estimate
    in_window: float | None = None

    @property
    def target(self) -> float:
        """What the estimate estimates: the truth within the window when known."""
        return self.truth if self.in_window is None else self.in_window

    @property
    def covered(self) -> bool:
        e = self.estimate
        return e.ci_low <= self.target <= e.ci_high

    @property
    def low_support(self) -> bool:
        e = self.estimate
        return e.ess < LOW_SUPPORT_ESS or e.ess < LOW_SUPPORT_SHARE * e.n

    def words(self) -> str:
        """Whether the interval covers the truth, and the estimate's support, in words."""
        e = self.estimate
        gap = e.value - self.target
        if self.covered:
            text = f"covers the truth (off by {gap:+.2f})"
        else:
            se = e.std_error if e.std_error > 0 else math.nan
            text = f"MISSES the truth by {gap:+.2f} ({abs(gap) / se:.1f} standard errors)"
        share = e.ess / e.n if e.n else math.nan
        text += f"; effective sample size {e.ess:,.0f} of {e.n:,} ({100 * share:.0f}%)"
        if self.low_support:
            text += (
                f", largest weight {e.max_weight:,.0f}: the log rarely did what this policy "
                "does, so the estimate rests on few decisions and its interval can be too narrow"
            )
        return text


def truth_matrix(lb: LoggedBandit, truth: RunTruth, *, in_window: bool = False) -> FloatArray:
    """``[lb.n, lb.max_treatments]``: the true value of each row's candidates, in the order
    of its catalogue (NaN beyond it, and for rows the run did not make); ``in_window``: of
    the purchases within the attribution window (:attr:`RunTruth.in_window`)."""
    source = truth.in_window if in_window else truth.values
    if source is None:
        raise ValueError("the run has no truth within its attribution window")
    row_of = {e: i for i, e in enumerate(truth.event_ids)}
    col_of = {k: j for j, k in enumerate(truth.keys)}
    out = np.full((lb.n, lb.max_treatments), np.nan)
    rows = np.array([row_of.get(str(e), -1) for e in lb.frame["event_id"]], dtype=np.intp)
    cats = lb.frame["catalogue_id"].to_numpy(dtype=np.int64)
    for cid, catalogue in lb.catalogues.items():
        sel = np.flatnonzero((cats == cid) & (rows >= 0))
        if sel.size:
            cols = np.array([col_of[t.ref.key] for t in catalogue], dtype=np.intp)
            out[sel, : cols.size] = source[rows[sel]][:, cols]
    return out


def check_against_truth(
    lb: LoggedBandit,
    truth: RunTruth,
    *,
    estimators: str = "snips,dr",
    policies: Sequence[TargetPolicy] = (LoggedPolicy(), Uniform(), AllControl()),
    alpha: float = 0.05,
    seed: int = 0,
) -> list[TruthCheck]:
    """Estimate ``policies`` on ``lb`` (closed decisions outside the holdout, as
    ``offerbandit eval`` does) and compute their true values on the same decisions."""
    study = Study(lb, estimators=estimators, alpha=alpha, seed=seed)
    used = study.eval_lb
    values = truth_matrix(used, truth)
    unknown = int(np.isnan(values[:, 0]).sum())
    if unknown:
        raise ValueError(f"{unknown:,} logged decisions were not made by this run")
    seen = truth_matrix(used, truth, in_window=True) if truth.in_window is not None else None
    checks = []
    for policy in policies:
        pmf = policy.target(used).pmf
        true_value = float(np.nansum(pmf * values, axis=1).mean())
        window = None if seen is None else float(np.nansum(pmf * seen, axis=1).mean())
        for est in study.estimate(pmf).values():
            checks.append(TruthCheck(policy.name, true_value, est, window))
    return checks


def summary(checks: Sequence[TruthCheck]) -> str:
    """The checks as printable lines, with what the gaps mean."""
    if not checks:
        return ""
    e0 = checks[0].estimate
    level = round(100 * (1 - e0.alpha))
    windowed = checks[0].in_window is not None
    lines = [
        f"off-policy estimates against the simulator's truth ({e0.n:,} closed decisions, "
        f"EUR net per decision, {level}% intervals):",
        f"  {'policy':<9}{'truth':>7}{'in window' if windowed else '':>10}  "
        f"{'estimator':<9}{'estimate':>9}  interval",
    ]
    for c in checks:
        e = c.estimate
        seen = f"{c.in_window:10.2f}" if c.in_window is not None else " " * 10
        lines.append(
            f"  {c.policy:<9}{c.truth:7.2f}{seen}  {e.estimator:<9}{e.value:9.2f}  "
            f"[{e.ci_low:.2f}, {e.ci_high:.2f}] {c.words()}"
        )
    missed = sum(not c.covered for c in checks)
    if windowed:
        lines.append(
            "'truth' counts every purchase a policy causes; 'in window' only those within the "
            "attribution window, as the log's rewards do: that is what the estimates estimate, "
            "and what 'covers' compares with."
        )
    lines.append(
        f"{len(checks) - missed} of {len(checks)} intervals cover it. A {level}% interval "
        f"misses about 1 time in {round(1 / e0.alpha)} even when all is well (and the rows of "
        "one policy share their noise); a miss with a small effective sample size means the "
        "log has too little support for that policy."
    )
    return "\n".join(lines)


def late_note(outcomes: Mapping[str, int]) -> str:
    """A warning when many purchases arrived after their window closed (a gRPC run that fell
    behind real time): the log then misses them, and the estimates fall below the truth.

    >>> late_note({"attributed": 85, "late": 539})[:43]
    'warning: 539 of 624 purchases (86%) arrived'
    """
    late, attributed = outcomes.get("late", 0), outcomes.get("attributed", 0)
    total = late + attributed
    if total == 0 or late / total < LATE_SHARE:
        return ""
    return (
        f"warning: {late:,} of {total:,} purchases ({100 * late / total:.0f}%) arrived after "
        "their attribution window had closed (the run fell behind its compressed time: a busy "
        "machine?); the log's rewards miss them, so every estimate falls below even the truth "
        "within the window. Run it again with a longer --duration."
    )


def truth_report(
    log: str | Path | LoggedBandit,
    truth: RunTruth | None,
    outcomes: Mapping[str, int] | None = None,
) -> str:
    """The printable check of a run's log against its truth (a note when it cannot be made);
    ``outcomes``: the run's outcomes by status, for :func:`late_note`."""
    if truth is None:
        return "no truth to compare the estimates with"
    lb = log if isinstance(log, LoggedBandit) else load_sqlite(log, progress=False)
    ours = lb.frame["event_id"].isin(set(truth.event_ids)).to_numpy()
    note = ""
    if not ours.all():  # a server's log can hold decisions of earlier runs
        note = (
            f"\n({int((~ours).sum()):,} decisions of the log were not made by this run: left out)"
        )
        lb = lb.select(ours)
    if lb.n == 0:
        return "no closed decisions to check the estimates against the truth" + note
    late = late_note(outcomes or {})
    try:
        return summary(check_against_truth(lb, truth)) + note + ("\n" + late if late else "")
    except ValueError as exc:
        return f"estimates not checked against the truth: {exc}"


__all__ = [
    "TruthCheck",
    "check_against_truth",
    "late_note",
    "summary",
    "truth_matrix",
    "truth_report",
]

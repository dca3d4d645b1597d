"""The verdict of a comparison: one ranked row per policy, in plain words.

A comparison gives six estimators × several policies; a person wants to know which policy
to run. :func:`verdicts` answers with one estimator (the *recommended* one, DR by default:
its 95% intervals cover the simulator's truth at ≥ 90%, docs/offline-evaluation.md) and
**paired** differences: the candidate and the baseline are scored on the same rows, so the
difference's interval is ``mean(ψ_π − ψ_base) ± z·sd(ψ_π − ψ_base)/√n`` and the rows' shared
noise (the same customers, the same rewards) cancels. The baselines are the logged policy
(its on-policy value, the mean logged reward: ``ψ_base = r``) and all-control (the same
estimator on the control pmf).

The verdict refuses when the data cannot answer: an effective sample size below
``min_ess`` or target mass on treatments the logger could not take.

>>> rewards = np.array([1.0, 0.0, 2.0, 1.0])
>>> psi = rewards + 1.0
>>> d = paired_difference(psi, rewards, alpha=0.05)
>>> round(d.value, 3), round(d.ci_low, 3), round(d.ci_high, 3)
(1.0, 1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from offline_eval.estimators import Estimate

__all__ = [
    "MAX_UNSUPPORTED",
    "MIN_ESS",
    "RECOMMENDED",
    "Difference",
    "Verdict",
    "format_verdicts",
    "paired_difference",
    "verdict_for",
    "verdict_records",
]

FloatArray = NDArray[np.float64]

RECOMMENDED: Final = "DR"
"""The estimator behind verdicts (best measured coverage with the smallest width)."""
MIN_ESS: Final = 100.0
"""Below this effective sample size a policy gets "not enough support", no verdict."""
MAX_UNSUPPORTED: Final = 0.05
"""Above this mean target mass on treatments the logger never offered: no verdict (the
reward model alone would speak for it)."""
WARN_UNSUPPORTED: Final = 0.01
"""Above this unsupported mass: a warning."""
MAX_WEIGHT_SHARE: Final = 0.05
"""One row carrying more than this share of the weights gets a warning."""

Status = Literal["better", "worse", "not distinguishable", "not enough support", "baseline"]


@dataclass(frozen=True, slots=True)
class Difference:
    """A paired difference ``V(π) − V(baseline)`` on the same rows, with its interval."""

    baseline: str
    value: float
    ci_low: float
    ci_high: float
    std_error: float

    @property
    def significant(self) -> bool:
        return self.ci_low > 0.0 or self.ci_high < 0.0

    def words(self) -> str:
        return f"{self.value:+,.2f} [{self.ci_low:+,.2f}, {self.ci_high:+,.2f}]"


def paired_difference(
    psi: FloatArray, psi_base: FloatArray, *, alpha: float, baseline: str = "logged"
) -> Difference:
    """Normal interval of ``mean(psi − psi_base)`` (per-row scores of two estimates on the
    same rows)."""
    if psi.shape != psi_base.shape:
        raise ValueError(f"paired scores need the same rows, got {psi.shape} and {psi_base.shape}")
    d = psi - psi_base
    n = d.shape[0]
    value = float(d.mean())
    se = float(np.std(d, ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    half = NormalDist().inv_cdf(1.0 - alpha / 2.0) * se
    return Difference(baseline, value, value - half, value + half, se)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One policy's row of the ranked table.

    Attributes:
        policy: the policy's name.
        estimate: the recommended estimator's estimate (value, interval, ESS, largest weight).
        vs_logged: paired difference to the logged policy (``None`` for the logged policy).
        vs_control: paired difference to all-control (``None`` for all-control itself).
        status: ``better`` / ``worse`` than the logged policy, ``not distinguishable``,
            ``not enough support``, or ``baseline`` (the logged policy).
        text: the verdict in plain words.
        warnings: small effective sample size, missing support, a dominating weight.
    """

    policy: str
    estimate: Estimate
    vs_logged: Difference | None
    vs_control: Difference | None
    status: Status
    text: str
    warnings: tuple[str, ...] = ()

    @property
    def rank_key(self) -> float:
        """Higher is better: the lower bound of the difference to the logged policy; rows
        without support last."""
        if self.status == "not enough support":
            return -math.inf
        if self.vs_logged is None:
            return 0.0 if math.isfinite(self.estimate.value) else -math.inf
        low = self.vs_logged.ci_low
        return low if math.isfinite(low) else -math.inf


def _warnings(est: Estimate, weight_share: float, min_ess: float) -> list[str]:
    out = []
    if est.ess < min_ess:
        out.append(
            f"effective sample size {est.ess:,.1f} of {est.n:,} rows (< {min_ess:g}): the "
            "estimate rests on a few rows"
        )
    if math.isfinite(est.unsupported_mass) and est.unsupported_mass > WARN_UNSUPPORTED:
        out.append(
            f"{est.unsupported_mass:.1%} of the policy's mass is on treatments the logger "
            "never offered (no support: only the reward model speaks for them)"
        )
    if weight_share > MAX_WEIGHT_SHARE:
        out.append(
            f"one row carries {weight_share:.0%} of the importance weight (largest weight "
            f"{est.max_weight:,.1f})"
        )
    return out


def verdict_for(
    policy: str,
    estimate: Estimate,
    vs_logged: Difference | None,
    vs_control: Difference | None,
    *,
    weight_share: float,
    min_ess: float = MIN_ESS,
) -> Verdict:
    """The plain-words verdict of one policy (see the module docstring)."""
    warnings = tuple(_warnings(estimate, weight_share, min_ess))
    unsupported = math.isfinite(estimate.unsupported_mass) and (
        estimate.unsupported_mass > MAX_UNSUPPORTED
    )
    if vs_logged is None:
        return Verdict(
            policy, estimate, None, vs_control, "baseline", "the logged policy", warnings
        )
    if estimate.ess < min_ess or unsupported:
        text = (
            f"not enough support: effective sample size {estimate.ess:,.1f} of {estimate.n:,}, "
            f"largest weight {estimate.max_weight:,.1f}"
            + (f", {estimate.unsupported_mass:.1%} unsupported mass" if unsupported else "")
        )
        return Verdict(
            policy, estimate, vs_logged, vs_control, "not enough support", text, warnings
        )
    if vs_logged.ci_low > 0.0:
        status: Status = "better"
        text = (
            f"{policy} beats the logged policy by {vs_logged.value:,.2f} EUR per decision "
            f"[{vs_logged.ci_low:,.2f}, {vs_logged.ci_high:,.2f}]"
        )
    elif vs_logged.ci_high < 0.0:
        status = "worse"
        text = (
            f"{policy} is worse than the logged policy by {-vs_logged.value:,.2f} EUR per "
            f"decision [{-vs_logged.ci_high:,.2f}, {-vs_logged.ci_low:,.2f}]"
        )
    else:
        status = "not distinguishable"
        text = f"not distinguishable from the logged policy ({vs_logged.words()} EUR per decision)"
    return Verdict(policy, estimate, vs_logged, vs_control, status, text, warnings)


def verdict_records(verdicts: Sequence[Verdict]) -> list[dict[str, Any]]:
    """The ranked table as records (one per policy, best first)."""
    nan = math.nan
    out = []
    for rank, v in enumerate(verdicts, start=1):
        e, dl, dc = v.estimate, v.vs_logged, v.vs_control
        out.append(
            {
                "rank": rank,
                "policy": v.policy,
                "estimator": e.estimator,
                "value": e.value,
                "ci_low": e.ci_low,
                "ci_high": e.ci_high,
                "vs_logged": dl.value if dl else nan,
                "vs_logged_low": dl.ci_low if dl else nan,
                "vs_logged_high": dl.ci_high if dl else nan,
                "vs_control": dc.value if dc else nan,
                "vs_control_low": dc.ci_low if dc else nan,
                "vs_control_high": dc.ci_high if dc else nan,
                "ess": e.ess,
                "max_weight": e.max_weight,
                "status": v.status,
                "verdict": v.text,
                "warnings": " | ".join(v.warnings),
            }
        )
    return out


def _cell(d: Difference | None) -> str:
    return "—" if d is None else d.words()


def format_verdicts(verdicts: Sequence[Verdict], estimator: str, alpha: float, n: int) -> str:
    """The ranked table as text: one line per policy, then the verdicts and warnings."""
    pct = f"{1 - alpha:.0%}"
    lines = [
        f"verdict ({estimator}, EUR per decision, {pct} intervals; differences paired on the "
        f"same {n:,} decisions; ranked by the low end of the difference to the logged "
        "policy)"
    ]
    width = max([len("policy"), *(len(v.policy[:40]) for v in verdicts)])
    head = (
        f"{'#':>2}  {'policy':<{width}}  {'value [' + pct + ' CI]':<26}  "
        f"{'vs logged':<26}  {'vs control':<26}  {'ESS':>8}  {'max w':>8}"
    )
    lines += [head, "-" * len(head)]
    for rank, v in enumerate(verdicts, start=1):
        e = v.estimate
        value = f"{e.value:,.2f} [{e.ci_low:,.2f}, {e.ci_high:,.2f}]"
        lines.append(
            f"{rank:>2}  {v.policy[:40]:<{width}}  {value:<26}  {_cell(v.vs_logged):<26}  "
            f"{_cell(v.vs_control):<26}  {e.ess:>8,.1f}  {e.max_weight:>8,.1f}"
        )
    lines.append("")
    for v in verdicts:
        lines.append(f"{v.policy}: {v.text}")
        lines += [f"  warning: {w}" for w in v.warnings]
    return "\n".join(lines)

"""Plots of off-policy comparisons (matplotlib, Agg: no display needed).

Figures are built with :class:`matplotlib.figure.Figure` directly (no ``pyplot`` global
state), so they work in scripts, servers and notebooks alike (a notebook shows a returned
``Figure``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from offline_eval._extras import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from offline_eval.study.results import StudyResult

__all__ = ["comparison_plot", "difference_plot", "learning_curve_plot"]


def comparison_plot(
    result: StudyResult,
    *,
    path: str | Path | None = None,
    estimators: Sequence[str] | None = None,
) -> Figure:
    """One horizontal bar per policy and estimator: the value and its interval.

    The dashed line is the logged policy's on-policy value (its mean reward).
    """
    require("matplotlib", "plotting")
    from matplotlib.figure import Figure

    table = result.table()
    labels = list(dict.fromkeys(table["estimator"]))
    if estimators is not None:
        keep = {e.lower() for e in estimators}
        labels = [lb for lb in labels if lb.lower() in keep]
    policies = list(dict.fromkeys(table["policy"]))
    height = max(2.5, 0.5 + 0.32 * len(policies) * max(len(labels), 1))
    fig = Figure(figsize=(9.0, height), layout="constrained")
    ax = fig.add_subplot()
    step = 0.8 / max(len(labels), 1)
    for j, est in enumerate(labels):
        part = table[table["estimator"] == est].set_index("policy")
        ys, xs, lo, hi = [], [], [], []
        for i, p in enumerate(policies):
            if p not in part.index:
                continue
            row = part.loc[p]
            ys.append(i + (j - (len(labels) - 1) / 2) * step)
            xs.append(float(row["value"]))
            low, high = float(row["ci_low"]), float(row["ci_high"])
            lo.append(xs[-1] - low if math.isfinite(low) else 0.0)
            hi.append(high - xs[-1] if math.isfinite(high) else 0.0)
        ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", capsize=3, label=est, markersize=4)
    ax.axvline(result.logged_value, color="grey", linestyle="--", linewidth=1, label="logged")
    ax.set_yticks(range(len(policies)), [p if len(p) <= 48 else p[:45] + "..." for p in policies])
    ax.invert_yaxis()
    ax.set_xlabel(f"estimated value per decision, EUR ({1 - result.alpha:.0%} intervals)")
    ax.set_title(
        f"{result.study}: {result.evaluated} decisions"
        + (f", {result.holdout_excluded} holdout excluded" if result.holdout_excluded else "")
    )
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig


def learning_curve_plot(result: StudyResult, path: str | Path | None = None) -> Figure:
    """Running estimates of each replayed policy over the log (one panel per estimator)."""
    require("matplotlib", "plotting")
    from matplotlib.figure import Figure

    keys = sorted({k for r in result.results for k in r.curves})
    fig = Figure(figsize=(9.0, 3.0 * max(len(keys), 1)), layout="constrained")
    axes = fig.subplots(max(len(keys), 1), 1, squeeze=False)[:, 0]
    for ax, key in zip(axes, keys, strict=False):
        for r in result.results:
            series = r.curves.get(key)
            if series:
                steps, values = zip(*series, strict=True)
                ax.plot(steps, values, label=r.name, linewidth=1)
        ax.axhline(result.logged_value, color="grey", linestyle="--", linewidth=1, label="logged")
        ax.set_title(key)
        ax.set_xlabel("decisions replayed")
        ax.set_ylabel(f"running {key.removeprefix('running.')} estimate, EUR per decision")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig


def difference_plot(result: StudyResult, path: str | Path | None = None) -> Figure:
    """Each policy's paired difference to the logged policy with its interval, ranked as in
    the verdict table; policies without enough support are drawn hollow and grey."""
    require("matplotlib", "plotting")
    from matplotlib.figure import Figure

    rows = [v for v in result.verdicts if v.vs_logged is not None]
    fig = Figure(figsize=(9.0, max(2.5, 0.8 + 0.45 * len(rows))), layout="constrained")
    ax = fig.add_subplot()
    for i, v in enumerate(rows):
        d = v.vs_logged
        if d is None:  # pragma: no cover - filtered above
            continue
        supported = v.status != "not enough support"
        color = {"better": "tab:green", "worse": "tab:red"}.get(v.status, "tab:blue")
        ax.errorbar(
            [d.value],
            [i],
            xerr=[[d.value - d.ci_low], [d.ci_high - d.value]],
            fmt="o",
            color=color if supported else "grey",
            mfc=color if supported else "white",
            capsize=3,
        )
    ax.axvline(0.0, color="black", linewidth=1)
    labels = [
        (v.policy if len(v.policy) <= 40 else v.policy[:37] + "...")
        + (" (not enough support)" if v.status == "not enough support" else "")
        for v in rows
    ]
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(
        f"difference to the logged policy, EUR per decision ({result.recommended}, paired "
        f"{1 - result.alpha:.0%} intervals)"
    )
    ax.set_title(
        f"{result.study}: which policy beats the logged one ({result.evaluated:,} decisions)"
    )
    ax.grid(axis="x", alpha=0.3)
    if path is not None:
        fig.savefig(Path(path), dpi=110)
    return fig

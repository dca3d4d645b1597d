"""Plots of an :class:`~offline_eval.uplift.analysis.UpliftReport` (matplotlib, Agg backend, PNG).

- :func:`plot_slices`: one panel per (slice dimension, treatment level); a dot per slice
  effect with its interval as an error bar, in EUR per decision against control (0 is
  "as good as control"). Rows without enough data are listed with their status, no dot.
- :func:`plot_cumulative`: the live policy's cumulative incremental net revenue over time
  (realised net value minus the AIPW estimate of all-control), with its band.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from offline_eval._extras import require

if TYPE_CHECKING:
    from offline_eval.uplift.analysis import SliceEffect, UpliftReport

__all__ = ["plot_cumulative", "plot_slices"]

_MAX_POINTS = 2000


def _pyplot() -> Any:
    require("matplotlib", "plotting")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(report: UpliftReport) -> list[tuple[str, list[SliceEffect]]]:
    panels: dict[tuple[str, str], list[SliceEffect]] = {}
    for e in report.effects:
        panels.setdefault((e.dimension, e.level), []).append(e)
    out = []
    for (dim, level), effects in panels.items():
        what = {"policy": "live policy", "treatment": "treatments"}.get(level, f"{level}s")
        title = f"{what} overall" if dim == "overall" else f"{what} by {dim}"
        out.append((title, effects))
    return out


def _low(e: SliceEffect) -> float:
    return e.shrunk_low if np.isfinite(e.shrunk_low) else e.ci_low


def _point(e: SliceEffect) -> tuple[float, float, float]:
    if np.isfinite(e.shrunk):
        return e.shrunk, e.shrunk_low, e.shrunk_high
    return e.value, e.ci_low, e.ci_high


def _limits(effects: list[SliceEffect]) -> tuple[float, float]:
    """The x range: every point estimate and 0, plus the interval ends up to 1.5× that span
    (wider intervals are clipped, not allowed to squash the rest)."""
    if not effects:
        return -1.0, 1.0
    points = np.array([_point(e) for e in effects])
    centre_lo = min(0.0, float(points[:, 0].min()))
    centre_hi = max(0.0, float(points[:, 0].max()))
    span = max(centre_hi - centre_lo, 1e-9)
    lo = max(float(points[:, 1].min()), centre_lo - 1.5 * span)
    hi = min(float(points[:, 2].max()), centre_hi + 1.5 * span)
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def _draw(ax: Any, e: SliceEffect, y: float, lo_x: float, hi_x: float) -> int:
    """One effect's dot and error bar, clipped to the axis; returns 1 when clipped."""
    value, low, high = _point(e)
    color = "tab:green" if low > 0 else "tab:red" if high < 0 else "tab:gray"
    a, b = max(low, lo_x), min(high, hi_x)
    v = min(max(value, lo_x), hi_x)
    ax.errorbar(v, y, xerr=[[v - a], [b - v]], fmt="o", color=color, capsize=3)
    cut = 0
    for end, edge, marker, align in ((low, lo_x, "<", "left"), (high, hi_x, ">", "right")):
        if (end < edge) if marker == "<" else (end > edge):
            ax.plot([edge], [y], marker=marker, color=color, markersize=6, clip_on=False)
            ax.annotate(f"{end:,.0f}", (edge, y), xytext=(0, 5), textcoords="offset points",
                        ha=align, fontsize=6, color=color)  # fmt: skip
            cut = 1
    return cut


def plot_slices(report: UpliftReport, path: Path, top: int = 15) -> Path:
    """Incremental net revenue per decision by slice, with error bars; returns ``path``.

    Each panel shows its ``ok`` rows ranked by the lower end of their shrunk interval (up to
    ``top``), then as many rows without a number as fit, labelled with their status. The
    x axis spans the estimates and 0 with room for ordinary intervals; an interval running
    past it ends in an arrow with its end printed.
    """
    from offline_eval.uplift.analysis import Status

    plt = _pyplot()
    panels = _panels(report)
    shown: list[tuple[str, list[SliceEffect], int]] = []
    for title, effects in panels:
        ok = sorted((e for e in effects if e.reportable), key=lambda e: -_low(e))
        rest = [e for e in effects if not e.reportable]
        rows = (ok[:top] + rest[: max(0, top - len(ok))])[:top]
        shown.append((title, rows, len(effects)))
    heights = [max(len(rows), 1) * 0.28 + 0.9 for _, rows, _ in shown]
    fig, axes = plt.subplots(
        len(shown), 1, figsize=(10, max(sum(heights), 3.0)), squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    pct = f"{1 - report.settings.alpha:.0%}"
    lo_x, hi_x = _limits([e for _, rows, _ in shown for e in rows if e.reportable])
    clipped = 0
    for ax, (title, rows, total) in zip(axes[:, 0], shown, strict=True):
        labels = []
        for k, e in enumerate(rows):
            name = e.treatment if e.dimension == "overall" else f"{e.slice} · {e.treatment}"
            if e.level == "policy" and e.dimension != "overall":
                name = e.slice
            labels.append(name[:60])
            y = len(rows) - 1 - k
            if e.reportable:
                clipped += _draw(ax, e, y, lo_x, hi_x)
            else:
                text = "insufficient data" if e.status is Status.INSUFFICIENT else "no support"
                ax.text(0.0, y, f"  {text}", va="center", fontsize=7, color="tab:orange")
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_xlim(lo_x, hi_x)
        ax.set_yticks(range(len(rows) - 1, -1, -1), labels, fontsize=7)
        ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
        more = f" (showing {len(rows)} of {total})" if total > len(rows) else ""
        ax.set_title(f"{title}{more}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    note = f"; {clipped} intervals run past the axis (arrows, ends printed)" if clipped else ""
    axes[-1, 0].set_xlabel(
        f"incremental net revenue per decision vs control, EUR (shrunk estimate, {pct} "
        f"interval{note})",
        fontsize=8,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_cumulative(report: UpliftReport, path: Path) -> Path:
    """Cumulative incremental net revenue of the live policy against all-control; returns
    ``path``."""
    plt = _pyplot()
    c = report.cumulative
    n = c.cumulative.shape[0]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    if n:
        step = max(1, n // _MAX_POINTS)
        idx = np.unique(np.append(np.arange(0, n, step), n - 1))
        times = c.times[idx]
        span = float(times.max() - times.min()) if idx.size else 0.0
        x: list[datetime] | np.ndarray
        if times.min() > 1e8 and span > 0:  # looks like epoch seconds
            x = [datetime.fromtimestamp(float(t), tz=UTC) for t in times]
            ax.set_xlabel("decision time (UTC)")
            fig.autofmt_xdate()
        else:
            x = idx + 1
            ax.set_xlabel("decisions")
        pct = f"{1 - report.settings.alpha:.0%}"
        ax.fill_between(x, c.low[idx], c.high[idx], alpha=0.25, label=f"{pct} band")
        ax.plot(x, c.cumulative[idx], lw=1.5, label="live policy − all-control (AIPW)")
    else:
        ax.text(0.5, 0.5, "no analysed decisions", ha="center", transform=ax.transAxes)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_ylabel("cumulative incremental net revenue, EUR")
    p = report.policy_incremental
    ax.set_title(
        f"Live policy vs all-control: {p.total:,.0f} EUR over {p.n:,} decisions "
        f"({p.per_decision:,.3f} per decision)",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

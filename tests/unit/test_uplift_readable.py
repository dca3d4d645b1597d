"""Uplift that can't be misread (issue 20, finding 2): ranked by the lower bound, a default
interval limit with the hidden rows counted, empirical-Bayes shrinkage, totals that add up,
clipped plot axes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offline_eval.uplift.analysis import uplift_report
from offline_eval.uplift.plots import _limits
from offline_eval.uplift.report import DEFAULT_MAX_CI_WIDTH, OVERALL, UpliftReport
from offline_eval.uplift.shrinkage import shrink_family
from tests.unit.test_uplift import Setup, setup  # noqa: F401  (the shared simulated log)


@pytest.fixture(scope="module")
def report(setup: Setup) -> UpliftReport:  # noqa: F811
    return uplift_report(setup.base.log, by=["stage", "trigger"], pairs=[("stage", "trigger")])


def test_shrinkage_pulls_noisy_slices_to_their_family_and_keeps_precise_ones() -> None:
    values = np.array([1.0, 3.0, 5.0, 539.0])
    errors = np.array([0.2, 0.2, 0.2, 550.0])
    post, sd = shrink_family(values, errors)
    assert 1.0 < post[3] < 5.0  # "+539 [−536, 1,615]" is shown inside the family's range
    assert sd[3] < errors[3] / 100
    assert post[:3] == pytest.approx(values[:3], abs=0.05)  # precise slices barely move
    # slices that vary no more than their noise all sit at the precision-weighted mean
    flat, _ = shrink_family(np.array([1.0, 1.1, 0.9]), np.array([1.0, 1.0, 1.0]))
    assert flat == pytest.approx([1.0, 1.0, 1.0])


def test_the_table_is_ranked_by_the_shrunk_lower_bound(report: UpliftReport) -> None:
    table = report.table
    ok = table[table.status == "ok"]
    assert len(ok) > 5
    assert (np.diff(ok["shrunk_low"].to_numpy()) <= 0).all()
    # every shrunk interval sits inside the family's range and is no wider than the raw one
    width = ok["shrunk_high"] - ok["shrunk_low"]
    assert (width <= ok["ci_high"] - ok["ci_low"] + 1e-9).all()


def test_the_default_interval_limit_hides_rows_and_says_how_many(report: UpliftReport) -> None:
    assert report.settings.max_ci_width == DEFAULT_MAX_CI_WIDTH
    hidden = int((report.table.status != "ok").sum())
    text = report.summary(top=10)
    assert f"{hidden:,} of {len(report.table):,} slice rows hidden" in text
    assert f"an interval wider than {DEFAULT_MAX_CI_WIDTH:g} EUR per decision" in text
    for e in report.effects:
        if e.reportable:
            assert e.ci_high - e.ci_low <= DEFAULT_MAX_CI_WIDTH


def test_slice_totals_add_up_to_the_policy_total(report: UpliftReport) -> None:
    p = report.policy_incremental
    for dim in ("stage", "trigger", "stage × trigger"):
        live = [e for e in report.effects if e.dimension == dim and e.level == "policy"]
        assert sum(e.total for e in live) == pytest.approx(p.total, rel=1e-9, abs=1e-6)
        # shrunk towards the overall effect, never all on one side of it
        shrunk = [e.shrunk for e in live if e.n_treated >= 5]
        assert min(shrunk) - 1e-9 <= p.per_decision <= max(shrunk) + 1e-9
    # a treatment's total is over the decisions that got it, on the policy's scale
    treated = [e for e in report.effects if e.dimension == OVERALL and e.level == "treatment"]
    assert all(e.total == pytest.approx(e.value * e.n_treated) for e in treated)
    assert max(abs(e.total) for e in treated) < 10 * max(abs(p.total), abs(p.ci_low * p.n))


def test_plot_axes_are_clipped_and_the_overflow_is_marked(
    report: UpliftReport, tmp_path: Path
) -> None:
    ok = [e for e in report.effects if e.reportable]
    lo, hi = _limits(ok)
    points = [e.shrunk for e in ok]
    assert lo <= min(*points, 0.0)
    assert hi >= max(*points, 0.0)
    span = max(*points, 0.0) - min(*points, 0.0)
    assert hi - lo <= 4.2 * span  # wide intervals do not stretch the axis
    path = report.plot_slices(tmp_path / "slices.png")
    assert path.read_bytes()[:4] == b"\x89PNG"

"""The verdict of a comparison (issue 20, finding 3): paired differences, plain words,
refusals without support, DM kept out."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bandit.sim.driver import SimulationConfig, simulate_in_process
from offline_eval.estimators import Estimate
from offline_eval.io.logs import LoggedBandit, load_sqlite
from offline_eval.study.plots import difference_plot, learning_curve_plot
from offline_eval.study.study import Study, parse_policy
from offline_eval.study.verdict import MIN_ESS, paired_difference, verdict_for


def _estimate(ess: float = 1000.0, unsupported: float = 0.0) -> Estimate:
    return Estimate("DR", 10.0, 9.0, 11.0, 0.5, 2000, 0.05, "normal", ess, 5.0, 1.0, unsupported)


def test_a_paired_difference_cancels_the_rows_shared_noise() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    noise = rng.normal(0.0, 40.0, n)  # the customers' own variation, shared by both
    base = 10.0 + noise
    psi = 10.5 + noise + rng.normal(0.0, 1.0, n)
    d = paired_difference(psi, base, alpha=0.05)
    assert d.ci_low > 0.0  # paired: +0.5 is detected
    unpaired_se = math.sqrt(psi.var(ddof=1) / n + base.var(ddof=1) / n)
    assert d.std_error < unpaired_se / 20
    z = 1.959963984540054
    assert d.ci_high - d.ci_low == pytest.approx(2 * z * d.std_error)


@pytest.mark.parametrize(
    ("psi_shift", "status", "words"),
    [
        (2.0, "better", "x beats the logged policy by 2.00 EUR per decision ["),
        (-2.0, "worse", "x is worse than the logged policy by 2.00 EUR per decision ["),
        (0.0, "not distinguishable", "not distinguishable from the logged policy ("),
    ],
)
def test_the_verdict_says_it_in_plain_words(psi_shift: float, status: str, words: str) -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(10.0, 5.0, 1000)
    psi = base + psi_shift + rng.normal(0.0, 0.5, 1000)
    psi = psi - (psi - base - psi_shift).mean()  # the difference is exactly psi_shift
    v = verdict_for("x", _estimate(), paired_difference(psi, base, alpha=0.05), None,
                    weight_share=0.001)  # fmt: skip
    assert v.status == status
    assert v.text.startswith(words)
    assert v.warnings == ()


def test_no_verdict_without_support() -> None:
    base = np.zeros(100)
    d = paired_difference(base + 5.0 + np.linspace(-0.1, 0.1, 100), base, alpha=0.05)
    small = verdict_for("x", _estimate(ess=MIN_ESS - 1), d, None, weight_share=0.2)
    assert small.status == "not enough support"
    assert small.text.startswith("not enough support: effective sample size 99.0 of 2,000")
    assert any("effective sample size 99.0" in w for w in small.warnings)
    assert any("one row carries 20%" in w for w in small.warnings)
    unsupported = verdict_for("x", _estimate(unsupported=0.3), d, None, weight_share=0.0)
    assert unsupported.status == "not enough support"
    assert "30.0% unsupported mass" in unsupported.text
    assert unsupported.rank_key == -math.inf


@pytest.fixture(scope="module")
def lb(tmp_path_factory: pytest.TempPathFactory) -> LoggedBandit:
    data = tmp_path_factory.mktemp("sim")
    simulate_in_process(SimulationConfig(seed=4, customers=500, decisions=2000), data_dir=data)
    return load_sqlite(data, progress=False)


def test_a_comparison_ranks_its_policies_with_paired_intervals(
    lb: LoggedBandit, tmp_path: Path
) -> None:
    study = Study(lb, estimators="snips,dm,dr")
    specs = ("control", "fixed:discount_10@email", "vw:--epsilon 0.1")
    result = study.compare([parse_policy(p) for p in specs])
    verdicts = {v.policy: v for v in result.verdicts}
    assert set(verdicts) == {"logged", *specs}
    assert verdicts["logged"].status == "baseline"
    assert verdicts["logged"].vs_logged is None
    control = verdicts["control"]
    assert control.vs_control is None
    assert control.vs_logged is not None
    # the paired difference is the difference of the two DR values on the same rows
    dr = result["control"].estimate("DR").value
    assert control.vs_logged.value == pytest.approx(dr - result.logged_value)
    fixed = verdicts["fixed:discount_10@email"]
    assert fixed.status == "not enough support"  # the logger rarely emails a discount
    assert verdicts["control"].rank_key > fixed.rank_key
    # DM's interval is labelled and kept out: every verdict is by DR
    assert "not a CI" in result["control"].estimate("DM").interval
    assert {v.estimate.estimator for v in result.verdicts} == {"DR"}
    text = result.summary()
    assert "* not a confidence interval: DM" in text
    assert "fixed:discount_10@email: not enough support: effective sample size" in text
    paths = result.write(tmp_path)
    assert paths["differences"].read_bytes()[:4] == b"\x89PNG"
    table = result.verdict_table()
    assert list(table["rank"]) == [1, 2, 3, 4]
    # finding 8: value axes say EUR, the learning curves' y axes are labelled
    (ax,) = result.plot().axes
    assert "EUR" in ax.get_xlabel()
    (ax,) = difference_plot(result).axes
    assert "EUR" in ax.get_xlabel()
    curves = learning_curve_plot(result).axes
    assert curves
    assert all("EUR per decision" in a.get_ylabel() for a in curves)

"""The README's data-science commands chain: ``simulate --in-process`` keeps its log in
./sim-data, which export, eval and uplift then read; a seeded run reproduces its numbers;
the estimates are printed next to the simulator's truth.

No sockets: every command runs in process, in a fresh working folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bandit.sim.driver import SimulationConfig, simulate_in_process, simulation_event_key
from offerbandit import simulate
from offerbandit.truth import check_against_truth, truth_matrix
from offline_eval.io.cli_export import main as export_main
from offline_eval.io.logs import load_sqlite
from offline_eval.study.cli_eval import main as eval_main
from offline_eval.uplift.cli_uplift import main as uplift_main

SMALL = ["--seed", "4", "--customers", "150", "--decisions", "250", "--no-progress"]


def test_the_readme_commands_chain_through_sim_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert simulate.main(["--in-process", *SMALL, "--report", "sim.json"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "sim-data" / "decisions.sqlite").exists()
    assert "next: offerbandit export|eval|uplift --log sim-data" in out
    assert "off-policy estimates against the simulator's truth (250 closed decisions" in out

    assert export_main(["--log", "sim-data", "--format", "parquet", "--out", "d.parquet"]) == 0
    assert "wrote 250 decisions" in capsys.readouterr().out
    assert eval_main(["--log", "sim-data", "--no-track", "--no-progress"]) == 0
    code = uplift_main(["--log", "sim-data", "--no-mlflow", "--no-progress", "--out", "u"])
    assert code == 0

    # the next simulation replaces the earlier simulation's log, never another log
    assert simulate.main(["--in-process", *SMALL, "--no-truth-check"]) == 0
    assert "replacing the earlier simulation's log in sim-data" in capsys.readouterr().err
    assert load_sqlite("sim-data", progress=False).n == 250
    served = tmp_path / "served"
    served.mkdir()
    (served / "decisions.sqlite").write_bytes((tmp_path / "sim-data/decisions.sqlite").read_bytes())
    assert simulate.main(["--in-process", *SMALL, "--data-dir", str(served)]) == 2
    assert "no simulation wrote" in capsys.readouterr().err


def test_a_seeded_run_reproduces_its_numbers_exactly(tmp_path: Path) -> None:
    config = SimulationConfig(seed=11, customers=200, decisions=400, control_share=0.2)
    a = simulate_in_process(config, tmp_path / "a").to_dict()
    b = simulate_in_process(config, tmp_path / "b").to_dict()
    for volatile in ("data_dir", "elapsed_seconds", "decisions_per_second"):
        a.pop(volatile), b.pop(volatile)
    assert a == b  # every figure, to the last digit
    la, lb = (
        load_sqlite(tmp_path / "a", progress=False),
        load_sqlite(tmp_path / "b", progress=False),
    )
    assert la.frame["event_id"].tolist() == lb.frame["event_id"].tolist()
    assert np.array_equal(la.pmf, lb.pmf)
    assert la.frame["reward"].tolist() == lb.frame["reward"].tolist()
    other = simulate_in_process(SimulationConfig(seed=12, customers=200, decisions=400))
    assert other.to_dict()["true_value_per_decision"] != a["true_value_per_decision"]
    assert simulation_event_key(11) != simulation_event_key(12)


def test_the_truth_is_computed_on_the_logged_decisions(tmp_path: Path) -> None:
    report = simulate_in_process(
        SimulationConfig(seed=5, customers=200, decisions=300, control_share=0.3), tmp_path
    )
    assert report.truth is not None
    lb = load_sqlite(tmp_path, progress=False)
    values = truth_matrix(lb, report.truth)
    chosen = lb.frame["chosen"].to_numpy()
    # the true value of the treatments the log chose is the report's own score of the run
    true_chosen = values[np.arange(lb.n), chosen].mean()
    assert true_chosen == pytest.approx(report.overall.true_value_per_decision, rel=1e-12)
    checks = {(c.policy, c.estimate.estimator): c for c in check_against_truth(lb, report.truth)}
    assert checks["control", "SNIPS"].truth == pytest.approx(
        report.overall.control_value_per_decision, rel=1e-12
    )
    assert checks["uniform", "DR"].truth == pytest.approx(
        report.overall.uniform_value_per_decision, rel=1e-12
    )
    assert report.truth.in_window is not None
    for c in checks.values():
        assert c.in_window is not None
        assert c.in_window < c.truth
        e = c.estimate
        assert c.covered == (e.ci_low <= c.in_window <= e.ci_high)
        assert ("covers the truth" in c.words()) == c.covered
        assert math.isfinite(e.ess)


def test_the_report_file_marks_the_folder_as_a_simulation(tmp_path: Path) -> None:
    assert simulate.main(["--in-process", *SMALL, "--data-dir", str(tmp_path / "s")]) == 0
    marker = json.loads((tmp_path / "s" / simulate.MARKER).read_text())
    assert marker["decisions"] == 250

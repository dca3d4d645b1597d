"""The simulator over real gRPC: a server on 127.0.0.1:0, a small time-compressed run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bandit.sim import World, WorldConfig
from offerbandit import simulate
from offerbandit.demo import run_offline_comparison
from offerbandit.simulate import GrpcSimulation, simulate_grpc
from server.client import OfferBanditClient
from tests.conftest import ServerFactory


def test_grpc_simulation_finishes_and_the_server_learned_it(make_server: ServerFactory) -> None:
    sim = GrpcSimulation(
        target="",
        seed=3,
        customers=150,
        decisions=300,
        duration_seconds=3.0,
        defer_share=0.2,
        progress=False,
        settle_seconds=10.0,
    )
    speedup = sim.speedup(World(seed=3, config=WorldConfig(n_customers=150)))
    window = sim.window_seconds / speedup
    running = make_server(
        attribution_window_seconds=window,
        close_interval_seconds=0.1,
        checkpoint_every_learns=50,
        checkpoint_every_seconds=0.5,
    )
    report = simulate_grpc(replace(sim, target=running.address))

    o = report.overall
    assert report.mode == "grpc"
    assert o.decisions == 300
    assert report.last.decisions == 60
    assert o.oracle_value_per_decision >= o.true_value_per_decision
    assert o.oracle_value_per_decision >= o.best_static_value_per_decision
    assert o.best_static_value_per_decision >= o.control_value_per_decision
    assert report.settings["server_window_seconds"] == pytest.approx(window, rel=1e-3)
    assert report.outcomes.get("rejected", 0) == 0
    assert report.outcomes.get("attributed", 0) > 0

    with OfferBanditClient(running.address) as client:
        stats = client.stats()
    assert stats.decisions == 300
    assert stats.activations == 300  # deferred decisions were activated too
    assert stats.outcomes_attributed == report.outcomes["attributed"]
    assert stats.outcomes_attributed > 0
    assert stats.pending_windows == 0
    assert stats.learned_decisions == stats.closed_decisions == 300
    assert report.service["learned"] == 300


def test_simulate_command_in_process_writes_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    argv = ["--in-process", "--seed", "2", "--customers", "200", "--decisions", "200"]
    code = simulate.main([*argv, "--no-progress", "--report", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["decisions"] == 200
    assert data["mode"] == "in-process"
    assert data["oracle_value_per_decision"] >= data["true_value_per_decision"]
    assert "incremental vs all-control" in capsys.readouterr().out


def test_the_demos_offline_comparison_lands_in_mlflow(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    data_dir = tmp_path / "data"
    argv = ["--in-process", "--seed", "4", "--customers", "200", "--decisions", "600"]
    assert simulate.main([*argv, "--no-progress", "--data-dir", str(data_dir)]) == 0
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = run_offline_comparison(data_dir / "decisions.sqlite", {"mlflow_tracking_uri": uri})
    assert "uniform" in summary
    assert "control" in summary
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("offerbandit-demo")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert [r.info.run_name for r in parents] == ["demo comparison"]
    assert len(children) == 6  # logged, uniform, control, the uplift replay, two VW replays
    assert all(any(k.startswith("DR") for k in r.data.metrics) for r in children)

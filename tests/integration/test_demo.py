"""``offerbandit demo`` end to end (a real server on 127.0.0.1:0, real gRPC, a short run):
it tracks in the MLflow store the README's ``mlflow ui`` line opens and prints the estimates
next to the simulator's truth."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bandit.choose import in_holdout
from offerbandit import demo


def test_the_demo_tracks_where_the_readme_looks_and_checks_its_estimates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = ["--decisions", "300", "--customers", "150", "--duration", "3", "--no-progress"]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out

    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in out  # the README's line
    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
    experiment = client.get_experiment_by_name("offerbandit-demo")
    assert experiment is not None
    assert client.search_runs([experiment.experiment_id])

    assert "off-policy estimates against the simulator's truth" in out
    table = out[out.index("off-policy estimates against the simulator's truth") :]
    for policy in ("logged", "uniform", "control"):
        assert f"  {policy} " in table
    assert "intervals cover it" in table
    assert "effective sample size" in table

    # one outbound campaign over the 150 simulated customers, a tenth held out by the hash
    assert "campaign demo-campaign: 150 customers decided in one ChooseBatchStream" in out
    (run,) = (tmp_path / "demo-data").iterdir()
    sends = pd.read_csv(run / "sendlist.csv", keep_default_na=False)
    assert len(sends) == 150
    assert (sends["error"] == "").all()
    held = {c for c in sends["customer_id"] if in_holdout(c, 0.1, "campaign:demo-campaign")}
    assert set(sends[sends["action"] == "holdout"]["customer_id"]) == held
    assert f"{len(held)} held out" in out
    report = json.loads((run / "report.json").read_text())
    assert report["mlflow_tracking_uri"] == "sqlite:///mlflow.db"
    assert report["decisions"] == 300

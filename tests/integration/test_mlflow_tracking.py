"""``offerbandit eval`` end to end: MLflow runs, metrics, artifacts, the registry, serving.

The log comes from a contact-averse simulated world (every recent contact costs purchase
probability) served by a deliberately bad model that favours the costliest treatments, with
a 30% control share: a model that prefers control then has strong offline evidence to be
promoted, and the gate can be seen to pass as well as to refuse.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from bandit.checkpoint import Checkpoint, CheckpointStore, read_checkpoint
from bandit.learner import DEFAULT_EXPLORATION, DEFAULT_INTERACTIONS, VWPolicy, vw_arguments
from bandit.records import Windows
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.sim import World, WorldConfig
from bandit.sim.driver import DriveOptions, InProcessBackend, drive
from bandit.types import Treatment
from bandit.vwformat import action_lines, shared_line
from offerbandit.campaign_local import open_local
from offline_eval.study import cli_eval
from offline_eval.tracking.registry import load_checkpoint, load_model_bytes
from offline_eval.tracking.runs import metric_key
from server.app import start_server
from server.client import OfferBanditClient
from server.settings import Settings

STUDY = "tracking-test"
MODEL = "offerbandit-test"
ARGS = vw_arguments(DEFAULT_EXPLORATION, DEFAULT_INTERACTIONS, seed=0)  # the server's defaults


def _train(world: World, cost: Callable[[Treatment], float], folder: Path) -> Path:
    """A model taught a fixed preference on the world's contexts (uniform logged actions)."""
    policy = VWPolicy(ARGS)
    treatments = world.treatments()
    lines = action_lines(treatments)
    rng = random.Random(0)
    for event in World(seed=99, config=world.config).events(1500):
        shared = shared_line(event.customer.features, event.trigger.type, event.trigger.features)
        k = rng.randrange(len(treatments))
        policy.learn(shared, lines, k, cost(treatments[k]), 1.0 / len(treatments))
    ckpt = Checkpoint(1, 0, policy.learned, ARGS, 0.0, policy.serialize())
    return CheckpointStore(folder).save(ckpt)


def _expensive(t: Treatment) -> float:
    if t.offer is None or t.channel is None:
        return 1.0
    return -(t.channel.contact_cost + 10.0 * t.offer.discount_rate + t.offer.fixed_cost)


def _prefers_control(t: Treatment) -> float:
    return -1.0 if t.is_control else 1.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    root = tmp_path_factory.mktemp("eval")
    world = World(
        seed=21,
        config=WorldConfig(
            n_customers=400, annoyance_per_contact=10.0, background_contacts_per_week=6.0
        ),
    )
    bad = _train(world, _expensive, root / "bad")
    good = _train(world, _prefers_control, root / "good")
    clock = ManualClock(world.clock)
    service = DecisionService(
        ServiceConfig(
            data_dir=root / "data",
            control_share=0.3,
            windows=Windows(default=2 * 86400.0),
            initial_model=read_checkpoint(bad).model,
            checkpoint_every_learns=500,
            checkpoint_every_seconds=math.inf,
            background=False,
            synchronous="OFF",
            # Event ids seed the sampling: a fixed prefix makes the log the same in every run.
            event_id_prefix="000000000000ea01",
        ),
        clock,
    )
    service.start()
    try:
        drive(world, InProcessBackend(service, clock), DriveOptions(decisions=2000), mode="test")
    finally:
        service.stop()
    return {
        "root": root,
        "log": root / "data",
        "bad": bad,
        "good": good,
        "uri": f"sqlite:///{root / 'mlflow.db'}",
    }


@pytest.fixture(scope="module")
def evaluated(setup: dict[str, Path | str]) -> str:
    """One tracked comparison with promotion; returns what the command printed."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli_eval.main(
            [
                "--log",
                str(setup["log"]),
                "--policy",
                "uniform",
                "--policy",
                "control",
                "--policy",
                f"model:{setup['good']}",
                "--policy",
                "vw:--squarecb -q co",
                "--estimators",
                "ips,snips,dr",
                "--study",
                STUDY,
                "--tracking-uri",
                str(setup["uri"]),
                "--register",
                MODEL,
                "--alias",
                "champion",
                "--no-progress",
            ]
        )
    assert rc == 0, out.getvalue()
    return out.getvalue()


def test_the_comparison_is_tracked(setup: dict[str, Path | str], evaluated: str) -> None:
    assert "logged policy's on-policy value" in evaluated
    client = MlflowClient(tracking_uri=str(setup["uri"]))
    exp = client.get_experiment_by_name(STUDY)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["rows"] == "2000"
    assert parent.data.params["log_source"].endswith("decisions.sqlite")
    assert parent.data.params["time_from"] < parent.data.params["time_to"]
    children = {
        r.info.run_name: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    vw_name = "vw:--squarecb -q co"
    model_name = f"model:{setup['good']}"
    assert set(children) == {"logged", "uniform", "control", model_name, vw_name}
    for child in children.values():
        m = child.data.metrics
        for est in ("IPS", "SNIPS", "DR"):
            assert m[f"{est}.ci_low"] <= m[f"{est}.value"] <= m[f"{est}.ci_high"]
        assert m["IPS.ess"] > 0
    assert children[vw_name].data.params["vw_args"].endswith("--squarecb -q co")
    assert children[model_name].data.tags["offerbandit.kind"] == "model"
    curve = client.get_metric_history(children[vw_name].info.run_id, "running.DR")
    assert len(curve) > 100
    assert [p.step for p in curve] == sorted(p.step for p in curve)
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"comparison.png", "learning_curves.png", "results.csv", "results.json"} <= parent_files
    model_files = {a.path for a in client.list_artifacts(children[vw_name].info.run_id, "model")}
    assert model_files == {"model/model.ckpt"}
    png = Path(client.download_artifacts(parent.info.run_id, "comparison.png", str(setup["root"])))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_promoted_model_is_registered_and_served(
    setup: dict[str, Path | str],
    evaluated: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    assert f"registered {MODEL} version 1 as models:/{MODEL}@champion" in evaluated
    uri = str(setup["uri"])
    client = MlflowClient(tracking_uri=uri)
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert str(version.version) == "1"
    # Which candidate wins is the promotion rule's call: usually model:good, on some logs the
    # vw: replay has the higher DR lower bound. Whichever it is, the registry and the server
    # hand out that child run's own checkpoint.
    run = client.get_run(version.run_id)
    winner = run.info.run_name
    assert version.tags["offerbandit.policy"] == winner
    assert f"promoted: {winner}: DR lower bound" in evaluated
    artifact = client.download_artifacts(run.info.run_id, "model/model.ckpt", str(tmp_path))
    promoted = read_checkpoint(Path(artifact))
    assert load_model_bytes(f"models:/{MODEL}@champion", uri) == promoted.model
    # A model: candidate's artifact is the checkpoint file it was given.
    good = f"model:{setup['good']}"
    (good_run,) = client.search_runs(
        [run.info.experiment_id], filter_string=f"attributes.run_name = '{good}'"
    )
    (tmp_path / "good").mkdir()
    good_artifact = client.download_artifacts(
        good_run.info.run_id, "model/model.ckpt", str(tmp_path / "good")
    )
    assert read_checkpoint(Path(good_artifact)).model == read_checkpoint(Path(setup["good"])).model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    settings = Settings.load(
        host="127.0.0.1",
        port=0,
        data_dir=Path(setup["root"]) / "served",
        model=f"models:/{MODEL}@champion",
    )
    running = start_server(settings, registry=load_checkpoint)
    try:
        assert running.service.config.initial_model == promoted.model
        assert running.service.vw_args == list(promoted.vw_args)
        world = World(seed=5, config=WorldConfig(n_customers=50))
        event = next(world.events(1))
        inputs = world.choose_inputs(event)
        with OfferBanditClient(running.address) as c:
            answer = c.choose(inputs.customer, inputs.trigger, inputs.offers, inputs.channels)
        assert sum(s.probability for s in answer.ranking) == pytest.approx(1.0)
        if winner == good:
            control = [s.probability for s in answer.ranking if s.control]
            assert control[0] > 0.9  # the champion prefers control, as it was taught
            assert running.service.vw_args == ARGS
    finally:
        running.stop(grace=1.0)
    # A campaign decided in its own process takes the registered model as serve does.
    monkeypatch.setenv("OFFERBANDIT_MODEL", f"models:/{MODEL}@champion")
    local = open_local(Path(setup["root"]) / "campaign")
    try:
        assert local.config.initial_model == promoted.model
        assert local.vw_args == list(promoted.vw_args)
    finally:
        local.stop()


def test_weak_evidence_is_not_promoted(setup: dict[str, Path | str], evaluated: str) -> None:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli_eval.main(
            [
                "--log",
                str(setup["log"]),
                "--policy",
                f"model:{setup['bad']}",
                "--estimators",
                "dr",
                "--study",
                f"{STUDY}-weak",  # its own experiment: STUDY keeps one comparison, in any order
                "--tracking-uri",
                str(setup["uri"]),
                "--register",
                "not-good-enough",
                "--no-progress",
            ]
        )
    assert rc == 0
    assert "not promoted" in out.getvalue()
    assert "nothing registered" in out.getvalue()
    client = MlflowClient(tracking_uri=str(setup["uri"]))
    assert [m.name for m in client.search_registered_models()] == [MODEL]
    assert np.isfinite(float(out.getvalue().split("lower bound ")[1].split()[0]))


def test_the_comparison_opens_as_a_ranked_verdict(
    setup: dict[str, Path | str], evaluated: str
) -> None:
    """Issue 20, findings 3, 6, 8: one ranked table printed and on the parent run, per-policy
    headline metrics, descriptions, tags, the differences plot, the classic view, the PNGs
    written by default, the registered model linked to its evaluation."""
    assert "verdict (DR, EUR per decision, 95% intervals; differences paired" in evaluated
    assert "not a confidence interval: DM" not in evaluated  # DM not asked for here
    client = MlflowClient(tracking_uri=str(setup["uri"]))
    exp = client.get_experiment_by_name(STUDY)
    assert exp is not None
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    description = parent.data.tags["mlflow.note.content"]
    assert "| # | policy | value [CI] | vs logged | vs control |" in description
    m = parent.data.metrics
    for policy in ("uniform", "control"):
        assert m[f"{policy}.vs_logged_low"] <= m[f"{policy}.vs_logged"]
        assert m[f"{policy}.vs_logged"] <= m[f"{policy}.vs_logged_high"]
        assert m[f"{policy}.ci_low"] <= m[f"{policy}.value"] <= m[f"{policy}.ci_high"]
    ranks = sorted(
        (int(m[f"{metric_key(r.info.run_name)}.rank"]), r.info.run_name)
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    )
    assert [r for r, _ in ranks] == list(range(1, len(ranks) + 1))
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    for child in children:
        assert "seconds" not in child.data.metrics
        assert child.data.tags["offerbandit.verdict"] in {
            "better", "worse", "not distinguishable", "not enough support", "baseline"
        }  # fmt: skip
        assert child.data.tags["mlflow.note.content"].startswith("**")
        assert child.data.metrics["verdict.ess"] > 0
    files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"differences.png", "verdict.csv"} <= files
    # the PNGs are written without --out, to eval/ in the data folder, and said so
    folder = Path(setup["log"]) / "eval"
    assert f"wrote {folder / 'results.csv'}" in evaluated
    for name in ("comparison.png", "differences.png", "learning_curves.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert version.tags["offerbandit.evaluation_run"] == parent.info.run_id
    assert f"#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}" in version.description
    assert parent.data.tags["offerbandit.registered"] == f"{MODEL}/{version.version}"


def test_eval_mixes_in_the_services_control_share_by_default() -> None:
    """Issue 20, finding 5: the default is the service's (ServiceConfig), not 0."""
    ns = cli_eval.build_parser().parse_args(["--log", "data"])
    assert ns.control_share == ServiceConfig(data_dir=Path()).control_share == 0.05

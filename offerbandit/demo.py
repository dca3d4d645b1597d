"""``offerbandit demo``: start a server, simulate a marketing world through it, summarise.

The server runs on embedded defaults in a fresh folder under ``./demo-data`` (port 0, so
it never fights over a port), with attribution windows shortened to match the compressed
simulated time: two simulated days become a few real seconds. A few thousand decisions go
through real gRPC (Choose, Activate for a share of deferred decisions, RecordOutcome(s) with
``occurred_at``), the server closes windows and learns on its own threads, and the run is
scored with the world's truth: realised value against the oracle, and incremental value and
revenue against all-control. The JSON report and the decision log stay in the run folder.

Then the logged decisions are evaluated offline (logged policy, uniform, all-control and two
VW settings replayed through the log), the comparison is tracked in MLflow — in the store
``offerbandit eval`` and ``uplift`` use too (``$MLFLOW_TRACKING_URI``, else
``sqlite:///mlflow.db`` in the current folder), so ``mlflow ui --backend-store-uri
sqlite:///mlflow.db`` shows them all — and the estimates of the logged policy, uniform and
all-control are printed next to the simulator's truth on the same decisions.

A seed fixes the world and the server's sampling (its event-id key is derived from the
seed), but the demo runs over real gRPC in real time: which model answers a Choose depends
on when the server's learner publishes, so two runs differ a little.
``offerbandit simulate --in-process`` is reproducible to the last digit.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bandit.learner import DEFAULT_EXPLORATION, DEFAULT_INTERACTIONS
from bandit.sim import World, WorldConfig
from bandit.sim.driver import DEFAULT_WINDOW_SECONDS, SimulationReport, simulation_event_key
from offerbandit.simulate import GrpcSimulation, simulate_grpc
from server.app import start_server
from server.settings import Settings

log = logging.getLogger(__name__)


def run_offline_comparison(log_path: Path, report: Mapping[str, Any], progress: bool = True) -> str:
    """Compare policies offline on the demo's decision log, tracked in MLflow at
    ``report["mlflow_tracking_uri"]``; returns the printable summary."""
    from offline_eval.study.study import run_offline_comparison as compare

    return compare(log_path, report, progress)


def _tracking_uri(given: str | None) -> str:
    """The MLflow store the demo logs to: ``given``, else eval's default."""
    from offline_eval.tracking.tracker import default_tracking_uri

    return given or default_tracking_uri()


def _truth_check(log_path: Path, report: SimulationReport) -> str:
    """Estimates of the logged policy, uniform and all-control next to the truth."""
    from offerbandit.truth import truth_report

    try:
        return truth_report(log_path, report.truth, report.outcomes)
    except Exception as exc:  # the demo's report must survive a failing check
        log.warning("truth check failed: %s", exc, exc_info=True)
        return f"the estimates could not be checked against the truth: {exc}"


def _campaign(address: str, world: World, out: Path) -> str:
    """One outbound campaign through the running server (:mod:`offerbandit.demo_campaign`)."""
    from offerbandit.demo_campaign import demo_campaign

    try:
        return demo_campaign(address, world, out)[1]
    except Exception as exc:  # the demo's report must survive a failing campaign
        log.warning("the demo campaign failed: %s", exc, exc_info=True)
        return f"the demo campaign failed: {exc}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="offerbandit demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--decisions", type=int, default=4000)
    p.add_argument("--customers", type=int, default=500,
                   help="fewer customers = more simulated days per decision, so more of the "
                   "run is learned (per-customer dynamics do not change)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, default=60.0,
                   help="wall seconds the decisions are spread over")  # fmt: skip
    p.add_argument("--data-dir", type=Path, default=Path("demo-data"),
                   help="a fresh run folder is made inside")  # fmt: skip
    p.add_argument("--report", type=Path, help="default: <run folder>/report.json")
    p.add_argument("--policy", choices=["uplift", "vw"], default="uplift",
                   help="the live policy's kind (the service's default: uplift)")  # fmt: skip
    p.add_argument("--uplift-options", default="", help="uplift policy options")
    p.add_argument(
        "--exploration",
        default=DEFAULT_EXPLORATION,
        help='VW exploration (--policy vw); write it with "=": --exploration="--squarecb"',
    )
    p.add_argument("--interactions", default=",".join(DEFAULT_INTERACTIONS))
    p.add_argument("--control-share", type=float, default=0.05)
    p.add_argument(
        "--tracking-uri",
        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db, the one "
        "offerbandit eval and the README's mlflow ui line use)",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str]) -> int:
    ns = parser().parse_args(list(argv))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    started = time.perf_counter()
    run_dir = (ns.data_dir / time.strftime("run-%Y%m%d-%H%M%S")).resolve()
    run_dir.mkdir(parents=True, exist_ok=False)
    sim = GrpcSimulation(
        target="",
        seed=ns.seed,
        customers=ns.customers,
        decisions=ns.decisions,
        duration_seconds=ns.duration,
        window_seconds=DEFAULT_WINDOW_SECONDS,
        defer_share=0.1,
        progress=not ns.no_progress,
    )
    world = World(seed=ns.seed, config=WorldConfig(n_customers=ns.customers))
    speedup = sim.speedup(world)
    window = DEFAULT_WINDOW_SECONDS / speedup
    interactions = [x.strip() for x in ns.interactions.split(",") if x.strip()]
    settings = Settings.load(
        host="127.0.0.1",
        port=0,
        data_dir=run_dir / "server",
        seed=ns.seed,
        event_id_prefix=simulation_event_key(ns.seed),
        policy=ns.policy,
        uplift_options=ns.uplift_options,
        exploration=ns.exploration,
        interactions=interactions,
        control_share=ns.control_share,
        attribution_window_seconds=window,
        close_interval_seconds=min(0.25, window / 10),
        checkpoint_every_learns=100,
        checkpoint_every_seconds=1.0,
        log_level="WARNING",
    )
    print(f"offerbandit demo: run folder {run_dir}")
    running = start_server(settings)
    print(
        f"server on {running.address} (policy {running.service.policy_id}); "
        f"{ns.decisions} decisions from {ns.customers} customers over ~{ns.duration:g} s, "
        f"time × {speedup:,.0f}: 2 simulated days = {window:.1f} s attribution window"
    )
    try:
        sim = replace(sim, target=running.address)
        extra = {
            "policy": ns.policy,
            "uplift_options": ns.uplift_options,
            "exploration": ns.exploration,
            "interactions": interactions,
            "control_share": ns.control_share,
        }
        report = simulate_grpc(sim, extra)
        campaign_line = _campaign(running.address, world, run_dir / "sendlist.csv")
    finally:
        running.stop(grace=2.0)
    log_path = settings.service_config().log_path
    tracking = _tracking_uri(ns.tracking_uri)
    data = report.to_dict()
    data["decision_log"] = str(log_path)
    data["mlflow_tracking_uri"] = tracking
    report_path = ns.report or run_dir / "report.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    print()
    print(report.summary())
    print(campaign_line)
    try:
        offline = run_offline_comparison(log_path, data, not ns.no_progress)
    except Exception as exc:  # the simulation's report must survive a failing evaluation
        log.warning("offline evaluation failed: %s", exc, exc_info=True)
        print(f"offline evaluation failed: {exc}")
        offline = None
        data["offline_evaluation_error"] = str(exc)
    report_path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    print(f"\nreport: {report_path}\ndecision log: {log_path}")
    if offline is None:
        print("Once it works, open the MLflow UI with:")
    else:
        print(f"offline evaluation:\n{offline}")
        print("\n" + _truth_check(log_path, report))
        print("\nOpen the MLflow UI (experiment offerbandit-demo) with:")
    print(f"  mlflow ui --backend-store-uri {tracking}")
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0


__all__ = [
    "main",
    "parser",
    "run_offline_comparison",
]

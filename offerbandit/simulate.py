"""``offerbandit simulate``: drive the decision service with the simulated marketing world.

Two transports, one event loop (:func:`bandit.sim.driver.drive`):

* ``--target HOST:PORT`` drives a running server over real gRPC: Choose (a share deferred,
  then Activate), and RecordOutcome / RecordOutcomes at each purchase's compressed time with
  ``occurred_at`` set. Simulated time runs ``speedup`` times faster than the wall clock, so the
  server's attribution windows (real seconds) must be the simulated windows divided by the
  speed-up; windows close on the server's closer thread. The run stops by itself: it lasts
  about ``--duration`` seconds, plus a drain of one window for the last outcomes.
* ``--in-process`` (the default without ``--target``) runs a ``DecisionService`` on a manual
  clock in this process: no network, no fsync, windows closed and learned as simulated time
  advances. The decision log stays in ``--data-dir`` (default ``./sim-data``, replaced by the
  next simulation there) for ``offerbandit export|eval|uplift --log sim-data``.

Either way the report (``--report FILE.json``) scores the run with the world's truth on the
events it saw: realised and expected value per decision, oracle, uniform, all-control, best
static rule, incremental value and revenue against all-control, overall and for the last 20 %;
and the logged policy, uniform random and all-control are estimated off-policy from the log
and printed next to their true values (``--no-truth-check`` skips it).

A seed makes an in-process run reproducible to the last digit: the world, the service's
sampling (its event-id key is derived from the seed) and the learner's order are all seeded.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bandit.contact import ContactPolicy
from bandit.contact.policy import PolicyError
from bandit.learner import DEFAULT_EXPLORATION, DEFAULT_INTERACTIONS
from bandit.records import OutcomeInput
from bandit.sim import World, WorldConfig
from bandit.sim.driver import (
    DEFAULT_WINDOW_SECONDS,
    Choice,
    DriveOptions,
    SimulationConfig,
    SimulationReport,
    drive,
    simulate_in_process,
)
from bandit.sim.world import ChooseInputs
from bandit.types import TreatmentRef
from server.client import OfferBanditClient
from server.pb.offerbandit.v1 import decision_service_pb2 as pb

log = logging.getLogger(__name__)

_PREFIX = "OUTCOME_STATUS_"
DEFAULT_SIM_DIR = "sim-data"
"""Where ``simulate --in-process`` keeps its decision log unless ``--data-dir`` says."""
MARKER = "simulation.json"
"""Written into a simulation's data folder (the report): a later simulation may replace
that folder's log, never a log without it."""


def _status(value: int) -> str:
    return pb.OutcomeStatus.Name(value).removeprefix(_PREFIX).lower()  # type: ignore[arg-type]


class GrpcBackend:
    """A running server seen through :class:`OfferBanditClient`; backend time is wall time."""

    def __init__(self, client: OfferBanditClient, *, settle_seconds: float = 10.0) -> None:
        self.client = client
        self.settle_seconds = settle_seconds

    def now(self) -> float:
        return time.time()

    def wait_until(self, t: float) -> None:
        delay = t - time.time()
        if delay > 0:
            time.sleep(delay)

    def choose(self, inputs: ChooseInputs, excluded: Sequence[TreatmentRef], defer: bool) -> Choice:
        r = self.client.choose(
            inputs.customer,
            inputs.trigger,
            inputs.offers,
            inputs.channels,
            excluded=excluded,
            defer_activation=defer,
            campaign_id=inputs.campaign_id,
            campaign_holdout_share=inputs.campaign_holdout_share,
        )
        chosen = TreatmentRef(r.chosen.offer_id, r.chosen.channel_id)
        return Choice(r.event_id, chosen, r.propensity, time.time())

    def activate(self, event_id: str, at: float) -> None:
        self.client.activate(event_id, at)

    def record_outcomes(self, outcomes: Sequence[OutcomeInput]) -> list[str]:
        if len(outcomes) == 1:
            o = outcomes[0]
            reply = self.client.record_outcome(
                o.outcome_id,
                event_id=o.event_id,
                customer_id=o.customer_id,
                type=o.type,
                revenue=o.revenue,
                occurred_at=o.occurred_at,
            )
            return [_status(reply.status)]
        return [_status(r.status) for r in self.client.record_outcomes(outcomes).results]

    def tick(self) -> None:
        """The server closes windows and learns on its own threads."""

    def finish(self, until: float) -> None:
        """Wait for ``until``, then (bounded) for the server to close and learn what is due."""
        self.wait_until(until)
        deadline = time.monotonic() + self.settle_seconds
        while time.monotonic() < deadline:
            s = self.client.stats()
            if s.pending_windows == 0 and s.learned_decisions >= s.closed_decisions:
                return
            time.sleep(0.2)
        log.info("the server still has open windows or unlearned decisions; not waiting longer")

    def stats(self) -> dict[str, Any]:
        s = self.client.stats()
        return {
            "decisions": s.decisions,
            "activations": s.activations,
            "outcomes": {
                "attributed": s.outcomes_attributed,
                "unattributed": s.outcomes_unattributed,
                "late": s.outcomes_late,
                "duplicate": s.outcomes_duplicate,
            },
            "attributed_revenue": round(s.attributed_revenue, 2),
            "closed": s.closed_decisions,
            "pending_windows": s.pending_windows,
            "learned": s.learned_decisions,
            "model_version": s.model_version,
            "incremental": _incremental(s),
        }


def _incremental(s: pb.Stats) -> dict[str, Any] | None:
    """GetStats' live incremental estimate, as the report keeps it (None before it has one)."""
    if not s.HasField("incremental"):
        return None
    e = s.incremental
    return {
        "decisions": e.decisions,
        "per_decision": e.per_decision,
        "ci": [e.ci_low, e.ci_high],
        "detectable_per_decision": e.detectable_per_decision,
        "method": e.method,
    }


@dataclass(frozen=True, slots=True)
class GrpcSimulation:
    """A time-compressed simulation against a running server."""

    target: str
    seed: int = 0
    customers: int = 5000
    decisions: int = 5000
    duration_seconds: float = 60.0
    """Wall-clock time over which the decisions are spread (sets the speed-up)."""
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    """The simulated attribution window the server's (real-second) window stands for."""
    defer_share: float = 0.1
    attribution: Literal["event", "customer"] = "event"
    drain_seconds: float | None = None
    """Wall seconds to keep sending outcomes after the last decision (default: one window)."""
    settle_seconds: float = 10.0
    progress: bool = True

    def speedup(self, world: World) -> float:
        """Simulated seconds per wall second, so the run lasts ``duration_seconds``."""
        span = self.decisions / world.event_rate
        return max(span / self.duration_seconds, 1.0)


def simulate_grpc(sim: GrpcSimulation, extra: dict[str, Any] | None = None) -> SimulationReport:
    """Drive the server at ``sim.target`` over gRPC and score the run."""
    world = World(seed=sim.seed, config=WorldConfig(n_customers=sim.customers))
    speedup = sim.speedup(world)
    window_real = sim.window_seconds / speedup
    drain = window_real + 1.0 if sim.drain_seconds is None else sim.drain_seconds
    settings = {
        "target": sim.target,
        "seed": sim.seed,
        "customers": sim.customers,
        "decisions": sim.decisions,
        "speedup": round(speedup, 1),
        "window_seconds": sim.window_seconds,
        "server_window_seconds": round(window_real, 3),
        "defer_share": sim.defer_share,
        "attribution": sim.attribution,
        **(extra or {}),
    }
    with OfferBanditClient(sim.target) as client:
        client.wait_ready(timeout=30.0)
        options = DriveOptions(
            decisions=sim.decisions,
            speedup=speedup,
            defer_share=sim.defer_share,
            attribution=sim.attribution,
            drain_seconds=drain,
            seed=sim.seed,
            progress=sim.progress,
            window_seconds=sim.window_seconds,
        )
        backend = GrpcBackend(client, settle_seconds=sim.settle_seconds)
        return drive(world, backend, options, mode="grpc", settings=settings)


# ---- command line ------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="offerbandit simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--target", metavar="HOST:PORT", help="a running server (gRPC mode)")
    where.add_argument(
        "--in-process", action="store_true", help="no network: a service in this process"
    )
    p.add_argument("--seed", type=int, default=0, help="world seed (and service seed in process)")
    p.add_argument("--customers", type=int, default=5000)
    p.add_argument("--decisions", type=int, default=10_000)
    p.add_argument(
        "--window-hours",
        type=float,
        default=DEFAULT_WINDOW_SECONDS / 3600,
        help="simulated attribution window (in process: the service's; over gRPC: what the "
        "server's window stands for)",
    )
    p.add_argument("--defer-share", type=float, default=None,
                   help="share of deferred decisions, activated after (default 0.1 over gRPC, "
                   "0 in process)")  # fmt: skip
    p.add_argument(
        "--attribution",
        choices=["event", "customer"],
        default="event",
        help="outcomes name the event id, or only the customer (last touch)",
    )
    pol = p.add_argument_group("policy (in process; a running server uses its own settings)")
    pol.add_argument("--policy", choices=["uplift", "vw"], default="uplift",
                     help="the live policy's kind (the service's default: uplift)")  # fmt: skip
    pol.add_argument(
        "--uplift-options",
        default="",
        help='uplift policy options; write them with "=": --uplift-options="--kappa 1.5"',
    )
    pol.add_argument(
        "--exploration",
        default=DEFAULT_EXPLORATION,
        help='VW exploration (--policy vw); write it with "=": --exploration="--squarecb"',
    )
    pol.add_argument(
        "--interactions",
        default=",".join(DEFAULT_INTERACTIONS),
        help='comma-separated namespace pairs, "" for none',
    )
    pol.add_argument("--control-share", type=float, default=0.05)
    pol.add_argument(
        "--contact-policy",
        type=Path,
        metavar="FILE",
        help="a contact-policy file (TOML) applied before scoring: compare cap settings with "
        "the world's truth before switching them on (docs/contact-policies.md)",
    )
    o = p.add_argument_group("outbound mode (in process)")
    o.add_argument(
        "--campaign-every-days",
        type=float,
        metavar="DAYS",
        help="also run an outbound campaign over every customer this often, at 09:00 "
        "(its decisions scored apart, its holdout logged: offerbandit uplift --campaign "
        "sim-campaign-N)",
    )
    o.add_argument("--campaign-holdout", type=float, default=0.1, help="each campaign's holdout")
    g = p.add_argument_group("gRPC mode")
    g.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="wall seconds the decisions are spread over (sets the speed-up)",
    )
    g.add_argument(
        "--drain-seconds",
        type=float,
        default=None,
        help="wall seconds to keep sending outcomes after the last decision",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help=f"in process: where the decision log is kept for export, eval and uplift (default "
        f"./{DEFAULT_SIM_DIR}, replaced by the next run); over gRPC: the server's data folder, "
        "to check the off-policy estimates against the truth",
    )
    p.add_argument("--report", type=Path, help="write the JSON report here")
    p.add_argument(
        "--no-truth-check",
        action="store_true",
        help="skip estimating logged, uniform and all-control from the log against the truth",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


_LOG_FILES = ("decisions.sqlite", "decisions.sqlite-wal", "decisions.sqlite-shm", MARKER)


def fresh_data_dir(path: Path) -> str | None:
    """Make ``path`` ready for a new simulated log: an earlier simulation's log (its folder
    holds :data:`MARKER`) is removed; a log without the marker (a server's) is refused.
    Returns an error message, or ``None`` when ready."""
    if not (path / "decisions.sqlite").exists():
        return None
    if not (path / MARKER).exists():
        return (
            f"{path} holds a decision log that no simulation wrote; give another --data-dir "
            "(a simulation never writes into a server's log)"
        )
    for name in _LOG_FILES:
        (path / name).unlink(missing_ok=True)
    shutil.rmtree(path / "checkpoints", ignore_errors=True)
    print(f"replacing the earlier simulation's log in {path}", file=sys.stderr)
    return None


def main(argv: Sequence[str]) -> int:
    ns = parser().parse_args(list(argv))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    interactions = tuple(x.strip() for x in ns.interactions.split(",") if x.strip())
    window = ns.window_hours * 3600.0
    if ns.target:
        policy_flags = (
            "--policy", "--uplift-options", "--exploration", "--interactions", "--control-share",
            "--contact-policy",
        )  # fmt: skip
        if any(a.split("=")[0] in policy_flags for a in argv):
            print("note: a running server uses its own policy settings; ignoring "
                  + ", ".join(policy_flags), file=sys.stderr)  # fmt: skip
        sim = GrpcSimulation(
            target=ns.target,
            seed=ns.seed,
            customers=ns.customers,
            decisions=ns.decisions,
            duration_seconds=ns.duration,
            window_seconds=window,
            defer_share=0.1 if ns.defer_share is None else ns.defer_share,
            attribution=ns.attribution,
            drain_seconds=ns.drain_seconds,
            progress=not ns.no_progress,
        )
        world = World(seed=ns.seed, config=WorldConfig(n_customers=ns.customers))
        speedup = sim.speedup(world)
        print(
            f"simulating {ns.decisions} decisions over ~{ns.duration:g} s "
            f"(speed-up {speedup:,.0f}×): the server's attribution window should be "
            f"≈ {window / speedup:.2f} s (OFFERBANDIT_ATTRIBUTION_WINDOW_SECONDS)",
            file=sys.stderr,
        )
        report = simulate_grpc(sim)
    else:
        if ns.contact_policy is not None:
            try:  # refuse a bad file before the run, in one line
                ContactPolicy.load(ns.contact_policy)
            except PolicyError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        data_dir = ns.data_dir or Path(DEFAULT_SIM_DIR)
        problem = fresh_data_dir(data_dir)
        if problem:
            print(f"offerbandit simulate: {problem}", file=sys.stderr)
            return 2
        config = SimulationConfig(
            seed=ns.seed,
            customers=ns.customers,
            decisions=ns.decisions,
            policy=ns.policy,
            uplift_options=ns.uplift_options,
            exploration=ns.exploration,
            interactions=interactions,
            control_share=ns.control_share,
            window_seconds=window,
            defer_share=0.0 if ns.defer_share is None else ns.defer_share,
            attribution=ns.attribution,
            contact_policy=None if ns.contact_policy is None else str(ns.contact_policy),
            campaign_every_days=ns.campaign_every_days,
            campaign_holdout=ns.campaign_holdout,
            progress=not ns.no_progress,
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / MARKER).write_text(json.dumps({"mode": "in-process", **config.settings()}))
        report = simulate_in_process(config, data_dir)
        report.write(data_dir / MARKER)
    print(report.summary())
    if ns.report:
        report.write(ns.report)
        print(f"report: {ns.report}")
    if ns.data_dir is not None or not ns.target:
        log_dir = ns.data_dir or Path(DEFAULT_SIM_DIR)
        if not ns.no_truth_check:
            from offerbandit.truth import truth_report  # pandas, only when used

            try:
                text = truth_report(log_dir, report.truth, report.outcomes)
            except (OSError, ValueError) as exc:  # the run's report is out already
                text = f"the estimates could not be checked against the truth: {exc}"
            print()
            print(text)
        print(
            f"\ndecision log: {log_dir / 'decisions.sqlite'} — next: offerbandit export|eval|"
            f"uplift --log {log_dir}"
        )
    return 0 if math.isfinite(report.overall.true_value_per_decision) else 1


__all__ = [
    "DEFAULT_SIM_DIR",
    "MARKER",
    "GrpcBackend",
    "GrpcSimulation",
    "fresh_data_dir",
    "main",
    "parser",
    "simulate_grpc",
]

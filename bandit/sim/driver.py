"""Driving the decision service with the simulated world, and scoring the run with its truth.

One event loop serves two transports. A :class:`Backend` is what the loop talks to: the
in-process :class:`InProcessBackend` here (a :class:`~bandit.service.DecisionService` on a
:class:`~bandit.service.ManualClock`, no threads, no fsync: simulated time is free), or the
gRPC backend of ``offerbandit/simulate.py`` (a running server, real seconds, time compressed).

For every world event the loop calls Choose (optionally deferred, then Activate), applies the
chosen treatment to the world, and schedules the sampled purchase as an outcome at its
(compressed) time. Outcomes are delivered in time order, with ``occurred_at`` set, so an
outcome whose delay passes the attribution window arrives late, as in production. The
in-process backend closes windows and learns as simulated time advances.

The run is scored on the very events it saw (their fatigue included) with the world's truth:
the expected value of the treatments actually chosen, against the oracle, uniform random,
all-control and the best static rule per lifecycle stage, overall and over the last 20 %.

>>> report = simulate_in_process(SimulationConfig(seed=3, customers=200, decisions=120))
>>> report.overall.decisions, report.last.decisions
(120, 24)
>>> report.overall.oracle_value_per_decision >= report.overall.true_value_per_decision
True
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.contact import ContactPolicy
from bandit.eligibility import ChooseInput
from bandit.learner import DEFAULT_EXPLORATION, DEFAULT_INTERACTIONS
from bandit.records import Incremental, OutcomeInput, OutcomeResult, Windows
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.sim._catalog import CAMPAIGN_TRIGGER
from bandit.sim.outbound import Outbound, with_campaigns
from bandit.sim.world import ChooseInputs, World, WorldConfig, WorldEvent
from bandit.types import Customer, TreatmentRef

HOUR = 3600.0
DAY = 24 * HOUR
DEFAULT_WINDOW_SECONDS = 2 * DAY
"""One attribution window for every channel and control, in simulated seconds.

One window for all keeps the reward faithful to the world's truth: with a short banner
window, the banner's *baseline* purchases (median 6 h) would fall outside it while
control's were counted. Two days hold ≈ 96 % of baseline purchases and of e-mail's.
"""
LAST_SHARE = 0.2
"""The tail of a run scored separately: the last 20 % of decisions."""

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def simulation_event_key(seed: int) -> str:
    """The event-id key (``event_id_prefix``) of a simulation with ``seed``: 16 hex digits
    derived from the seed, so a seeded run draws the same event ids, hence the same sampling
    (seeded from server seed and event id), every time. A live server draws its key at random.

    >>> simulation_event_key(0) == simulation_event_key(0) != simulation_event_key(1)
    True
    >>> len(simulation_event_key(0))
    16
    """
    return hashlib.blake2b(f"offerbandit-simulation:{seed}".encode(), digest_size=8).hexdigest()


# ---- eligibility a frontend knows ------------------------------------------------------------


def reachable_channels(world: World, customer: Customer) -> tuple[bool, ...]:
    """Per channel of ``world.channels``: can the customer be reached on it at all?

    A frontend knows its consent flags and whether the customer has the app; treatments on
    other channels can never be delivered and are always worse than control (see
    ``docs/simulator.md``), so the driver excludes them, as a CRM would.
    """
    f = customer.features
    out = []
    for m in world.channel_models:
        ok = m.consent_feature is None or f.get(m.consent_feature) is True
        if m.needs_app and f.get("has_app") is not True:
            ok = False
        out.append(ok)
    return tuple(out)


def eligible_mask(world: World, event: WorldEvent) -> BoolArray:
    """A ``[K]`` mask over ``world.treatments()``: control and the reachable channels."""
    reach = np.array(reachable_channels(world, event.customer), dtype=np.bool_)
    return np.concatenate(([True], np.tile(reach, len(world.offers))))


def exclusions(world: World, event: WorldEvent) -> tuple[TreatmentRef, ...]:
    """The treatments a frontend excludes for ``event`` (unreachable channels)."""
    reach = reachable_channels(world, event.customer)
    return tuple(
        TreatmentRef(o.id, c.id)
        for o in world.offers
        for c, ok in zip(world.channels, reach, strict=True)
        if not ok
    )


# ---- scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValueSummary:
    """Value per decision (EUR) of a run and of reference policies on the same events.

    ``true_value`` is the expected net value of the treatments actually chosen; the
    references are exact expectations from the world's truth on the same contexts.
    """

    decisions: int
    net_value_per_decision: float
    """Realised: the mean sampled net value of the chosen treatments (noisy)."""
    true_value_per_decision: float
    """Expected net value of the chosen treatments (noise-free score of the run)."""
    oracle_value_per_decision: float
    """Each event gets its best eligible treatment (knows the hidden traits)."""
    uniform_value_per_decision: float
    """Uniform random over each event's eligible treatments, control included."""
    control_value_per_decision: float
    """Never contact anyone: the baseline revenue."""
    best_static_value_per_decision: float
    """One treatment per lifecycle stage, the best with hindsight (control where ineligible)."""
    incremental_value_per_decision: float
    """``true_value - control_value``: net value added over doing nothing."""
    incremental_value_total: float
    incremental_revenue_per_decision: float
    """Expected gross revenue of the chosen treatments minus control's (before costs)."""
    incremental_revenue_total: float
    measured_incremental_value_per_decision: float | None
    """What the business can measure: realised value minus the control arm's self-normalised
    inverse-propensity estimate of all-control (``None`` without control decisions)."""
    share_of_oracle: float
    """``true / oracle`` value per decision."""
    share_of_oracle_gain: float
    """``(true - control) / (oracle - control)``: how much of the reachable gain was taken."""
    gain_over_best_static: float
    """``true / best_static - 1``."""
    regret_vs_oracle_total: float
    """Σ over decisions of (oracle value − expected value of the chosen treatment)."""
    control_decisions: int
    measured_incremental_ci: tuple[float, float] | None = None
    """95% interval of ``measured_incremental_value_per_decision`` (delta method on the
    paired per-decision scores: the realised mean and the control arm's SNIPS share rows)."""


def _nan_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def _ratio(a: float, b: float) -> float:
    return a / b if b != 0 else math.nan


def expected_values(
    world: World, events: Sequence[WorldEvent], window_seconds: float | None = None
) -> FloatArray:
    """The world's expected net value of every treatment (columns of ``world.treatments()``)
    for each event: ``[n, K]``, computed in chunks (``window_seconds``: of the purchases
    within that attribution window only)."""
    values = np.empty((len(events), len(world.treatments())))
    step = 8192
    for lo in range(0, len(events), step):
        chunk = events[lo : lo + step]
        values[lo : lo + step] = world.expected_values(chunk, window_seconds=window_seconds)
    return values


def score(
    world: World,
    events: Sequence[WorldEvent],
    chosen: NDArray[np.intp],
    realised: FloatArray,
    propensity: FloatArray,
    eligible: BoolArray,
    values: FloatArray | None = None,
) -> tuple[ValueSummary, dict[str, str]]:
    """Score a run on ``events``: chosen columns of ``world.treatments()`` per event, the
    realised net values, logged propensities and the ``[n, K]`` eligibility masks
    (``values``: the events' :func:`expected_values`, when already computed).

    Returns the summary and the hindsight static rule (stage → treatment key).
    """
    n = len(events)
    if n == 0:
        raise ValueError("no decisions to score")
    if values is None:
        values = expected_values(world, events)
    revenues = np.empty_like(values)
    step = 8192
    for lo in range(0, n, step):
        revenues[lo : lo + step] = world.expected_revenues(events[lo : lo + step])
    rows = np.arange(n)
    control = values[:, 0]
    masked = np.where(eligible, values, -np.inf)
    oracle = masked.max(axis=1)
    uniform = np.where(eligible, values, 0.0).sum(axis=1) / eligible.sum(axis=1)
    true = values[rows, chosen]
    # the static rule: one treatment per stage; where it is ineligible the customer gets control
    effective = np.where(eligible, values, control[:, None])
    stages = np.array([world.stage_of(e) for e in events])
    static_total = 0.0
    rule: dict[str, str] = {}
    for stage in world.stages:
        sel = stages == stage
        if not sel.any():
            continue
        sums = effective[sel].sum(axis=0)
        best = int(np.argmax(sums))
        rule[stage] = world.treatments()[best].ref.key
        static_total += float(sums[best])
    is_control = chosen == 0
    weights = np.where(is_control, 1.0 / propensity, 0.0)
    measured = math.nan
    measured_ci: tuple[float, float] | None = None
    if weights.sum() > 0:
        snips_control = float((weights * realised).sum() / weights.sum())
        measured = float(realised.mean()) - snips_control
        if n > 1:
            # realised_i − (ĉ + w_i·(realised_i − ĉ)/w̄): the difference's linearised scores
            psi = realised - snips_control - weights * (realised - snips_control) / weights.mean()
            half = 1.959963984540054 * float(np.std(psi, ddof=1)) / math.sqrt(n)
            measured_ci = (measured - half, measured + half)
    tv, cv, ov = float(true.mean()), float(control.mean()), float(oracle.mean())
    static = static_total / n
    inc_rev = revenues[rows, chosen] - revenues[:, 0]
    summary = ValueSummary(
        decisions=n,
        net_value_per_decision=float(realised.mean()),
        true_value_per_decision=tv,
        oracle_value_per_decision=ov,
        uniform_value_per_decision=float(uniform.mean()),
        control_value_per_decision=cv,
        best_static_value_per_decision=static,
        incremental_value_per_decision=tv - cv,
        incremental_value_total=float((true - control).sum()),
        incremental_revenue_per_decision=float(inc_rev.mean()),
        incremental_revenue_total=float(inc_rev.sum()),
        measured_incremental_value_per_decision=_nan_none(measured),
        share_of_oracle=_ratio(tv, ov),
        share_of_oracle_gain=_ratio(tv - cv, ov - cv),
        gain_over_best_static=_ratio(tv, static) - 1.0,
        regret_vs_oracle_total=float((oracle - true).sum()),
        control_decisions=int(is_control.sum()),
        measured_incremental_ci=measured_ci,
    )
    return summary, rule


# ---- the backend protocol ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Choice:
    """What the loop needs from one Choose answer."""

    event_id: str
    treatment: TreatmentRef
    propensity: float
    decided_at: float
    """Backend time at which the decision existed (no earlier than the logged ``decided_at``)."""


class Backend(Protocol):
    """A decision service the loop drives; all times are the backend's (seconds)."""

    def now(self) -> float:
        """The backend's current time."""

    def wait_until(self, t: float) -> None:
        """Let backend time reach ``t`` (sleep, or move a manual clock)."""

    def choose(
        self, inputs: ChooseInputs, excluded: Sequence[TreatmentRef], defer: bool
    ) -> Choice: ...

    def activate(self, event_id: str, at: float) -> None: ...

    def record_outcomes(self, outcomes: Sequence[OutcomeInput]) -> list[str]:
        """Record outcomes; one status per outcome (``attributed``, ``late`` …)."""

    def tick(self) -> None:
        """Give the service a chance to close windows and learn (no-op for a live server)."""

    def finish(self, until: float) -> None:
        """After the last outcome: let every window that closes by ``until`` close and learn."""

    def stats(self) -> dict[str, Any]:
        """The service's own counters (decisions, outcomes by status, learned …)."""


@dataclass(frozen=True, slots=True)
class DriveOptions:
    """How the loop drives a backend."""

    decisions: int
    speedup: float = 1.0
    """Simulated seconds per backend second (1 in process; thousands over gRPC)."""
    defer_share: float = 0.0
    """Share of Choose calls sent with ``defer_activation`` and activated afterwards."""
    activation_lag_seconds: float = 60.0
    """Simulated delay between a deferred decision and its activation (delivery)."""
    attribution: Literal["event", "customer"] = "event"
    """Send outcomes with the decision's event id, or only the customer id (last touch)."""
    drain_seconds: float = math.inf
    """Backend seconds after the last decision during which outcomes are still sent."""
    seed: int = 0
    progress: bool = False
    outbound: Outbound | None = None
    """Outbound campaigns between the triggered events (:mod:`bandit.sim.outbound`)."""
    window_seconds: float | None = None
    """The simulated attribution window, for the truth within it (:attr:`RunTruth.in_window`)."""


@dataclass(frozen=True, slots=True, eq=False)
class RunTruth:
    """The world's expected net value (EUR) of every treatment for every decision of a run:
    ``values[i, j]`` for the decision ``event_ids[i]`` and the treatment ``keys[j]``
    (:attr:`bandit.types.TreatmentRef.key`; control first). Any policy's true value on the
    run's contexts is ``mean_i Σ_j π(j | i) · values[i, j]``: what off-policy estimates of it
    are checked against."""

    event_ids: tuple[str, ...]
    keys: tuple[str, ...]
    values: FloatArray
    in_window: FloatArray | None = None
    """The same counting only purchases within the run's attribution window (and their offer
    costs): what the log's rewards measure, so what an unbiased estimate converges to."""
    window_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class SimulationReport:
    """The result of one simulation: scores from the truth, counters, timings."""

    mode: str
    settings: Mapping[str, Any]
    overall: ValueSummary
    last: ValueSummary
    """The last 20 % of decisions."""
    best_static_rule: Mapping[str, str]
    outcomes: Mapping[str, int]
    """Outcomes sent by status, plus ``not_sent`` (due after the run ended)."""
    service: Mapping[str, Any]
    elapsed_seconds: float
    campaigns: ValueSummary | None = None
    """The outbound campaigns' decisions alone (``DriveOptions.outbound``), else None."""
    truth: RunTruth | None = field(default=None, repr=False, compare=False)
    """Per decision, the world's value of every treatment (not in :meth:`to_dict`)."""

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: the overall scores at the top level."""
        out: dict[str, Any] = {"mode": self.mode, **self.settings}
        out.update(asdict(self.overall))
        out["last_20pct"] = asdict(self.last)
        out["best_static_rule"] = dict(self.best_static_rule)
        out["outcomes"] = dict(self.outcomes)
        out["service"] = dict(self.service)
        if self.campaigns is not None:
            out["campaigns"] = asdict(self.campaigns)
        out["elapsed_seconds"] = round(self.elapsed_seconds, 3)
        out["decisions_per_second"] = round(self.overall.decisions / self.elapsed_seconds, 1)
        clean: dict[str, Any] = _finite(out)
        return clean

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    def summary(self) -> str:
        """A few human lines: realised vs oracle, incremental value vs all-control."""
        o, last = self.overall, self.last
        lines = [
            f"{o.decisions} decisions ({self.mode}) in {self.elapsed_seconds:.1f} s",
            "value per decision (EUR)       all     last 20%",
        ]
        rows = [
            ("realised (sampled)", o.net_value_per_decision, last.net_value_per_decision),
            ("policy (expected)", o.true_value_per_decision, last.true_value_per_decision),
            ("oracle", o.oracle_value_per_decision, last.oracle_value_per_decision),
            ("best static rule", o.best_static_value_per_decision,
             last.best_static_value_per_decision),
            ("all control", o.control_value_per_decision, last.control_value_per_decision),
            ("uniform random", o.uniform_value_per_decision, last.uniform_value_per_decision),
        ]  # fmt: skip
        lines += [f"  {name:<26}{a:8.2f}  {b:8.2f}" for name, a, b in rows]
        lines.append(
            f"policy = {100 * o.share_of_oracle:.1f}% of the oracle "
            f"({100 * last.share_of_oracle:.1f}% over the last 20%); "
            f"{round(100 * last.share_of_oracle_gain)}% of the oracle's gain over control "
            "in the last 20%"
        )
        lines.append(
            f"incremental vs all-control: {o.incremental_value_per_decision:+.2f} EUR net value "
            f"and {o.incremental_revenue_per_decision:+.2f} EUR revenue per decision "
            f"({o.incremental_value_total:+,.0f} EUR net, {o.incremental_revenue_total:+,.0f} "
            "EUR revenue in total)"
        )
        if o.measured_incremental_value_per_decision is not None:
            lines.append(
                "measured from the control share (SNIPS): "
                f"{o.measured_incremental_value_per_decision:+.2f} EUR net per decision "
                + (
                    f"[95% CI {o.measured_incremental_ci[0]:+.2f}, "
                    f"{o.measured_incremental_ci[1]:+.2f}] "
                    if o.measured_incremental_ci is not None
                    else ""
                )
                + f"({o.control_decisions} control decisions)"
            )
        live = self.service.get("incremental")
        if live:
            lines.append(live_estimate_line(live, o.incremental_value_per_decision))
        c = self.campaigns
        if c is not None:
            lines.append(
                f"outbound campaigns: {c.decisions} decisions, "
                f"{c.incremental_value_per_decision:+.2f} EUR net value per customer above "
                f"all-control (true), {c.control_decisions} left alone or held out"
            )
        lines.append("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())))
        return "\n".join(lines)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


# ---- the loop ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Trace:
    events: list[WorldEvent] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    chosen: list[int] = field(default_factory=list)
    realised: list[float] = field(default_factory=list)
    propensity: list[float] = field(default_factory=list)
    eligible: list[BoolArray] = field(default_factory=list)


def drive(
    world: World,
    backend: Backend,
    options: DriveOptions,
    *,
    mode: str,
    settings: Mapping[str, Any] | None = None,
) -> SimulationReport:
    """Run ``options.decisions`` world events through ``backend`` and score the run."""
    if options.decisions < 1:
        raise ValueError("decisions must be at least 1")
    if options.speedup <= 0:
        raise ValueError("speedup must be positive")
    started = time.perf_counter()
    rng = np.random.default_rng([options.seed, 0x51D])
    speed = options.speedup
    world_origin = world.clock
    backend_origin = backend.now()

    def backend_time(t: float) -> float:
        return backend_origin + (t - world_origin) / speed

    pending: list[tuple[float, int, OutcomeInput]] = []
    statuses: Counter[str] = Counter()
    trace = _Trace()
    treatments = world.treatments()
    seq = 0

    def send_due(now: float) -> None:
        batch = []
        while pending and pending[0][0] <= now:
            batch.append(heapq.heappop(pending)[2])
        if batch:
            statuses.update(backend.record_outcomes(batch))

    events = with_campaigns(world, world.events(options.decisions), options.outbound)
    outbound = options.outbound
    bar = tqdm(
        total=options.decisions,
        unit="decision",
        disable=not options.progress,
        mininterval=0.5,
        dynamic_ncols=True,
    )
    last_decision = backend.now()
    with bar:
        event = next(events, None)
        while event is not None:
            due = backend_time(event.time)
            if pending and pending[0][0] <= due:
                backend.wait_until(pending[0][0])
                send_due(backend.now())
                continue
            backend.wait_until(due)
            backend.tick()
            inputs = (
                world.choose_inputs(event) if outbound is None else outbound.inputs(world, event)
            )
            mask = eligible_mask(world, event)
            defer = bool(rng.random() < options.defer_share)
            choice = backend.choose(inputs, exclusions(world, event), defer)
            column = world.treatment_index(choice.treatment)
            outcome = world.apply(event, treatments[column])
            start = choice.decided_at
            if defer:
                start += options.activation_lag_seconds / speed
                backend.activate(choice.event_id, start)
            last_decision = choice.decided_at
            if outcome.purchased:
                by_event = options.attribution == "event"
                o = OutcomeInput(
                    outcome_id=f"{choice.event_id}:purchase",
                    event_id=choice.event_id if by_event else "",
                    customer_id="" if by_event else event.customer.id,
                    type="purchase",
                    revenue=round(outcome.revenue, 2),
                    occurred_at=start + outcome.delay_seconds / speed,
                )
                heapq.heappush(pending, (o.occurred_at or start, seq, o))
                seq += 1
            trace.events.append(event)
            trace.event_ids.append(choice.event_id)
            trace.chosen.append(column)
            trace.realised.append(outcome.net_value)
            trace.propensity.append(choice.propensity)
            trace.eligible.append(mask)
            bar.update(1)
            event = next(events, None)
    end = last_decision + options.drain_seconds
    while pending and pending[0][0] <= end:
        backend.wait_until(pending[0][0])
        send_due(backend.now())
    if pending:
        statuses["not_sent"] += len(pending)
    backend.finish(end if math.isfinite(end) else backend.now())
    elapsed = time.perf_counter() - started
    return _report(
        world, trace, statuses, backend.stats(), elapsed, mode, settings or {},
        options.window_seconds,
    )  # fmt: skip


def _report(
    world: World,
    trace: _Trace,
    statuses: Mapping[str, int],
    service: Mapping[str, Any],
    elapsed: float,
    mode: str,
    settings: Mapping[str, Any],
    window_seconds: float | None = None,
) -> SimulationReport:
    chosen = np.array(trace.chosen, dtype=np.intp)
    realised = np.array(trace.realised)
    prop = np.array(trace.propensity)
    eligible = np.array(trace.eligible, dtype=np.bool_)
    n = len(chosen)
    values = expected_values(world, trace.events)
    overall, rule = score(world, trace.events, chosen, realised, prop, eligible, values)
    k = n - max(1, round(LAST_SHARE * n))
    last, _ = score(world, trace.events[k:], chosen[k:], realised[k:], prop[k:], eligible[k:])
    campaigns = None
    sent = np.array([e.trigger.type == CAMPAIGN_TRIGGER for e in trace.events], dtype=np.bool_)
    if sent.any():
        events = [e for e, s in zip(trace.events, sent, strict=True) if s]
        campaigns, _ = score(
            world, events, chosen[sent], realised[sent], prop[sent], eligible[sent], values[sent]
        )
    last, _ = score(
        world, trace.events[k:], chosen[k:], realised[k:], prop[k:], eligible[k:], values[k:]
    )
    truth = RunTruth(
        tuple(trace.event_ids),
        tuple(t.ref.key for t in world.treatments()),
        values,
        None if window_seconds is None else expected_values(world, trace.events, window_seconds),
        window_seconds,
    )
    return SimulationReport(
        mode=mode,
        settings=dict(settings),
        overall=overall,
        last=last,
        best_static_rule=rule,
        outcomes=dict(statuses),
        service=dict(service),
        elapsed_seconds=elapsed,
        campaigns=campaigns,
        truth=truth,
    )


# ---- in process --------------------------------------------------------------------------------


class InProcessBackend:
    """A :class:`DecisionService` without threads on a manual clock: simulated time is free.

    :meth:`tick` plays the closer and the learner: every ``tick_seconds`` of simulated time
    it closes the windows that have ended and learns them.
    """

    def __init__(
        self, service: DecisionService, clock: ManualClock, *, tick_seconds: float = 600.0
    ) -> None:
        self.service = service
        self.clock = clock
        self.tick_seconds = tick_seconds
        self._next_tick = -math.inf

    def now(self) -> float:
        return self.clock.now()

    def wait_until(self, t: float) -> None:
        if t > self.clock.now():
            self.clock.set(t)

    def choose(self, inputs: ChooseInputs, excluded: Sequence[TreatmentRef], defer: bool) -> Choice:
        d = self.service.choose(
            ChooseInput(
                inputs.customer,
                inputs.trigger,
                inputs.offers,
                inputs.channels,
                excluded=excluded,
                defer_activation=defer,
                campaign_id=inputs.campaign_id,
                campaign_holdout_share=inputs.campaign_holdout_share,
            )
        )
        return Choice(d.event_id, d.chosen_treatment.ref, d.propensity, d.decided_at)

    def activate(self, event_id: str, at: float) -> None:
        self.service.activate(event_id, at)

    def record_outcomes(self, outcomes: Sequence[OutcomeInput]) -> list[str]:
        return [
            str(r.status) if isinstance(r, OutcomeResult) else "rejected"
            for r in self.service.record_outcomes(outcomes)
        ]

    def tick(self) -> None:
        now = self.clock.now()
        if now < self._next_tick:
            return
        self._next_tick = now + self.tick_seconds
        if self.service.close_due_windows():
            self.service.learn_pending()

    def finish(self, until: float) -> None:
        windows = self.service.config.windows
        longest = max([windows.default, *(s for _, s in windows.per_channel)])
        self.wait_until(max(until, self.clock.now() + longest))
        self._next_tick = -math.inf
        self.tick()

    def stats(self) -> dict[str, Any]:
        s = self.service.stats()
        return {
            "decisions": s.log.decisions,
            "activations": s.log.activations,
            "outcomes": dict(s.log.outcomes),
            "closed": s.log.closed,
            "pending_windows": s.log.pending_windows,
            "learned": s.learned,
            "model_version": s.model_version,
            "policy": self.service.policy_id,
        }


def live_estimate_line(live: Mapping[str, Any], truth: float) -> str:
    """What the server's own ``GetStats`` estimate said, beside the world's ``truth`` (the
    run's true incremental value per decision): whether its interval tells the policy from
    doing nothing, the smallest gain it could have told (80% power), and how many decisions
    an estimate this spread would need to show a true gain like the run's.

    >>> print(live_estimate_line({"decisions": 3600, "per_decision": 0.04, "ci": [-0.33, 0.41],
    ...     "detectable_per_decision": 0.5289}, 0.2))
    GetStats' live estimate: +0.04 EUR net per decision [95% CI -0.33, +0.41] over 3,600 closed \
decisions (truth +0.20): not yet told apart from doing nothing; it tells a gain from none from \
+0.53 EUR per decision (80% power); a true gain of +0.20 shows after ≈ 25,174 decisions at this \
spread
    """
    n = int(live["decisions"])
    est, (lo, hi) = float(live["per_decision"]), live["ci"]
    mde = float(live["detectable_per_decision"])
    if lo > 0.0:
        verdict = "above doing nothing"
    elif hi < 0.0:
        verdict = "below doing nothing"
    else:
        verdict = "not yet told apart from doing nothing"
    line = (
        f"GetStats' live estimate: {est:+.2f} EUR net per decision [95% CI {lo:+.2f}, {hi:+.2f}] "
        f"over {n:,} closed decisions (truth {truth:+.2f}): {verdict}; it tells a gain from none "
        f"from {mde:+.2f} EUR per decision (80% power)"
    )
    if truth > 0.0 and mde > 0.0:
        need = Incremental(n, est, lo, hi).decisions_to_detect(truth)
        line += f"; a true gain of {truth:+.2f} shows after ≈ {need:,.0f} decisions at this spread"
    return line


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """An in-process simulation: the world, the policy, the service's windows."""

    seed: int = 0
    customers: int = 5000
    decisions: int = 10_000
    policy: str = "uplift"
    """``uplift`` (the service's default) or ``vw`` (configured by ``exploration`` and
    ``interactions``)."""
    uplift_options: str = ""
    exploration: str = DEFAULT_EXPLORATION
    interactions: tuple[str, ...] = DEFAULT_INTERACTIONS
    control_share: float = 0.05
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    defer_share: float = 0.0
    attribution: Literal["event", "customer"] = "event"
    checkpoint_every_learns: int = 500
    """How often learned weights are published to the decider."""
    campaign_every_days: float | None = None
    """Outbound mode: a campaign over every customer this often (None: none)."""
    campaign_holdout: float = 0.1
    """Each campaign's holdout share."""
    contact_policy: str | None = None
    """A contact-policy file (:mod:`bandit.contact`) the service applies before scoring, so
    that a candidate policy's value can be compared with the world's truth before it is
    switched on; None: no policy."""
    progress: bool = False

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("progress")
        d["interactions"] = list(self.interactions)
        return d


def simulate_in_process(config: SimulationConfig, data_dir: Path | None = None) -> SimulationReport:
    """Run a simulation against an in-process :class:`DecisionService` and score it.

    ``data_dir`` keeps the decision log and checkpoints (for offline evaluation); by default
    they go to a temporary folder that is removed afterwards.
    """
    world = World(seed=config.seed, config=WorldConfig(n_customers=config.customers))
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="offerbandit-sim-") as tmp:
            return _simulate_in(world, config, Path(tmp))
    return _simulate_in(world, config, data_dir)


def _simulate_in(world: World, config: SimulationConfig, data_dir: Path) -> SimulationReport:
    clock = ManualClock(world.clock)
    service = DecisionService(
        ServiceConfig(
            data_dir=data_dir,
            seed=config.seed,
            event_id_prefix=simulation_event_key(config.seed),
            policy=config.policy,
            uplift_options=config.uplift_options,
            exploration=config.exploration,
            interactions=config.interactions,
            control_share=config.control_share,
            windows=Windows(default=config.window_seconds),
            checkpoint_every_learns=config.checkpoint_every_learns,
            checkpoint_every_seconds=math.inf,
            contact_policy=(
                None if config.contact_policy is None else ContactPolicy.load(config.contact_policy)
            ),
            background=False,
            synchronous="OFF",
        ),
        clock,
    )
    service.start()
    try:
        options = DriveOptions(
            decisions=config.decisions,
            defer_share=config.defer_share,
            attribution=config.attribution,
            seed=config.seed,
            progress=config.progress,
            outbound=None
            if config.campaign_every_days is None
            else Outbound(config.campaign_every_days, holdout=config.campaign_holdout),
            window_seconds=config.window_seconds,
        )
        report = drive(
            world,
            InProcessBackend(service, clock),
            options,
            mode="in-process",
            settings={**config.settings(), "data_dir": str(data_dir)},
        )
    finally:
        service.stop()
    return replace(report, service={**report.service, "learned_at_stop": service.learned})


__all__ = [
    "DEFAULT_WINDOW_SECONDS",
    "LAST_SHARE",
    "Backend",
    "Choice",
    "DriveOptions",
    "InProcessBackend",
    "RunTruth",
    "SimulationConfig",
    "SimulationReport",
    "ValueSummary",
    "drive",
    "eligible_mask",
    "exclusions",
    "expected_values",
    "reachable_channels",
    "score",
    "simulate_in_process",
    "simulation_event_key",
]

"""The in-process simulation driver: report fields, their consistency, determinism."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bandit.records import OutcomeInput
from bandit.sim import World, WorldConfig
from bandit.sim.driver import (
    Choice,
    DriveOptions,
    SimulationConfig,
    SimulationReport,
    drive,
    eligible_mask,
    exclusions,
    score,
    simulate_in_process,
)
from bandit.sim.world import ChooseInputs, WorldEvent
from bandit.types import TreatmentRef

SMALL = WorldConfig(n_customers=300)
REQUIRED = {
    "decisions",
    "net_value_per_decision",
    "true_value_per_decision",
    "oracle_value_per_decision",
    "uniform_value_per_decision",
    "control_value_per_decision",
    "best_static_value_per_decision",
    "incremental_value_per_decision",
    "incremental_revenue_per_decision",
    "incremental_revenue_total",
    "last_20pct",
}


class SpyWorld(World):
    """A world that remembers the event the loop is deciding (for the oracle rule)."""

    last: WorldEvent | None = None

    def choose_inputs(self, event: WorldEvent) -> ChooseInputs:
        self.last = event
        return super().choose_inputs(event)


class ScriptedBackend:
    """A deterministic stand-in for the service: picks with a rule, records everything."""

    def __init__(self, world: SpyWorld, rule: str) -> None:
        self.world = world
        self.rule = rule
        self.t = world.clock
        self.n = 0
        self.outcomes: list[OutcomeInput] = []
        self.activated: list[str] = []

    def now(self) -> float:
        return self.t

    def wait_until(self, t: float) -> None:
        self.t = max(self.t, t)

    def choose(self, inputs: ChooseInputs, excluded: Sequence[TreatmentRef], defer: bool) -> Choice:
        self.n += 1
        refs = [t.ref for t in inputs.treatments if t.ref not in set(excluded)]
        if self.rule == "control":
            pick = refs[0]
        elif self.rule == "oracle":
            assert self.world.last is not None
            event = self.world.last
            pick = self.world.oracle_treatment(
                event, [t for t in inputs.treatments if t.ref in set(refs)]
            ).ref
        else:  # cycle through the eligible treatments
            pick = refs[self.n % len(refs)]
        return Choice(f"e{self.n}", pick, 1.0 / len(refs), self.t)

    def activate(self, event_id: str, at: float) -> None:
        self.activated.append(event_id)

    def record_outcomes(self, outcomes: Sequence[OutcomeInput]) -> list[str]:
        self.outcomes.extend(outcomes)
        return ["attributed"] * len(outcomes)

    def tick(self) -> None:
        pass

    def finish(self, until: float) -> None:
        self.wait_until(until)

    def stats(self) -> dict[str, Any]:
        return {"decisions": self.n}


def _scripted(rule: str, n: int = 400, seed: int = 5, **kw: Any) -> SimulationReport:
    world = SpyWorld(seed=seed, config=SMALL)
    backend = ScriptedBackend(world, rule)
    return drive(world, backend, DriveOptions(decisions=n, seed=seed, **kw), mode="scripted")


@pytest.fixture(scope="module")
def report() -> SimulationReport:
    return simulate_in_process(SimulationConfig(seed=4, customers=300, decisions=600))


def test_in_process_report_has_every_field_and_they_agree(report: SimulationReport) -> None:
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data.keys() >= REQUIRED
    assert REQUIRED - {"last_20pct", "incremental_revenue_total"} <= data["last_20pct"].keys()
    o, last = report.overall, report.last
    assert o.decisions == 600
    assert last.decisions == 120
    assert report.service["decisions"] == 600
    assert report.service["learned"] > 0
    assert data["mode"] == "in-process"
    for s in (o, last):
        assert s.oracle_value_per_decision >= s.true_value_per_decision
        assert s.oracle_value_per_decision >= s.best_static_value_per_decision
        assert s.best_static_value_per_decision >= s.control_value_per_decision
        assert s.oracle_value_per_decision >= s.uniform_value_per_decision
        assert s.incremental_value_per_decision == pytest.approx(
            s.true_value_per_decision - s.control_value_per_decision
        )
        assert s.share_of_oracle == pytest.approx(
            s.true_value_per_decision / s.oracle_value_per_decision
        )
    assert o.incremental_revenue_total == pytest.approx(o.incremental_revenue_per_decision * 600)
    assert set(report.best_static_rule) <= {"new", "active", "at_risk", "lapsed", "vip"}
    sent = sum(v for k, v in report.outcomes.items() if k != "not_sent")
    assert sent > 0
    assert report.outcomes.get("rejected", 0) == 0
    assert "oracle" in report.summary()


def test_every_purchase_is_sent_once_with_its_time() -> None:
    world = SpyWorld(seed=5, config=SMALL)
    backend = ScriptedBackend(world, "cycle")
    drive(world, backend, DriveOptions(decisions=300, defer_share=0.5), mode="scripted")
    ids = [o.outcome_id for o in backend.outcomes]
    assert len(ids) == len(set(ids)) > 0
    assert all(o.revenue > 0 and o.occurred_at is not None for o in backend.outcomes)
    assert 100 < len(backend.activated) < 200
    times = [o.occurred_at or 0.0 for o in backend.outcomes]
    assert times == sorted(times)  # delivered in time order


def test_a_seed_gives_the_same_run() -> None:
    a = _scripted("cycle", defer_share=0.2)
    b = _scripted("cycle", defer_share=0.2)
    assert a.overall == b.overall
    assert a.last == b.last
    c = _scripted("cycle", seed=6)
    assert c.overall != a.overall


def test_all_control_scores_as_control_and_oracle_as_oracle() -> None:
    control = _scripted("control").overall
    assert control.true_value_per_decision == pytest.approx(control.control_value_per_decision)
    assert control.incremental_value_per_decision == pytest.approx(0.0)
    assert control.incremental_revenue_per_decision == pytest.approx(0.0)
    assert control.control_decisions == control.decisions
    oracle = _scripted("oracle").overall
    assert oracle.true_value_per_decision == pytest.approx(oracle.oracle_value_per_decision)
    assert oracle.regret_vs_oracle_total == pytest.approx(0.0, abs=1e-6)
    assert oracle.share_of_oracle_gain == pytest.approx(1.0)


def test_exclusions_match_the_eligibility_mask() -> None:
    world = World(seed=1, config=SMALL)
    for event in world.events(50):
        mask = eligible_mask(world, event)
        excluded = set(exclusions(world, event))
        for t, ok in zip(world.treatments(), mask, strict=True):
            assert ok == (t.ref not in excluded)
        assert mask[0]
        values = world.expected_values(event)[0]
        # what is excluded is never better than control
        assert np.all(values[~mask] <= values[0] + 1e-9)


def test_report_writes_strict_json(report: SimulationReport, tmp_path: Path) -> None:
    path = tmp_path / "r" / "report.json"
    report.write(path)
    data = json.loads(path.read_text())
    assert data["decisions"] == 600
    assert all(v is None or math.isfinite(v) for v in data.values() if isinstance(v, float | int))


def test_the_control_share_measurement_has_a_paired_interval() -> None:
    """Issue 20, finding 3: "measured from the control share (SNIPS)" comes with its 95%
    interval (delta method on the paired per-decision scores)."""
    world = World(seed=8, config=WorldConfig(n_customers=300))
    events = list(world.events(2000))
    rng = np.random.default_rng(8)
    k = len(world.treatments())
    eligible = np.ones((len(events), k), dtype=np.bool_)
    propensity = np.where(rng.random(len(events)) < 0.3, 0.3, 0.7)
    chosen = np.where(propensity == 0.3, 0, rng.integers(1, k, len(events)))
    realised = world.expected_values(events)[np.arange(len(events)), chosen]
    realised = realised + rng.normal(0.0, 20.0, len(events))
    summary, _ = score(world, events, chosen, realised, propensity, eligible)
    measured = summary.measured_incremental_value_per_decision
    assert measured is not None
    assert summary.measured_incremental_ci is not None
    low, high = summary.measured_incremental_ci
    w = np.where(chosen == 0, 1.0 / propensity, 0.0)
    c = float((w * realised).sum() / w.sum())
    psi = realised - c - w * (realised - c) / w.mean()
    half = 1.959963984540054 * float(psi.std(ddof=1)) / math.sqrt(len(events))
    assert (low, high) == pytest.approx((measured - half, measured + half))
    assert 0.5 < high - low < 10.0

"""How well GetStats' live incremental estimate knows the truth, on simulated data.

The uplift policy (the service's default) decides online in the simulated world, learning
each decision when its 2-day attribution window closes (as ``bench_learning``). Each decision
is also fed, in order, to the two estimates of its net value per decision above all-control:
the plain one (``r − 1{control}·r/μ``) and the doubly robust one GetStats gives
(bandit/log/sqlite/live.py). For the estimates, a decision's reward is its whole outcome (no
window), so its expectation is exactly what the world knows; the truth a run is scored
against is the mean over its decisions of ``Σ_a μ(a|x)·v(x, a) − v(x, control)`` (the pmf
the decision was drawn from, the world's expected net values).

Prints, per seed and number of decisions: the truth, each estimate with its 95 % interval,
whether the interval holds the truth and whether it excludes 0; then the coverage and the
share above 0 over the seeds. ``--json`` writes every figure.

Usage: ``python bench/bench_live_estimate.py --seeds 0-9 --decisions 100000 [--jobs 2]``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bandit.log.sqlite.live import LiveIncremental, Row
from bandit.records import Incremental
from bandit.rewards import RewardRule
from bandit.sampling import floored_pmf, sample_index
from bandit.sim import World, WorldConfig
from bandit.sim.driver import DEFAULT_WINDOW_SECONDS, eligible_mask
from bandit.types import Treatment
from bandit.uplift import UpliftPolicy, uplift_arguments

POINTS = (20_000, 50_000, 100_000)
PUBLISH_EVERY = 1000


@dataclass(frozen=True)
class Point:
    seed: int
    n: int
    truth: float
    ips: tuple[float, float, float]
    dr: tuple[float, float, float]
    oracle: tuple[float, float, float]
    """The doubly robust form with the world's own expected control value as the baseline:
    the narrowest any baseline can make it (a bound, not an estimate a service can give)."""


def _interval(psi: np.ndarray) -> tuple[float, float, float]:
    e = Incremental.from_sums(len(psi), float(psi.sum()), float(np.square(psi).sum()))
    return e.per_decision, e.ci_low, e.ci_high


def run(
    seed: int, decisions: int, customers: int = 5000, control_share: float = 0.05
) -> list[Point]:
    """One seed: the truth and both estimates after each of :data:`POINTS` (≤ ``decisions``)."""
    world = World(seed=seed, config=WorldConfig(n_customers=customers))
    treatments = world.treatments()
    rule = RewardRule()
    rng = np.random.default_rng([seed, 7])
    policy = UpliftPolicy.from_args(uplift_arguments("", seed))
    pending: deque[tuple[float, int, Treatment, float, bool]] = deque()
    candidates: dict[bytes, tuple[Treatment, ...]] = {}
    truth = np.empty(decisions)
    ips = np.empty(decisions)
    oracle = np.empty(decisions)
    dr_all = np.empty(0)
    dr = LiveIncremental()
    rows: list[Row] = []
    events = []
    pmfs: list[tuple[np.ndarray, list[float], float, bool]] = []
    since = 0
    for i, event in enumerate(world.events(decisions)):
        while pending and pending[0][0] <= event.time:
            _, j, t, revenue, bought = pending.popleft()
            policy.learn(events[j].context, t, revenue, bought)
            since += 1
        if since >= PUBLISH_EVERY:
            policy.publish()
            since = 0
        mask = eligible_mask(world, event)
        cols = np.flatnonzero(mask)
        key = mask.tobytes()
        cand = candidates.get(key)
        if cand is None:
            cand = candidates[key] = tuple(treatments[c] for c in cols)
        pmf = floored_pmf(policy.scores(event.context, cand), 0, control_share)
        k = sample_index(pmf, float(rng.random()))
        t = cand[k]
        outcome = world.apply(event, t)
        in_window = outcome.purchased and outcome.delay_seconds < DEFAULT_WINDOW_SECONDS
        pending.append(
            (event.time + DEFAULT_WINDOW_SECONDS, i, t, outcome.revenue if in_window else 0.0,
             in_window)
        )  # fmt: skip
        reward = rule.reward(
            revenue=outcome.revenue if outcome.purchased else 0.0,
            n_outcomes=int(outcome.purchased),
            is_control=t.is_control,
            fixed_cost=t.offer.fixed_cost if t.offer else 0.0,
            discount_rate=t.offer.discount_rate if t.offer else 0.0,
            contact_cost=t.channel.contact_cost if t.channel else 0.0,
        )
        ips[i] = reward - (reward / pmf[0] if k == 0 else 0.0)
        c, tr = event.context.customer, event.context.trigger
        rows.append(Row(c.features, tr.type, tr.features, reward, k == 0, pmf[0]))
        events.append(event)
        pmfs.append((cols, list(pmf), reward, k == 0))
        if len(rows) >= 2000 or i == decisions - 1:
            start = i + 1 - len(rows)
            values = world.expected_values(events[start : i + 1])
            for j, (cs, p, r, ctrl) in enumerate(pmfs):
                v = values[j, cs]
                truth[start + j] = float(np.dot(p, v) - v[0])
                oracle[start + j] = (r - v[0]) * (1.0 - (1.0 / p[0] if ctrl else 0.0))
            pmfs.clear()
            dr_psi = dr.add(rows)
            rows.clear()
            dr_all = np.concatenate([dr_all, dr_psi])
    out = []
    for n in POINTS:
        if n <= decisions:
            out.append(
                Point(
                    seed,
                    n,
                    float(truth[:n].mean()),
                    _interval(ips[:n]),
                    _interval(dr_all[:n]),
                    _interval(oracle[:n]),
                )
            )
    return out


def _row(p: Point) -> str:
    def fmt(e: tuple[float, float, float]) -> str:
        hit = "✓" if e[1] <= p.truth <= e[2] else "✗"
        above = ">0" if e[1] > 0 else "  "
        return f"{e[0]:+.2f} [{e[1]:+.2f}, {e[2]:+.2f}] {hit} {above}"

    return f"{p.seed:>4} {p.n:>8,} {p.truth:+7.3f}   {fmt(p.ips)}   {fmt(p.dr)}"


def summary(points: Sequence[Point]) -> str:
    lines = [
        f"{'seed':>4} {'n':>8} {'truth':>7}   {'plain (r − 1{c}·r/μ) [95%]':<32} "
        f"{'doubly robust [95%]':<32}"
    ]
    lines += [_row(p) for p in sorted(points, key=lambda p: (p.n, p.seed))]
    lines.append("")
    for n in sorted({p.n for p in points}):
        ps = [p for p in points if p.n == n]
        parts = []
        for name in ("ips", "dr", "oracle"):
            es = [getattr(p, name) for p in ps]
            cover = sum(e[1] <= p.truth <= e[2] for e, p in zip(es, ps, strict=True))
            above = sum(e[1] > 0 for e in es)
            width = float(np.mean([e[2] - e[1] for e in es]))
            parts.append(
                f"{name}: covers {cover}/{len(ps)}, above 0 {above}/{len(ps)}, "
                f"mean width {width:.2f}"
            )
        lines.append(f"n = {n:,}: " + "; ".join(parts))
    return "\n".join(lines)


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--json", type=Path)
    ns = parser.parse_args(argv)
    seeds = _seeds(ns.seeds)
    points: list[Point] = []
    with ProcessPoolExecutor(ns.jobs) as pool:
        for result in pool.map(run, seeds, [ns.decisions] * len(seeds)):
            points += result
            print(*(_row(p) for p in result), sep="\n", flush=True)
    print(summary(points))
    if ns.json:
        ns.json.write_text(json.dumps([asdict(p) for p in points], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

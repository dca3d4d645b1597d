"""Benchmark the incremental-revenue report on a large simulated log.

Builds a ``--rows`` (default 1,000,000) decision :class:`~offline_eval.io.logs.LoggedBandit`
straight from the simulated world (events drawn once, then re-used with fresh actions and
outcomes; arrays built directly, no SQLite), then times the full uplift report: every single
slice (stage, trigger, offer, channel) and one pair (stage × offer), with peak memory
(tracemalloc for Python allocations, ru_maxrss for the process). Also writes a
``--sqlite-rows`` (default 100,000) log through
:class:`bandit.log.sqlite.SqliteDecisionLog` and times
:func:`offline_eval.io.logs.load_sqlite` on it. Targets: report ≤ 60 s and ≤ 2 GB.

Usage: ``python bench/bench_uplift.py [--rows 1000000] [--sqlite-rows 100000]``
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from bandit.rewards import RewardRule
from bandit.service import in_holdout
from bandit.sim import World, WorldConfig, WorldEvent
from bandit.types import Context, Decision, Treatment
from offline_eval.io.logs import BASE_COLUMNS, LoggedBandit

FloatArray = NDArray[np.float64]
GB = 2**30


@dataclass(frozen=True)
class SimulatedLog:
    """A log drawn from the world, with the truth of every (row, treatment).

    ``values[i, a]`` is the expected net value of ``treatments[a]`` for row ``i`` (empty
    when not asked for); ``mu[i, a]`` the logging probability (0 where not eligible, and
    for holdout rows but control).
    """

    log: LoggedBandit
    treatments: tuple[Treatment, ...]
    values: FloatArray
    mu: FloatArray
    holdout: NDArray[np.bool_]
    local_index: NDArray[np.int64]
    """``(n, k)``: the column of each treatment in its row's catalogue (-1: not in it)."""


def stage_policy(
    world: World, events: Sequence[WorldEvent], k: int, control: float = 0.2
) -> FloatArray:
    """A context-dependent logging pmf over ``k`` treatments (control first): control share
    ``control``, half of the rest on a per-stage favourite, the other half uniform."""
    stages = np.array([world.stages.index(world.stage_of(e)) for e in events])
    pmf = np.full((len(events), k), (1.0 - control) * 0.5 / (k - 1))
    pmf[:, 0] = control
    favourite = 1 + stages % (k - 1)
    pmf[np.arange(len(events)), favourite] += (1.0 - control) * 0.5
    return pmf


def simulated_log(
    world: World,
    events: Sequence[WorldEvent],
    treatments: Sequence[Treatment],
    pmf: FloatArray,
    rng: np.random.Generator,
    *,
    eligible: NDArray[np.bool_] | None = None,
    holdout_share: float = 0.0,
    values: FloatArray | None = None,
    with_truth: bool = True,
    start: float = 1_700_000_000.0,
) -> SimulatedLog:
    """Sample a log: action from ``pmf`` (restricted to ``eligible`` and renormalised),
    outcome from the world, reward by the service's rule (the world's net value is the same
    number; checked here on the first rows). Holdout customers always get control.
    ``values`` may pass the truth in when it is already known."""
    n, k = pmf.shape
    treatments = tuple(treatments)
    if not treatments[0].is_control:
        raise ValueError("control must come first")
    mu = pmf.copy()
    if eligible is not None:
        mu = np.where(eligible, mu, 0.0)
    ids = [e.customer.id for e in events]
    unique = {c: in_holdout(c, holdout_share, "offerbandit-holdout") for c in set(ids)}
    holdout = np.array([unique[c] for c in ids], dtype=bool)
    mu[holdout] = 0.0
    mu[holdout, 0] = 1.0
    mu /= mu.sum(axis=1, keepdims=True)
    if values is None:
        values = world.expected_values(events, treatments) if with_truth else np.zeros((0, k))

    # Catalogues: one per distinct eligibility pattern; local columns in treatment order.
    support = mu > 0.0
    keys = support @ (1 << np.arange(k, dtype=np.int64) % 63)  # pattern key per row
    _, first, cat_of = np.unique(keys, return_index=True, return_inverse=True)
    patterns = support[first]
    cat_of = cat_of.reshape(-1)
    catalogues = {
        c: tuple(t for t, on in zip(treatments, pat, strict=True) if on)
        for c, pat in enumerate(patterns)
    }
    local_index = np.where(support, support.cumsum(axis=1) - 1, -1).astype(np.int64)
    width = int(patterns.sum(axis=1).max())
    local = np.zeros((n, width))
    rows, cols = np.nonzero(support)
    local[rows, local_index[rows, cols]] = mu[rows, cols]
    times = start + np.arange(n, dtype=np.float64) * 30.0
    frame = pd.DataFrame(
        {
            "seq": np.arange(1, n + 1),
            "event_id": [f"e{i}" for i in range(n)],
            "decided_at": times,
            "customer_id": ids,
            "trigger_type": [e.trigger.type for e in events],
            "catalogue_id": cat_of.astype(np.int64),
            "n_treatments": patterns.sum(axis=1)[cat_of].astype(np.int64),
            "holdout": holdout,
            "model_version": "v0",
            "policy": "sim",
            "deferred": False,
            "activated_at": times,
            "closed": True,
            "c.stage": [world.stage_of(e) for e in events],
            "c.age_band": [e.customer.features["age_band"] for e in events],
        }
    )
    base = SimulatedLog(
        LoggedBandit(frame, local, catalogues, source="simulated"),
        treatments,
        values,
        mu,
        holdout,
        local_index,
    )
    return resample(base, world, events, rng, check_rule=True)


def resample(
    sim: SimulatedLog,
    world: World,
    events: Sequence[WorldEvent],
    rng: np.random.Generator,
    *,
    check_rule: bool = False,
) -> SimulatedLog:
    """The same rows, logging pmf and catalogues with fresh actions and outcomes."""
    mu, treatments = sim.mu, sim.treatments
    n, k = mu.shape
    u = rng.random(size=(n,))
    chosen = np.minimum((mu.cumsum(axis=1) < u[:, None]).sum(axis=1), k - 1)
    while True:  # float round-off could land on a zero-probability column
        bad = mu[np.arange(n), chosen] <= 0.0
        if not bad.any():
            break
        chosen[bad] = np.argmax(mu[bad], axis=1)
    world_cols = np.array([world.treatment_index(t) for t in treatments], dtype=np.intp)
    outcome = world.sample_outcomes(events, world_cols[chosen], rng)
    if check_rule:
        rule = RewardRule()
        for i in range(min(n, 200)):
            t = treatments[chosen[i]]
            r = rule.reward(
                revenue=float(outcome.revenue[i]),
                n_outcomes=int(outcome.purchased[i]),
                is_control=t.is_control,
                fixed_cost=t.offer.fixed_cost if t.offer else 0.0,
                discount_rate=t.offer.discount_rate if t.offer else 0.0,
                contact_cost=t.channel.contact_cost if t.channel else 0.0,
            )
            if abs(r - float(outcome.net_value[i])) > 1e-9:
                raise AssertionError(f"reward rule {r} != world net value {outcome.net_value[i]}")
    offers = np.array([t.ref.offer_id for t in treatments], dtype=object)
    channels = np.array([t.ref.channel_id for t in treatments], dtype=object)
    fixed = np.array([t.offer.fixed_cost if t.offer else 0.0 for t in treatments])
    rate = np.array([t.offer.discount_rate if t.offer else 0.0 for t in treatments])
    contact = np.array([t.channel.contact_cost if t.channel else 0.0 for t in treatments])
    frame = sim.log.frame.copy()
    rows = np.arange(n)
    frame["chosen"] = sim.local_index[rows, chosen]
    frame["chosen_offer"] = offers[chosen]
    frame["chosen_channel"] = channels[chosen]
    frame["is_control"] = chosen == 0
    frame["propensity"] = mu[rows, chosen]
    frame["reward"] = outcome.net_value
    frame["revenue"] = outcome.revenue
    frame["n_outcomes"] = outcome.purchased.astype(np.int64)
    frame["fixed_cost"] = fixed[chosen]
    frame["discount_rate"] = rate[chosen]
    frame["contact_cost"] = contact[chosen]
    extra = [c for c in frame.columns if c not in BASE_COLUMNS]
    frame = frame[[*BASE_COLUMNS, *extra]]
    log = LoggedBandit(frame, sim.log.pmf, sim.log.catalogues, source="simulated")
    return SimulatedLog(log, treatments, sim.values, mu, sim.holdout, sim.local_index)


def write_sqlite_log(
    path: Path, world: World, events: Sequence[WorldEvent], pmf: FloatArray, seed: int = 0
) -> None:
    """Write a decision log through :class:`bandit.log.sqlite.SqliteDecisionLog` (decisions,
    outcomes by event id, closed windows) for ``events`` with treatments drawn from ``pmf``."""
    from bandit.log.sqlite import SqliteDecisionLog
    from bandit.records import OutcomeInput

    rng = np.random.default_rng(seed)
    treatments = world.treatments()
    n = len(events)
    u = rng.random(n)
    chosen = np.minimum((pmf.cumsum(axis=1) < u[:, None]).sum(axis=1), pmf.shape[1] - 1)
    outcome = world.sample_outcomes(events, chosen, rng)
    store = SqliteDecisionLog(path, synchronous="OFF")
    try:
        pending = []
        for i, e in enumerate(events):
            d = Decision(
                event_id=e.event_id,
                context=Context(e.customer, e.trigger),
                treatments=treatments,
                pmf=tuple(float(p) for p in pmf[i]),
                chosen=int(chosen[i]),
                model_version="v0",
                policy="sim",
                decided_at=e.time,
            )
            pending.append(store.submit(store.append_job(d, "")))
            if outcome.purchased[i]:
                o = OutcomeInput(
                    f"o{i}", e.event_id, e.customer.id, "purchase", float(outcome.revenue[i]),
                    e.time + 60.0,
                )  # fmt: skip
                pending.append(store.submit(store.outcome_job(o, e.time + 60.0, 1e9)))
        for fut in pending:
            store.wait(fut)
        while store.close_due(now=float(events[-1].time) + 1e9) > 0:
            pass
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    from offline_eval.io.logs import load_sqlite
    from offline_eval.uplift.analysis import uplift_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pool", type=int, default=50_000, help="distinct world events")
    parser.add_argument("--sqlite-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args(argv)

    t0 = time.perf_counter()
    world = World(seed=ns.seed, config=WorldConfig(n_customers=20_000))
    pool = list(world.events(ns.pool))
    picks = np.random.default_rng(ns.seed).integers(0, len(pool), ns.rows)
    picks.sort()  # keep time order roughly
    events = [pool[i] for i in picks]
    treatments = world.treatments()
    pmf = stage_policy(world, events, len(treatments), control=0.1)
    sms = np.array([t.channel is not None and t.channel.id == "sms" for t in treatments])
    consent = np.array([bool(e.customer.features["consent_sms"]) for e in events])
    eligible = ~(sms[None, :] & ~consent[:, None])
    sim = simulated_log(
        world,
        events,
        treatments,
        pmf,
        np.random.default_rng(ns.seed + 1),
        eligible=eligible,
        holdout_share=0.05,
        with_truth=False,
    )
    lb = sim.log
    print(
        f"generated {lb.n:,} decisions × {len(treatments)} treatments "
        f"({len(lb.catalogues)} catalogues) in {time.perf_counter() - t0:.1f} s"
    )
    del events, pool, sim

    tracemalloc.start()
    start = time.perf_counter()
    report = uplift_report(
        lb, by=["stage", "trigger", "offer", "channel"], pairs=[("stage", "offer")], progress=True
    )
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        report.write(tmp)
        write_s = time.perf_counter() - t1
    print(report.summary(top=12))
    print()
    print(f"uplift report on {lb.n:,} decisions: {seconds:.1f} s, {len(report.effects)} effects")
    print(
        f"  peak traced memory (Python + NumPy) {peak / GB:.2f} GB; process max RSS "
        f"{rss / GB:.2f} GB (includes generating the log)"
    )
    print(f"  writing table + plots: {write_s:.1f} s")
    ok = seconds <= 60.0 and peak <= 2 * GB
    print(f"  target ≤ 60 s and ≤ 2 GB: {'met' if ok else 'MISSED'}")

    if ns.sqlite_rows > 0:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "decisions.sqlite"
            world2 = World(seed=ns.seed + 1, config=WorldConfig(n_customers=5_000))
            ev2 = list(world2.events(ns.sqlite_rows))
            pmf2 = stage_policy(world2, ev2, len(world2.treatments()), control=0.1)
            t2 = time.perf_counter()
            write_sqlite_log(path, world2, ev2, pmf2, seed=ns.seed)
            write_s = time.perf_counter() - t2
            t3 = time.perf_counter()
            lb2 = load_sqlite(path, progress=False)
            load_s = time.perf_counter() - t3
            t4 = time.perf_counter()
            uplift_report(lb2, pairs=[("stage", "offer")])
            rep_s = time.perf_counter() - t4
        print(
            f"SQLite log of {lb2.n:,} decisions: written in {write_s:.1f} s, "
            f"load_sqlite {load_s:.1f} s, uplift report {rep_s:.1f} s"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

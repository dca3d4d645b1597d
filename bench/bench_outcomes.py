"""Outcome ingestion and learning throughput (issue: decision service part 2).

1. RecordOutcome over real gRPC (server in its own process, durability=full): unary at
   concurrency 1 and 16, and one RecordOutcomes stream; outcomes/s, every one durable.
2. Learning: the service's learner (read closed decisions from the log, rebuild the VW
   examples exactly as logged, learn) against raw ``vowpal_wabbit_next`` ``learn_one`` calls
   on the same, pre-parsed examples, measured in the same run.

Run: ``.venv/bin/python bench/bench_outcomes.py [--decisions 20000]``
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import vowpal_wabbit_next as vw

from bandit.eligibility import ChooseInput
from bandit.records import OutcomeInput
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Customer, Trigger
from bandit.vwformat import candidate_lines, label_prefix, reward_to_cost, shared_line
from offerbandit.bench import catalogue, drive, start_server
from server.client import OfferBanditClient

STAGES = ["new", "active", "at_risk", "lapsed", "vip"]


def _customer(i: int) -> Customer:
    return Customer(
        f"cust-{i}",
        {"stage": STAGES[i % 5], "ltv": float(i % 300), "frequency": float(i % 12)},
    )


def _trigger(i: int) -> Trigger:
    return Trigger("cart_abandoned" if i % 2 else "login", {"cart_value": float(i % 150)})


def prepare_log(data_dir: Path, n: int, n_treatments: int) -> ServiceConfig:
    """A log of ``n`` closed decisions (40% with a purchase), nothing learned yet."""
    cfg = ServiceConfig(data_dir=data_dir, background=False, synchronous="OFF")
    clock = ManualClock()
    svc = DecisionService(cfg, clock)
    svc.start()
    offers, channels = catalogue(n_treatments)
    rng = random.Random(0)
    for i in range(n):
        d = svc.choose(ChooseInput(_customer(i), _trigger(i), offers, channels))
        if rng.random() < 0.4:
            svc.record_outcome(OutcomeInput(f"o{i}", d.event_id, "", "purchase", 50.0, None))
        clock.advance(0.01)
    clock.advance(10**8)
    while svc.close_due_windows():
        pass
    svc.log.close()
    return cfg


def bench_learning(n: int, n_treatments: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = prepare_log(Path(tmp), n, n_treatments)
        svc = DecisionService(cfg)
        closed = svc.log.closed_after(0, n)  # for the raw baseline's examples
        ws = vw.Workspace(svc.vw_args)
        parser = vw.TextFormatParser(ws)
        scale = cfg.reward_rule.scale
        examples = []
        for cd in closed:
            d = cd.decision
            c = d.context
            lines = [shared_line(c.customer.features, c.trigger.type, c.trigger.features)]
            for i, a in enumerate(candidate_lines(d.treatments)):
                cost = reward_to_cost(cd.reward, scale)
                lines.append(label_prefix(cost, d.propensity) + a if i == d.chosen else a)
            examples.append([parser.parse_line(line) for line in lines])
        t0 = time.perf_counter()
        for ex in examples:
            ws.learn_one(ex)
        raw = time.perf_counter() - t0

        t0 = time.perf_counter()
        learned = svc.learn_pending()
        ours = time.perf_counter() - t0
        svc.log.close()
    assert learned == n
    print(
        f"learning, {n_treatments} treatments, {n} decisions:\n"
        f"  raw VW learn_one on pre-parsed examples: {n / raw:9.0f} decisions/s\n"
        f"  service learner (log read + decode + examples + learn): {n / ours:9.0f} decisions/s"
        f"  = {raw / ours:.0%} of raw"
    )


def bench_ingestion(n_decisions: int, n_outcomes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, address = start_server(Path(tmp) / "data", "full")
        try:
            offers, channels = catalogue(10)
            with OfferBanditClient(address) as c:
                events = [
                    c.choose(_customer(i), _trigger(i), offers, channels).event_id
                    for i in range(n_decisions)
                ]
                print(f"outcome ingestion over gRPC, durability=full ({n_decisions} decisions)")
                for conc in (1, 16):
                    stub = c.stub
                    tag = f"u{conc}"

                    def record(i: int, tag: str = tag) -> object:
                        return c.record_outcome(
                            f"{tag}-{i}", event_id=events[i % len(events)], revenue=10.0
                        )

                    r = drive(f"unary/{conc}", record, conc, 8.0, n_outcomes)
                    print(
                        f"  RecordOutcome unary, concurrency {conc:>2}: {r.rate:8.0f} outcomes/s"
                        f"  (p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms)"
                    )
                del stub
                batch = [
                    OutcomeInput(f"s-{i}", events[i % len(events)], "", "purchase", 5.0, None)
                    for i in range(n_outcomes)
                ]
                t0 = time.perf_counter()
                reply = c.record_outcomes(batch)
                elapsed = time.perf_counter() - t0
                assert reply.accepted == n_outcomes, reply.rejected
                print(
                    f"  RecordOutcomes stream of {n_outcomes}: {n_outcomes / elapsed:8.0f} "
                    f"outcomes/s ({elapsed:.2f} s, all acknowledged durable)"
                )
                s = c.stats()
                print(f"  server stats: {s.outcomes_attributed} attributed outcomes")
        finally:
            proc.terminate()
            proc.communicate(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--outcomes", type=int, default=20_000)
    ns = parser.parse_args(argv)
    bench_ingestion(2000, ns.outcomes)
    for k in (10, 50):
        bench_learning(ns.decisions, k)
    return 0


if __name__ == "__main__":
    sys.exit(main())

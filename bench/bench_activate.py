"""Activations per second: the unary ``Activate`` at 8 in flight (what ``campaign activate``
did before ActivateStream) against one ``ActivateStream``, in one run, against one server in
its own process (durability ``full``: every answer is durable), on fresh deferred decisions
each time.

The decisions are made first, through one ChooseStream (a campaign's, deferred). Then each
round activates ``--activations`` of them the unary way and as many others through the
stream, alternating which goes first; the table has each round's figures, the medians and
the ratio of the medians, with the server's CPU per activation (its ``/proc`` user + system
time over the run) and the machine's load average.

    .venv/bin/python -m bench.bench_activate [--activations 5000] [--rounds 3]
        [--log postgresql://…]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from bandit.records import ActivationInput
from bandit.types import Channel, Customer, Offer, Trigger
from offerbandit.bench import start_server
from server.client import OfferBanditClient, choose_request
from server.pb.offerbandit.v1 import decision_service_pb2 as pb

UNARY_IN_FLIGHT = 8
"""What ``campaign activate`` ran before ActivateStream: 8 unary calls in flight."""

OFFERS = [Offer("d10", discount_rate=0.1), Offer("ship", fixed_cost=4.0)]
CHANNELS = [Channel("email", contact_cost=0.01), Channel("push")]


def _deferred(c: OfferBanditClient, n: int, tag: str) -> list[str]:
    """``n`` new deferred decisions (one ChooseStream), their event ids."""

    def requests() -> Iterator[pb.ChooseRequest]:
        for i in range(n):
            yield choose_request(
                Customer(f"{tag}-{i}", {"stage": "active", "ltv": float(i % 300)}),
                Trigger("campaign"),
                OFFERS,
                CHANNELS,
                defer_activation=True,
            )

    ids = [r.decision.event_id for r in c.choose_stream(requests(), timeout=None)]
    assert len(ids) == n
    assert all(ids)
    return ids


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _unary(c: OfferBanditClient, ids: list[str]) -> None:
    def one(event_id: str) -> None:
        c.activate(event_id)

    with ThreadPoolExecutor(UNARY_IN_FLIGHT) as pool:
        list(pool.map(one, ids))


def _stream(c: OfferBanditClient, ids: list[str]) -> None:
    results = c.activate_stream((ActivationInput(e) for e in ids), timeout=None)
    n = 0
    for r in results:
        assert r.status == pb.ACTIVATION_STATUS_ACTIVATED, r.error
        n += 1
    assert n == len(ids)


def _timed(
    run: Callable[[OfferBanditClient, list[str]], None],
    c: OfferBanditClient,
    ids: list[str],
    pid: int,
) -> tuple[float, float]:
    """Activations/s and the server's CPU µs per activation."""
    cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
    run(c, ids)
    elapsed, cpu = time.perf_counter() - t0, _cpu_seconds(pid) - cpu0
    return len(ids) / elapsed, 1e6 * cpu / len(ids)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--activations", type=int, default=5000, help="per method and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--log", default="", help="a postgresql:// log (default: SQLite)")
    ns = p.parse_args(argv)
    n = ns.activations
    print(f"machine load at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"OFFERBANDIT_LOG": ns.log} if ns.log else None
        proc, address = start_server(Path(tmp) / "data", "full", env)
        try:
            with OfferBanditClient(address, timeout=30) as c:
                grpc.channel_ready_future(c.channel).result(timeout=30)
                t0 = time.perf_counter()
                ids = _deferred(c, 2 * n * ns.rounds, "bench")
                made = time.perf_counter() - t0
                print(
                    f"{len(ids)} deferred decisions made in {made:.1f} s; log: "
                    f"{'PostgreSQL' if ns.log else 'SQLite'}, durability full\n"
                    f"{'round':>5} {'method':<22} {'activations/s':>14} {'server CPU µs/act':>18}"
                )
                rates: dict[str, list[float]] = {"unary": [], "stream": []}
                cpus: dict[str, list[float]] = {"unary": [], "stream": []}
                methods = {"unary": _unary, "stream": _stream}
                for r in range(ns.rounds):
                    order = ["unary", "stream"] if r % 2 == 0 else ["stream", "unary"]
                    for k, name in enumerate(order):
                        lo = (2 * r + k) * n
                        rate, cpu = _timed(methods[name], c, ids[lo : lo + n], proc.pid)
                        rates[name].append(rate)
                        cpus[name].append(cpu)
                        label = (
                            f"Activate ×{UNARY_IN_FLIGHT}" if name == "unary" else "ActivateStream"
                        )
                        print(f"{r + 1:>5} {label:<22} {rate:>14.0f} {cpu:>18.0f}", flush=True)
                unary, stream = (statistics.median(rates[k]) for k in ("unary", "stream"))
                cpu_u, cpu_s = (statistics.median(cpus[k]) for k in ("unary", "stream"))
                print(
                    f"median: unary {unary:.0f}/s ({cpu_u:.0f} µs server CPU each), stream "
                    f"{stream:.0f}/s ({cpu_s:.0f} µs): the stream {stream / unary:.2f}× the "
                    f"unary rate, {cpu_u / cpu_s:.2f}× less server CPU per activation"
                )
                stats = c.stats()
                assert stats.activations == 2 * n * ns.rounds, stats.activations
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
    print(f"machine load at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

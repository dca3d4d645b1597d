"""The batch decision path against unary Choose, in one run: decisions per second of an outbound
campaign's requests (10 treatments: 5 offers × 2 channels, deferred, a request id each, the
campaign's trigger; five customer features), durable log (``synchronous=FULL``).

For each policy (the untrained uplift model, and one trained on synthetic decisions:
:func:`offerbandit.bench.trained_uplift_checkpoint`) a fresh server runs in its own process
and this process is the client:

* ``unary``: Choose calls from 16 threads (:func:`offerbandit.bench.drive`);
* ``stream``: one ChooseStream of the same requests (the campaign's path before batches);
* ``batch rpc``: one ChooseBatchStream, 1,024 customers a message (``--chunk``; each
  result's event id and chosen treatment read, as a campaign run does);

then, with no server running, ``in-process``: the same customers through
:class:`offerbandit.campaign_local.LocalChooser` on a fresh data folder (``campaign run
--data-dir``; its CPU shows in the server column). Printed: decisions/s and its ratio to
unary measured in the same run, the server's and this client process's CPU µs per decision,
and the ratio of unary's CPU per decision (server + client) to each path's: on a shared
two-core machine the throughput ratio is diluted by whatever else runs, the CPU ratio much
less.

    .venv/bin/python -m bench.bench_batch --customers 20000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from bandit.types import Customer, Trigger
from offerbandit.bench import catalogue, drive, process_cpu_seconds, start_server
from offerbandit.bench import trained_uplift_checkpoint as trained
from offerbandit.campaign import CHUNK
from offerbandit.campaign_local import LocalChooser, open_local
from server.client import OfferBanditClient, choose_request
from server.converters import batch_template_to_pb
from server.pb.offerbandit.v1 import decision_service_pb2 as pb

TRIGGER = Trigger("campaign_bench")


def customers(n: int, tag: str) -> list[tuple[Customer, str]]:
    stages = ["new", "active", "at_risk", "lapsed", "vip"]
    return [
        (
            Customer(
                f"cust-{i}",
                {"stage": stages[i % 5], "ltv": float(i % 300), "frequency": float(i % 12),
                 "device": "ios" if i % 3 else "android", "consent_email": True},
            ),
            f"{tag}:cust-{i}",
        )
        for i in range(n)
    ]  # fmt: skip


def template() -> pb.ChooseRequest:
    offers, channels = catalogue(10)
    return batch_template_to_pb(
        TRIGGER, offers, channels, defer_activation=True, campaign_id="bench"
    )


def requests(people: list[tuple[Customer, str]]) -> list[pb.ChooseRequest]:
    offers, channels = catalogue(10)
    return [
        choose_request(
            c, TRIGGER, offers, channels, defer_activation=True, request_id=r, campaign_id="bench"
        )
        for c, r in people
    ]


def chunks(
    people: list[tuple[Customer, str]], size: int = CHUNK
) -> Iterator[list[tuple[Customer, str]]]:
    for lo in range(0, len(people), size):
        yield people[lo : lo + size]


def consume(results: Iterator[pb.ChooseBatchResult]) -> int:
    """Read what a campaign run reads of each result; the number of decisions."""
    n = 0
    for message in results:
        for r in message.results:
            if not r.error_code:
                d = r.decision
                _ = (d.event_id, d.chosen.offer_id, d.chosen.channel_id, d.propensity)
                n += 1
    return n


def timed(fn: object, pid: int | None = None) -> tuple[int, float, float | None, float]:
    """``fn()``'s count, wall seconds, the server's CPU seconds meanwhile (None: no
    server) and this process's."""
    cpu0 = None if pid is None else process_cpu_seconds(pid)
    own0 = time.process_time()
    t0 = time.perf_counter()
    n = fn()  # type: ignore[operator]
    dt = time.perf_counter() - t0
    own = time.process_time() - own0
    cpu1 = None if pid is None else process_cpu_seconds(pid)
    return n, dt, None if cpu0 is None or cpu1 is None else cpu1 - cpu0, own


def bench_policy(
    label: str, n: int, seconds: float, folder: Path, model: Path | None, chunk: int = CHUNK
) -> None:
    env = {"OFFERBANDIT_POLICY": "uplift"}
    if model is not None:
        env["OFFERBANDIT_MODEL"] = str(model)
    proc, address = start_server(folder / f"server-{label}", "full", env)
    rows: list[tuple[str, float, float | None, float | None]] = []
    try:
        with OfferBanditClient(address, timeout=30) as c:
            grpc.channel_ready_future(c.channel).result(timeout=30)
            unary_reqs = requests(customers(4096, "unary"))

            def one(i: int) -> object:
                req = pb.ChooseRequest()
                req.CopyFrom(unary_reqs[i % len(unary_reqs)])
                req.request_id = f"unary-{i}-{time.perf_counter_ns()}"
                return c.stub.Choose(req, timeout=30)

            own0 = time.process_time()
            r = drive("unary", one, 16, seconds, 10**9, proc.pid)
            own = time.process_time() - own0  # warm-up calls included: a slight overstatement
            rows.append(
                (
                    "unary Choose ×16",
                    r.calls / r.seconds,
                    _us(r.server_cpu, r.calls),
                    _us(own, r.calls),
                )
            )
            stream_reqs = requests(customers(n, "stream"))
            got, dt, cpu, own = timed(
                lambda: sum(1 for _ in c.choose_stream(stream_reqs)), proc.pid
            )
            rows.append(("ChooseStream", got / dt, _us(cpu, got), _us(own, got)))
            people = customers(n, "batch")
            got, dt, cpu, own = timed(
                lambda: consume(c.choose_batches(template(), chunks(people, chunk))), proc.pid
            )
            rows.append((f"ChooseBatchStream ×{chunk}", got / dt, _us(cpu, got), _us(own, got)))
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    if model is not None:
        os.environ["OFFERBANDIT_MODEL"] = str(model)
    os.environ["OFFERBANDIT_POLICY"] = "uplift"
    try:
        svc = open_local(folder / f"local-{label}")
    finally:
        os.environ.pop("OFFERBANDIT_MODEL", None)
        os.environ.pop("OFFERBANDIT_POLICY", None)
    try:
        people = customers(n, "local")
        got, dt, _, own = timed(
            lambda: consume(LocalChooser(svc).choose_batches(template(), chunks(people, chunk)))
        )
        rows.append(("in-process batch", got / dt, _us(own, got), None))
    finally:
        svc.stop()
    base = rows[0][1]
    print(f"\npolicy: uplift, {label}; {n} customers a stream, 10 treatments, durable log (FULL)")
    print(
        f"{'path':<24} {'decisions/s':>12} {'× unary':>8} {'server µs/dec':>14} "
        f"{'client µs/dec':>14} {'CPU × unary':>12}"
    )
    unary_cpu = (rows[0][2] or 0.0) + (rows[0][3] or 0.0)
    for name, rate, server_us, client_us in rows:
        cpu = (server_us or 0.0) + (client_us or 0.0)
        print(
            f"{name:<24} {rate:>12.0f} {rate / base:>8.2f} {_text(server_us):>14} "
            f"{_text(client_us):>14} {unary_cpu / cpu if cpu else 0.0:>12.1f}",
            flush=True,
        )


def _text(us: float | None) -> str:
    return "" if us is None else f"{us:.0f}"


def _us(cpu: float | None, n: int) -> float | None:
    return None if cpu is None or n == 0 else 1e6 * cpu / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=8.0, help="of unary calls")
    p.add_argument("--policies", nargs="+", default=["untrained", "trained"])
    p.add_argument("--chunk", type=int, default=CHUNK, help="customers a ChooseBatch message")
    ns = p.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label in ns.policies:
            model = trained(folder / "model") if label == "trained" else None
            bench_policy(label, ns.customers, ns.seconds, folder, model, ns.chunk)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

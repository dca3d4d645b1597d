"""ChooseStream against unary Choose, over real gRPC, in the same run.

The server runs in its own process (``offerbandit serve``, durable log: durability=full,
group commit); the load comes from this process. Per round: unary Choose from 16 threads for
``--seconds``, then ``--streams`` ChooseStreams of ``--per-stream`` requests each (10
treatments, the bench's own request mix). Prints decisions/s, the server's CPU per decision
and the stream's throughput as a multiple of unary Choose's, per round (the machine is
shared: compare within a round).

    .venv/bin/python -m bench.bench_choose_stream [--rounds 2] [--streams 1 4]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import grpc

from offerbandit.bench import choose_requests, drive, process_cpu_seconds, start_server
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.pb.offerbandit.v1 import decision_service_pb2_grpc as pb_grpc


def stream_rate(
    address: str, pid: int, streams: int, per_stream: int, treatments: int
) -> tuple[float, float]:
    """(decisions/s, server CPU µs per decision) for ``streams`` concurrent ChooseStreams."""
    requests = choose_requests(treatments, 1024)
    channels = [grpc.insecure_channel(address) for _ in range(streams)]
    stubs = [pb_grpc.DecisionServiceStub(ch) for ch in channels]
    counts = [0] * streams

    def one(k: int) -> None:
        items = (requests[(k * per_stream + i) % len(requests)] for i in range(per_stream))
        for r in stubs[k].ChooseStream(items, timeout=600):
            if r.error_code:
                raise RuntimeError(f"refused: {r.error}")
            counts[k] += 1

    cpu0 = process_cpu_seconds(pid)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(k,)) for k in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu1 = process_cpu_seconds(pid)
    for ch in channels:
        ch.close()
    total = sum(counts)
    if total != streams * per_stream:
        raise RuntimeError(f"{total} results for {streams * per_stream} requests")
    cpu = (cpu1 or 0.0) - (cpu0 or 0.0)
    return total / elapsed, 1e6 * cpu / total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0, help="unary Choose per round")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    p.add_argument("--per-stream", type=int, default=5000)
    p.add_argument("--treatments", type=int, default=10)
    ns = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        proc, address = start_server(Path(tmp) / "data", "full")
        try:
            channels = [grpc.insecure_channel(address) for _ in range(16)]
            for ch in channels:
                grpc.channel_ready_future(ch).result(timeout=30)
            stubs = [pb_grpc.DecisionServiceStub(ch) for ch in channels]
            reqs: list[pb.ChooseRequest] = choose_requests(ns.treatments)
            print(f"{'round':>5} {'how':<26} {'decisions/s':>12} {'srv µs/dec':>11} {'× unary':>8}")
            for rnd in range(ns.rounds):
                unary = drive(
                    "choose",
                    lambda i: stubs[i % 16].Choose(reqs[i % len(reqs)], timeout=10),
                    16,
                    ns.seconds,
                    100_000,
                    server_pid=proc.pid,
                )
                cpu = unary.server_cpu_us_per_call or 0.0
                how = "unary Choose, 16 threads"
                print(
                    f"{rnd:>5} {how:<26} {unary.rate:>12.0f} {cpu:>11.0f} {1.0:>8.2f}", flush=True
                )
                for streams in ns.streams:
                    rate, cpu = stream_rate(
                        address, proc.pid, streams, ns.per_stream, ns.treatments
                    )
                    how = f"ChooseStream × {streams}"
                    print(
                        f"{rnd:>5} {how:<26} {rate:>12.0f} {cpu:>11.0f} {rate / unary.rate:>8.2f}",
                        flush=True,
                    )
            for ch in channels:
                ch.close()
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

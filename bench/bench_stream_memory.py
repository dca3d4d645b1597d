"""Server memory under outcome streams: does it grow with the stream's length?

Each case starts a fresh server in its own process (durability=normal, so the disk is not
what is measured), sends one stream and reads the server's resident memory from
``/proc/PID/status``: before, the high-water mark during the stream (``VmHWM``) and after.

* ``RecordOutcomes`` answers once, with every item's result: its response grows with the
  stream (and is kept within 4 MiB: a longer stream is refused, which this prints).
* ``StreamOutcomes`` answers each outcome as it becomes durable: its memory should not
  depend on the stream's length.
* The big-message cases send 1 MiB outcomes (ids too long, so each is rejected): the
  server must not hold the stream's messages.

    .venv/bin/python bench/bench_stream_memory.py [--small 20000,200000] [--big 300]

Prints MiB and, per method, the growth of the longer stream over the shorter one's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from bandit.records import OutcomeInput
from offerbandit.bench import start_server
from server.client import OfferBanditClient
from server.converters import outcome_to_pb
from server.pb.offerbandit.v1 import decision_service_pb2 as pb


def _status_mib(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _items(n: int, id_bytes: int) -> Iterator[pb.Outcome]:
    pad = "x" * max(0, id_bytes - 12)
    for k in range(n):
        yield outcome_to_pb(OutcomeInput(f"o{k}{pad}", "", f"c{k % 1000}", "click", 0.0, None))


def measure(method: str, n: int, id_bytes: int) -> tuple[float, float, float, int]:
    """(RSS before, peak, after) in MiB and the number of results for one stream."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, address = start_server(Path(tmp) / "data", "normal")
        try:
            with OfferBanditClient(address) as c:
                grpc.channel_ready_future(c.channel).result(timeout=30)
                c.stats()
                time.sleep(0.5)
                before = _status_mib(proc.pid, "VmRSS")
                if method == "RecordOutcomes":
                    try:
                        reply = c.stub.RecordOutcomes(_items(n, id_bytes), timeout=600)
                        results = len(reply.results)
                    except grpc.RpcError as exc:  # refused: its answer would not fit 4 MiB
                        if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                            raise
                        results = -1
                else:
                    results = sum(
                        1 for _ in c.stub.StreamOutcomes(_items(n, id_bytes), timeout=600)
                    )
                peak = _status_mib(proc.pid, "VmHWM")
                after = _status_mib(proc.pid, "VmRSS")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return before, peak, after, results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--small", default="20000,100000", help="stream lengths of small outcomes")
    p.add_argument("--big", type=int, default=300, help="number of 1 MiB outcomes")
    ns = p.parse_args(argv)
    lengths = [int(x) for x in ns.small.split(",")]
    cases = [(m, n, 64) for m in ("RecordOutcomes", "StreamOutcomes") for n in lengths]
    cases += [(m, ns.big, 2**20) for m in ("RecordOutcomes", "StreamOutcomes")]
    print(
        f"{'method':15} {'outcomes':>9} {'size':>7} {'before':>8} {'peak':>8} {'after':>8}"
        f" {'peak-before':>12}  (MiB)"
    )
    growth: dict[str, list[float]] = {}
    for method, n, size in cases:
        before, peak, after, results = measure(method, n, size)
        if results == -1:
            print(f"{method:15} {n:9d}: refused (its answer would exceed 4 MiB)", flush=True)
            continue
        if results != n:
            print(f"{method}: {results} results for {n} outcomes", file=sys.stderr)
            return 1
        label = "1 MiB" if size >= 2**20 else f"{size} B"
        print(
            f"{method:15} {n:9d} {label:>7} {before:8.1f} {peak:8.1f} {after:8.1f}"
            f" {peak - before:12.1f}",
            flush=True,
        )
        if size < 2**20:
            growth.setdefault(method, []).append(peak - before)
    for method, g in growth.items():
        if len(g) >= 2 and g[0] > 0:
            print(
                f"{method}: peak growth ×{g[-1] / g[0]:.2f} for a ×{lengths[-1] / lengths[0]:.0f}"
                " longer stream"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

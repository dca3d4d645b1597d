"""What the per-call interceptors cost: server CPU per Choose with tokens and metrics on
against neither, in one run — and, with ``--baseline-tree``, the same for another source tree
(an older commit's checkout), interleaved in the same rounds.

All the servers run at once (``offerbandit serve`` processes, durability full, idle but for
the one being measured); each round measures Choose with 10 treatments on each in turn, so a
drifting machine hits all alike. Reported: each server's CPU per call over all rounds
(``offerbandit bench``'s "srv µs"), and per tree the ratio tokens+metrics / plain, with the
lowest and highest per-round ratio.

    .venv/bin/python bench/bench_interceptors.py [--baseline-tree /tmp/old-checkout]
        [--rounds 5] [--seconds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc

from offerbandit.bench import Result, choose_requests, drive, merge
from server.auth import add_token
from server.client import open_channel
from server.pb.offerbandit.v1 import decision_service_pb2_grpc as pb_grpc


def _serve(tree: Path, data: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, OFFERBANDIT_LOG_LEVEL="WARNING", **env_extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "offerbandit.cli", "serve", "--port", "0", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tree,  # -m puts the tree first on sys.path: its code runs
    )
    assert proc.stdout is not None
    m = re.search(r"listening on (\S+):(\d+)", proc.stdout.readline())
    if not m:
        proc.kill()
        raise RuntimeError(f"a server from {tree} did not start")
    return proc, f"127.0.0.1:{m.group(2)}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline-tree", type=Path, help="another checkout to measure alike")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    p.add_argument("--concurrency", type=int, default=16)
    ns = p.parse_args(argv)
    here = Path(__file__).resolve().parent.parent
    trees = {"this tree": here}
    if ns.baseline_tree is not None:
        trees = {"baseline": ns.baseline_tree.resolve(), **trees}
    requests = choose_requests(10)
    with tempfile.TemporaryDirectory() as tmp:
        tokens_file = Path(tmp) / "tokens.toml"
        token = add_token(tokens_file, "bench", ["decide"])
        secured = {"OFFERBANDIT_TOKENS_FILE": str(tokens_file), "OFFERBANDIT_METRICS_PORT": "0"}
        servers: dict[tuple[str, str], tuple[subprocess.Popen[str], str]] = {}
        try:
            for name, tree in trees.items():
                for mode, env in (("plain", {}), ("tokens+metrics", secured)):
                    servers[name, mode] = _serve(tree, Path(tmp) / f"{name}-{mode}", env)
            stubs = {}
            for key, (_proc, address) in servers.items():
                channels = [
                    open_channel(address, token=token if key[1] != "plain" else None)
                    for _ in range(ns.concurrency)
                ]
                for ch in channels:
                    grpc.channel_ready_future(ch).result(timeout=30)
                stubs[key] = [pb_grpc.DecisionServiceStub(ch) for ch in channels]
            parts: dict[tuple[str, str], list[Result]] = {k: [] for k in servers}
            for r in range(ns.rounds):
                for key, (proc, _address) in servers.items():
                    mine = stubs[key]

                    def choose(i: int, mine: list[pb_grpc.DecisionServiceStub] = mine) -> object:
                        return mine[i % ns.concurrency].Choose(
                            requests[i % len(requests)], timeout=10
                        )

                    parts[key].append(
                        drive("choose/10", choose, ns.concurrency, ns.seconds, 100_000, proc.pid)
                    )
                print(f"round {r + 1}/{ns.rounds} done", file=sys.stderr, flush=True)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
            for proc, _ in servers.values():
                proc.communicate(timeout=60)
    print(f"Choose/10, {ns.concurrency} in flight, {ns.rounds} rounds × {ns.seconds:g} s, "
          f"{os.cpu_count()} cores; server CPU per call (µs)")  # fmt: skip
    for name in trees:
        plain, both = merge(parts[name, "plain"]), merge(parts[name, "tokens+metrics"])
        per_round = [
            (b.server_cpu_us_per_call or 0) / (a.server_cpu_us_per_call or 1)
            for a, b in zip(parts[name, "plain"], parts[name, "tokens+metrics"], strict=True)
        ]
        print(
            f"{name:<10} plain {plain.server_cpu_us_per_call:6.0f}  tokens+metrics "
            f"{both.server_cpu_us_per_call:6.0f}  ratio "
            f"{(both.server_cpu_us_per_call or 0) / (plain.server_cpu_us_per_call or 1):.2f} "
            f"(rounds {min(per_round):.2f}–{max(per_round):.2f}, "
            f"median {statistics.median(per_round):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

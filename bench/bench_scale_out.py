"""Scale-out on PostgreSQL against the embedded SQLite log: Choose calls/s and CPU per
Choose with one process on SQLite, one decider on PostgreSQL, and two deciders on PostgreSQL,
in one run.

Each round starts fresh servers (``offerbandit serve``, durability full; deciders with
``--role decider`` on one fresh PostgreSQL schema, no trainer running) and drives Choose with
10 treatments from this process at the given concurrency, spreading the calls over the
servers. Rounds alternate the three set-ups, so a drifting machine hits all alike. Per call it
reports the servers' CPU (all their threads, summed over the deciders: "srv µs") and the CPU
of the PostgreSQL backends serving them ("db µs": the backends whose application name starts
with ``offerbandit``; the server's WAL writer and checkpointer are not counted).

On a two-core machine the load generator, the deciders and PostgreSQL share the cores: the
figures say what one decider costs, not what N machines would do (docs/scale-out.md).

    .venv/bin/python bench/bench_scale_out.py [--rounds 3] [--seconds 4] [--concurrency 16]

The PostgreSQL server is ``OFFERBANDIT_TEST_POSTGRES_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
import psycopg

from offerbandit.bench import (
    Result,
    choose_requests,
    drive,
    merge,
    process_cpu_seconds,
    report,
    start_server,
)
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.pb.offerbandit.v1 import decision_service_pb2_grpc as pb_grpc

DSN = os.environ.get("OFFERBANDIT_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def db_backends(admin: psycopg.Connection[tuple[int]]) -> list[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'offerbandit%%'"
    ).fetchall()
    return [int(r[0]) for r in rows]


def cpu_of(pids: list[int]) -> float:
    return sum(c for c in (process_cpu_seconds(p) for p in pids) if c is not None)


def measure(
    label: str,
    servers: list[tuple[subprocess.Popen[str], str]],
    concurrency: int,
    seconds: float,
    requests: list[pb.ChooseRequest],
    admin: psycopg.Connection[tuple[int]],
) -> tuple[Result, float]:
    channels = [grpc.insecure_channel(servers[k % len(servers)][1]) for k in range(concurrency)]
    for ch in channels:
        grpc.channel_ready_future(ch).result(timeout=30)
    stubs = [pb_grpc.DecisionServiceStub(ch) for ch in channels]

    def choose(i: int) -> object:
        return stubs[i % concurrency].Choose(requests[i % len(requests)], timeout=10)

    for i in range(concurrency * 20):  # warm-up: connections and catalogues on every server
        choose(i)
    pids = [p.pid for p, _ in servers]
    backends = db_backends(admin)
    srv0, db0 = cpu_of(pids), cpu_of(backends)
    result = drive(label, choose, concurrency, seconds, 100_000)
    srv1, db1 = cpu_of(pids), cpu_of(backends)
    for ch in channels:
        ch.close()
    return replace(result, server_cpu=srv1 - srv0), (db1 - db0) / max(result.calls, 1) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=16)
    ns = parser.parse_args(argv)
    requests = choose_requests(10, count=4096)
    labels = ("sqlite x1", "pg x1", "pg x2")
    parts: dict[str, list[Result]] = {k: [] for k in labels}
    db_us: dict[str, list[float]] = {k: [] for k in labels}
    with tempfile.TemporaryDirectory() as tmp, psycopg.connect(DSN, autocommit=True) as admin:
        for r in range(ns.rounds):
            for label in labels:
                schema = f"bench_scale_{os.getpid()}_{r}_{label[-1]}"
                admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                admin.execute(f"CREATE SCHEMA {schema}")
                url = f"{DSN}{'&' if '?' in DSN else '?'}options=-csearch_path%3D{schema}"
                n = 2 if label == "pg x2" else 1
                start: Callable[[int], tuple[subprocess.Popen[str], str]]
                if label.startswith("sqlite"):
                    start = lambda k, r=r: start_server(Path(tmp) / f"lite{r}{k}", "full")  # noqa: E731
                else:
                    env = {"OFFERBANDIT_LOG": url, "OFFERBANDIT_ROLE": "decider"}
                    start = lambda k, r=r, env=env, label=label: start_server(  # noqa: E731
                        Path(tmp) / f"{label[-1]}{r}{k}",
                        "full",
                        dict(env, OFFERBANDIT_EVENT_ID_PREFIX=f"{k + 1:016x}"),
                    )
                servers = [start(k) for k in range(n)]
                try:
                    res, db = measure(label, servers, ns.concurrency, ns.seconds, requests, admin)
                finally:
                    for proc, _ in servers:
                        proc.terminate()
                        proc.communicate(timeout=60)
                    admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                parts[label].append(res)
                db_us[label].append(db)
                print(
                    f"round {r + 1} {label:<10} {res.rate:7.0f} calls/s  srv µs "
                    f"{res.server_cpu_us_per_call:.0f}  db µs {db:.0f}",
                    flush=True,
                )
    merged = {k: merge(v) for k, v in parts.items()}
    base = merged["sqlite x1"]
    print(report([replace(base, name="health"), merged["pg x1"], merged["pg x2"]]))
    print("(the 'health' row is one process on SQLite, the baseline of 'vs health')")
    for label in labels:
        m = merged[label]
        cpu = m.server_cpu_us_per_call
        assert cpu is not None
        db = sum(db_us[label]) / len(db_us[label])
        print(
            f"{label:<10} {m.rate:7.0f} calls/s ({m.rate / base.rate:.2f}× SQLite)  p50 "
            f"{m.p50_ms:.2f} ms  p99 {m.p99_ms:.2f} ms  server CPU {cpu:.0f} µs/Choose  "
            f"PostgreSQL backends {db:.0f} µs/Choose"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

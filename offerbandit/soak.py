"""``offerbandit soak``: minutes of mixed load at a fixed rate against a server in its own
process, printing its RSS and the decision log's and WAL's sizes at intervals.

Not a timed test: a long-run check that memory and the WAL stay bounded (issue 14's goal:
RSS growth under 10% after warm-up, WAL bounded). The load is Choose (10 treatments, a
rotating customer base), an outcome for every third decision, a small RecordOutcomes stream
every 50 calls and GetStats every 100, paced to ``--rate`` calls per second from one client
thread; attribution windows are short (``--window`` seconds) so the closer and the learner
work throughout.

    offerbandit soak --minutes 5 --rate 250 --every 20
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from bandit.records import OutcomeInput
from bandit.types import Channel, Customer, Offer, Trigger
from offerbandit.bench import start_server
from server.client import OfferBanditClient, choose_request
from server.converters import outcome_to_pb


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _mib(path: Path) -> float:
    try:
        return path.stat().st_size / 2**20
    except FileNotFoundError:
        return 0.0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="offerbandit soak", description=__doc__)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=250.0, help="calls per second")
    p.add_argument("--every", type=float, default=20.0, help="seconds between reports")
    p.add_argument("--window", type=float, default=30.0, help="attribution window, seconds")
    p.add_argument("--durability", choices=["full", "normal"], default="full")
    ns = p.parse_args(argv)
    os.environ["OFFERBANDIT_ATTRIBUTION_WINDOW_SECONDS"] = str(ns.window)
    offers = [Offer(f"offer{i}", {"kind": f"k{i % 3}"}, discount_rate=0.1) for i in range(5)]
    channels = [Channel("email", contact_cost=0.01), Channel("sms", contact_cost=0.05)]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        proc, address = start_server(data, ns.durability)
        log_path, wal_path = data / "decisions.sqlite", data / "decisions.sqlite-wal"
        try:
            with OfferBanditClient(address) as c:
                grpc.channel_ready_future(c.channel).result(timeout=30)
                start = time.monotonic()
                end = start + ns.minutes * 60
                next_report = start
                calls = errors = 0
                peak_wal = 0.0
                print("   s   calls  errors   RSS MiB   log MiB   WAL MiB  (peak WAL)", flush=True)
                while True:
                    now = time.monotonic()
                    peak_wal = max(peak_wal, _mib(wal_path))
                    if now >= next_report:
                        print(
                            f"{now - start:4.0f} {calls:7d} {errors:7d} {_rss_mib(proc.pid):9.1f}"
                            f" {_mib(log_path):9.1f} {_mib(wal_path):9.1f}  ({peak_wal:.1f})",
                            flush=True,
                        )
                        next_report += ns.every
                    if now >= end:
                        break
                    due = start + calls / ns.rate
                    if due > now:
                        time.sleep(due - now)
                    i = calls
                    calls += 1
                    try:
                        cust = Customer(f"c{i % 5000}", {"ltv": float(i % 97), "stage": "a"})
                        req = choose_request(cust, Trigger("login", {"n": 1.0}), offers, channels)
                        answer = c.stub.Choose(req, timeout=10)
                        if i % 3 == 0:
                            c.record_outcome(
                                f"o{i}", event_id=answer.event_id, type="purchase", revenue=40.0
                            )
                            calls += 1
                        if i % 50 == 0:
                            stream = [
                                outcome_to_pb(
                                    OutcomeInput(f"s{i}-{k}", "", cust.id, "click", 0.0, None)
                                )
                                for k in range(20)
                            ]
                            c.stub.RecordOutcomes(iter(stream), timeout=30)
                            calls += 1
                        if i % 100 == 0:
                            c.stats()
                            calls += 1
                    except grpc.RpcError as exc:
                        errors += 1
                        if errors <= 5:
                            print(f"error: {exc.code()} {exc.details()}", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return 0

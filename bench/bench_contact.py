"""The contact policy's cost on the hot path: server CPU per Choose with a five-rule policy
against none, in one run.

Each round starts a fresh server process (``offerbandit serve``, durability full) without a
policy and then one with ``FIVE_RULES`` (a cap, a repeat, a suppression, quiet hours and a
count budget — every rule is evaluated and its reads run, none removes anything, so the
policy's own cost is measured and not a cheaper pmf over fewer candidates), drives Choose
with 10 treatments at the given concurrency over 4,096 customers, and reads the server's CPU
time per call (``offerbandit bench``'s "srv µs"). Rounds alternate, so a drifting machine
hits both alike; the ratio is policy / none over all rounds.

    .venv/bin/python bench/bench_contact.py [--rounds 3] [--seconds 4] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import grpc

from offerbandit.bench import Result, choose_requests, drive, merge, report, start_server
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.pb.offerbandit.v1 import decision_service_pb2_grpc as pb_grpc

FIVE_RULES = """
version = "bench: five rules that evaluate but never remove"

[[cap]]
name = "three a week"
max = 1000
days = 7

[[repeat]]
name = "not the same offer twice in a second"
hours = 0.0003

[[suppression]]
name = "unsubscribed"
outcomes = ["unsubscribe", "complaint"]
days = 0

[[quiet_hours]]
name = "one quiet minute"
channel = "channel_1"
start = "03:00"
end = "03:01"

[[budget]]
name = "coupons"
offer = "offer_0"
count = 1000000000
"""


def measure(
    policy: Path | None,
    data: Path,
    concurrency: int,
    seconds: float,
    requests: list[pb.ChooseRequest],
) -> Result:
    os.environ["OFFERBANDIT_CONTACT_POLICY"] = "" if policy is None else str(policy)
    proc, address = start_server(data, "full")
    try:
        channels = [grpc.insecure_channel(address) for _ in range(concurrency)]
        for ch in channels:
            grpc.channel_ready_future(ch).result(timeout=30)
        stubs = [pb_grpc.DecisionServiceStub(ch) for ch in channels]

        def choose(i: int) -> object:
            return stubs[i % concurrency].Choose(requests[i % len(requests)], timeout=10)

        name = "choose/10" if policy is None else "policy/10"
        result = drive(name, choose, concurrency, seconds, 50_000, server_pid=proc.pid)
        digest = stubs[0].GetStats(pb.GetStatsRequest(), timeout=10).contact_policy
        if bool(digest) != (policy is not None):  # the server runs what it is said to run
            raise RuntimeError(f"server's contact policy is {digest!r}, expected {policy}")
        for ch in channels:
            ch.close()
        return result
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
        os.environ.pop("OFFERBANDIT_CONTACT_POLICY", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=16)
    ns = parser.parse_args(argv)
    requests = choose_requests(10, count=4096)
    parts: dict[str, list[Result]] = {"none": [], "policy": []}
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "five.toml"
        policy.write_text(FIVE_RULES)
        for r in range(ns.rounds):
            for label, file in (("none", None), ("policy", policy)):
                res = measure(file, Path(tmp) / f"{label}{r}", ns.concurrency, ns.seconds, requests)
                parts[label].append(res)
                print(
                    f"round {r + 1} {label:<7} srv µs {res.server_cpu_us_per_call:.0f}", flush=True
                )
    none, with_policy = merge(parts["none"]), merge(parts["policy"])
    # report() wants a health row to compare with: none plays it here.
    print(report([replace(none, name="health"), with_policy]))
    a, b = none.server_cpu_us_per_call, with_policy.server_cpu_us_per_call
    assert a is not None
    assert b is not None
    print(f"server CPU per Choose: none {a:.0f} µs, five rules {b:.0f} µs, ratio {b / a:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``offerbandit bench``: Choose over real gRPC against the health check as a baseline.

The server runs in its own process (``offerbandit serve`` on a free port, durable logging on,
a fresh data folder); the load generator runs here, in another process. For each
concurrency level it measures the health-check RPC first (the cheapest call the same server
answers: the gRPC Python floor) and then Choose with 10 and 50 treatments, and prints calls/s,
p50 and p99, the server process's CPU time per call (all threads), and Choose's throughput as a
share of the health check's.

Figures are ratios within one run because this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bandit.types import Channel, Customer, Offer, Trigger
from server.auth import add_token
from server.client import choose_request, open_channel
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.pb.offerbandit.v1 import decision_service_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Result:
    name: str
    concurrency: int
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    latencies_ms: np.ndarray[Any, Any] = field(
        repr=False, compare=False, default_factory=lambda: np.zeros(0)
    )
    round_rates: tuple[float, ...] = ()
    """Calls/s of each round, when the measurement was taken in interleaved rounds."""
    server_cpu: float | None = None
    """CPU seconds (user + system, all threads) the server process spent meanwhile."""
    policy: str = ""
    """The server's live policy when several are compared (``--policy``); empty: its default."""
    round_cpu: tuple[float, ...] = ()
    """Server CPU µs per call of each round."""

    @property
    def server_cpu_us_per_call(self) -> float | None:
        if self.server_cpu is None or not self.calls:
            return None
        return 1e6 * self.server_cpu / self.calls

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


def merge(parts: Sequence[Result]) -> Result:
    """One result from the rounds of the same measurement.

    >>> a = Result("x", 1, 10, 1.0, 1.0, 2.0, np.ones(10))
    >>> b = Result("x", 1, 30, 1.0, 3.0, 3.0, np.full(30, 3.0))
    >>> m = merge([a, b])
    >>> m.rate, m.p50_ms, m.round_rates
    (20.0, 3.0, (10.0, 30.0))
    """
    lat = np.concatenate([p.latencies_ms for p in parts])
    cpu = [p.server_cpu for p in parts]
    return Result(
        parts[0].name,
        parts[0].concurrency,
        sum(p.calls for p in parts),
        sum(p.seconds for p in parts),
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 99)),
        lat,
        tuple(p.rate for p in parts),
        None if None in cpu else sum(c for c in cpu if c is not None),
        parts[0].policy,
        tuple(u for p in parts if (u := p.server_cpu_us_per_call) is not None),
    )


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; else None)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def catalogue(n_treatments: int) -> tuple[list[Offer], list[Channel]]:
    """Offers × channels making ``n_treatments`` (10 = 5 × 2, 50 = 10 × 5)."""
    n_channels = 2 if n_treatments <= 10 else 5
    n_offers = n_treatments // n_channels
    offers = [
        Offer(f"offer_{i}", {"kind": f"k{i % 4}", "value": float(i)}, discount_rate=0.05 * (i % 4))
        for i in range(n_offers)
    ]
    channels = [
        Channel(f"channel_{j}", {"instant": j % 2 == 0}, contact_cost=0.01 * j)
        for j in range(n_channels)
    ]
    return offers, channels


def choose_requests(n_treatments: int, count: int = 256) -> list[pb.ChooseRequest]:
    offers, channels = catalogue(n_treatments)
    stages = ["new", "active", "at_risk", "lapsed", "vip"]
    return [
        choose_request(
            Customer(
                f"cust-{i}",
                {"stage": stages[i % 5], "ltv": float(i % 300), "frequency": float(i % 12),
                 "device": "ios" if i % 3 else "android", "consent_email": True},
            ),
            Trigger("cart_abandoned" if i % 2 else "login", {"cart_value": float(i % 150)}),
            offers,
            channels,
        )
        for i in range(count)
    ]  # fmt: skip


def drive(
    name: str,
    call: Callable[[int], object],
    concurrency: int,
    seconds: float,
    max_calls: int,
    server_pid: int | None = None,
) -> Result:
    """Run ``call`` from ``concurrency`` threads for ``seconds`` (or ``max_calls``); with
    ``server_pid``, also what CPU that process spent meanwhile."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    per_thread = max(1, max_calls // concurrency)
    deadline = 0.0  # set once the warm-up is over

    def worker(k: int) -> None:
        lat = latencies[k]
        i = k
        # At least one measured call per thread, however slow the machine (a warm-up that
        # outlasted ``seconds`` left nothing to measure).
        while not lat or (len(lat) < per_thread and time.perf_counter() < deadline):
            t0 = time.perf_counter()
            call(i)
            lat.append(time.perf_counter() - t0)
            i += concurrency

    for k in range(concurrency):  # warm-up: channels, caches
        for _ in range(20):
            call(k)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    cpu0 = None if server_pid is None else process_cpu_seconds(server_pid)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu1 = None if server_pid is None else process_cpu_seconds(server_pid)
    all_lat = np.concatenate([np.asarray(x) for x in latencies]) * 1000
    return Result(
        name,
        concurrency,
        len(all_lat),
        elapsed,
        float(np.percentile(all_lat, 50)),
        float(np.percentile(all_lat, 99)),
        all_lat,
        server_cpu=None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
    )


def start_server(
    data_dir: Path, durability: str, env_extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, OFFERBANDIT_LOG_LEVEL="WARNING", OFFERBANDIT_DURABILITY=durability)
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "offerbandit.cli",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on (\S+):(\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, f"127.0.0.1:{m.group(2)}"


def trained_uplift_checkpoint(path: Path, decisions: int = 3000, seed: int = 0) -> Path:
    """An uplift checkpoint trained on ``decisions`` synthetic decisions over the bench's own
    catalogues and contexts (uniformly chosen treatments; purchases more likely for some
    offers and stages), so the bench's uplift server scores with a learned posterior, as a
    live one does, instead of the untrained model's shortcut."""
    from bandit.checkpoint import Checkpoint, CheckpointStore
    from bandit.types import Context, Treatment
    from bandit.uplift import UpliftPolicy, uplift_arguments

    rng = np.random.default_rng(seed)
    policy = UpliftPolicy.from_args(uplift_arguments("", seed))
    stages = ["new", "active", "at_risk", "lapsed", "vip"]
    for n in (10, 50):
        offers, channels = catalogue(n)
        treatments = [Treatment(None, None)] + [Treatment(o, c) for o in offers for c in channels]
        for i in range(decisions):
            customer = Customer(
                f"cust-{i}",
                {"stage": stages[i % 5], "ltv": float(i % 300), "frequency": float(i % 12),
                 "device": "ios" if i % 3 else "android", "consent_email": True},
            )  # fmt: skip
            trigger = Trigger(
                "cart_abandoned" if i % 2 else "login", {"cart_value": float(i % 150)}
            )
            t = treatments[int(rng.integers(len(treatments)))]
            lift = 0.0 if t.offer is None else 0.02 * (int(t.offer.id.split("_")[1]) % 4)
            bought = bool(rng.random() < 0.1 + lift + 0.02 * (i % 5))
            revenue = float(rng.gamma(4.0, 20.0)) if bought else 0.0
            policy.learn(Context(customer, trigger), t, revenue, bought)
    store = CheckpointStore(path)
    return store.save(
        Checkpoint(1, 0, policy.learned, list(policy.args), time.time(), policy.serialize())
    )


def run(
    concurrencies: Sequence[int],
    treatments: Sequence[int],
    seconds: float,
    max_calls: int,
    durability: str = "full",
    rounds: int = 3,
    auth: bool = False,
    metrics: bool = False,
    policies: Sequence[str] = ("",),
    trained: int = 3000,
) -> list[Result]:
    """Each concurrency: health, then Choose per treatment count, in ``rounds`` interleaved
    rounds of ``seconds / rounds`` each (a drifting machine speed then hits all alike). With
    ``auth``, the server checks bearer tokens and every call carries one; with ``metrics``,
    it serves Prometheus metrics (every call timed and counted). With several ``policies``
    (``vw``, ``uplift``), one server per policy runs throughout and each round measures them
    in turn (the uplift server starts from a model trained on ``trained`` decisions)."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        token, env = None, {}
        if auth:
            tokens_file = Path(tmp) / "tokens.toml"
            token = add_token(tokens_file, "bench", ["decide"])
            env["OFFERBANDIT_TOKENS_FILE"] = str(tokens_file)
        if metrics:
            env["OFFERBANDIT_METRICS_PORT"] = "0"
        servers: list[tuple[str, subprocess.Popen[str], str]] = []
        try:
            for policy in policies:
                penv = dict(env)
                if policy:
                    penv["OFFERBANDIT_POLICY"] = policy
                if policy == "uplift" and trained > 0:
                    ckpt = trained_uplift_checkpoint(Path(tmp) / "model", trained)
                    penv["OFFERBANDIT_MODEL"] = str(ckpt)
                proc, address = start_server(Path(tmp) / f"data-{policy}", durability, penv)
                servers.append((policy, proc, address))
            results = _measure(
                servers, concurrencies, treatments, seconds, max_calls, rounds, token
            )
        finally:
            for _, proc, _ in servers:
                proc.terminate()
                proc.communicate(timeout=60)  # waits, and closes its stdout
    return results


def _measure(
    servers: Sequence[tuple[str, subprocess.Popen[str], str]],
    concurrencies: Sequence[int],
    treatments: Sequence[int],
    seconds: float,
    max_calls: int,
    rounds: int,
    token: str | None,
) -> list[Result]:
    results: list[Result] = []
    requests = {n: choose_requests(n) for n in treatments}
    hreq = health_pb2.HealthCheckRequest(service="")
    for c in concurrencies:
        calls: dict[tuple[str, str], tuple[Callable[[int], object], int]] = {}
        opened: list[grpc.Channel] = []
        for policy, proc, address in servers:
            channels = [open_channel(address, token=token) for _ in range(c)]
            opened += channels
            for ch in channels:
                grpc.channel_ready_future(ch).result(timeout=30)
            health = [health_pb2_grpc.HealthStub(ch) for ch in channels]
            stubs = [pb_grpc.DecisionServiceStub(ch) for ch in channels]

            def check(i: int, health: list[Any] = health) -> object:
                return health[i % len(health)].Check(hreq, timeout=10)

            calls[(policy, "health")] = (check, proc.pid)
            for n in treatments:
                reqs = requests[n]

                def choose(
                    i: int, reqs: list[pb.ChooseRequest] = reqs, stubs: list[Any] = stubs
                ) -> object:
                    return stubs[i % len(stubs)].Choose(reqs[i % len(reqs)], timeout=10)

                calls[(policy, f"choose/{n}")] = (choose, proc.pid)
        parts: dict[tuple[str, str], list[Result]] = {key: [] for key in calls}
        for _ in range(rounds):
            for (policy, name), (call, pid) in calls.items():
                part = drive(
                    name, call, c, seconds / rounds, max(1, max_calls // rounds), server_pid=pid
                )
                parts[(policy, name)].append(replace(part, policy=policy))
        results += [merge(p) for p in parts.values()]
        for ch in opened:
            ch.close()
    return results


def report(results: Sequence[Result]) -> str:
    """A table; "rounds" gives the lowest and highest per-round ratio to the health check and
    "median" their median (on a noisy machine steadier than the overall ratio), "srv µs" the
    server process's CPU time per call (all its threads).

    >>> h = Result("health", 16, 300, 1.0, 1.0, 2.0, round_rates=(100.0, 200.0), server_cpu=0.12)
    >>> c = Result("choose/10", 16, 150, 1.0, 2.0, 4.0, round_rates=(60.0, 90.0))
    >>> print(report([h, c]))  # doctest: +NORMALIZE_WHITESPACE
    call         conc   calls   calls/s   p50 ms   p99 ms   srv µs  vs health    rounds  median
    health         16     300       300     1.00     2.00      400      100%
    choose/10      16     150       150     2.00     4.00        –       50%   45%–60%     52%
    """
    policies = list(dict.fromkeys(r.policy for r in results))
    named = len(policies) > 1
    head = f"{'policy':<8}" if named else ""
    lines = [
        f"{head}{'call':<12}{'conc':>5}{'calls':>8}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'srv µs':>9}{'vs health':>11}{'rounds':>10}{'median':>8}"
    ]
    base = {(r.policy, r.concurrency): r for r in results if r.name == "health"}
    for r in results:
        health = base[(r.policy, r.concurrency)]
        ratio = r.rate / health.rate if r.name != "health" else 1.0
        spread = middle = ""
        if r.name != "health" and len(r.round_rates) > 1:
            ratios = [a / b for a, b in zip(r.round_rates, health.round_rates, strict=True)]
            spread = f"{min(ratios):.0%}–{max(ratios):.0%}"
            middle = f"{statistics.median(ratios):.0%}"
        cpu = r.server_cpu_us_per_call
        lines.append(
            (f"{r.policy:<8}" if named else "")
            + f"{r.name:<12}{r.concurrency:>5}{r.calls:>8}{r.rate:>10.0f}{r.p50_ms:>9.2f}"
            f"{r.p99_ms:>9.2f}{'–' if cpu is None else f'{cpu:.0f}':>9}{ratio:>10.0%}"
            f"{spread:>10}{middle:>8}".rstrip()
        )
    if named:
        lines += compare(results, policies[0])
    return "\n".join(lines)


def compare(results: Sequence[Result], reference: str) -> list[str]:
    """Server CPU per call of each policy against ``reference``'s, same call and concurrency:
    the ratio of the totals, and the lowest, median and highest per-round ratio.

    >>> a = Result("choose/10", 16, 100, 1.0, 1.0, 2.0, server_cpu=0.05, policy="vw",
    ...            round_cpu=(500.0, 500.0, 500.0))
    >>> b = Result("choose/10", 16, 100, 1.0, 1.0, 2.0, server_cpu=0.06, policy="uplift",
    ...            round_cpu=(550.0, 600.0, 650.0))
    >>> print("\\n".join(compare([a, b], "vw")))  # doctest: +NORMALIZE_WHITESPACE
    <BLANKLINE>
    server CPU per call against vw (rounds: lowest, median, highest)
    uplift  choose/10   16   1.20×   1.10× 1.20× 1.30×
    """
    ref = {(r.name, r.concurrency): r for r in results if r.policy == reference}
    lines = ["", f"server CPU per call against {reference} (rounds: lowest, median, highest)"]
    for r in results:
        a = ref.get((r.name, r.concurrency))
        if r.policy == reference or a is None:
            continue
        mine, theirs = r.server_cpu_us_per_call, a.server_cpu_us_per_call
        if mine is None or theirs is None:
            continue
        rr = [x / y for x, y in zip(r.round_cpu, a.round_cpu, strict=False)]
        spread = f"{min(rr):>7.2f}× {statistics.median(rr):.2f}× {max(rr):.2f}×" if rr else ""
        lines.append(f"{r.policy:<8}{r.name:<12}{r.concurrency:>5}{mine / theirs:>7.2f}×{spread}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="offerbandit bench", description=__doc__)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--treatments", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--max-calls", type=int, default=20_000, help="per measurement")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds per concurrency (health, Choose …, again), sharing --seconds",
    )
    parser.add_argument(
        "--durability",
        nargs="+",
        default=["full"],
        choices=["full", "normal"],
        help="server durability settings to measure (full = fsync per commit)",
    )
    parser.add_argument(
        "--auth",
        nargs="+",
        default=["off"],
        choices=["off", "on"],
        help="bearer-token authentication to measure (on: the server checks a token per call)",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=["off"],
        choices=["off", "on"],
        help="Prometheus metrics to measure (on: every call timed and counted)",
    )
    parser.add_argument(
        "--policy",
        nargs="+",
        default=[""],
        choices=["", "vw", "uplift"],
        help="live policies to compare, one server each, measured in turn in every round "
        "(e.g. vw uplift: the server CPU per call of each against the first); "
        "default: the server's default policy, untrained",
    )
    parser.add_argument(
        "--trained",
        type=int,
        default=3000,
        help="with --policy uplift: synthetic decisions per catalogue its model has learned",
    )
    ns = parser.parse_args(argv)
    for durability, auth, metrics in itertools.product(ns.durability, ns.auth, ns.metrics):
        print(
            f"\nChoose over real gRPC; server in its own process; decision log SQLite WAL, "
            f"durability={durability}, group commit; authentication {auth}; metrics {metrics}; "
            f"{os.cpu_count()} cores",
            flush=True,
        )
        results = run(
            ns.concurrency,
            ns.treatments,
            ns.seconds,
            ns.max_calls,
            durability,
            ns.rounds,
            auth == "on",
            metrics == "on",
            ns.policy,
            ns.trained,
        )
        print(report(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""VW replay throughput against VW's own C++ driver on the same decisions.

Simulates a decision log in process, replays VW settings through it with
:func:`offline_eval.replay.vw_replay.progressive_replay` (predict, then learn, every
decision, examples built from the log's columns), and times
``vowpal_wabbit_next.run_cli_driver`` learning the same log as DSJson
(``--cb_explore_adf --dsjson``) in a subprocess (it holds the GIL and installs its own
signal handler). Target: the replay reaches ≥ 50% of the driver's rate.

    .venv/bin/python -m bench.bench_replay --decisions 10000
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bandit.learner import DEFAULT_INTERACTIONS, vw_arguments
from bandit.sim.driver import SimulationConfig, simulate_in_process
from offline_eval.io.logs import LoggedBandit, load_sqlite
from offline_eval.replay.policies import catalogue_lines, shared_lines
from offline_eval.replay.vw_replay import DEFAULT_SCALE, progressive_replay

SETTINGS = [
    ("--epsilon 0.05", DEFAULT_INTERACTIONS),
    ("--squarecb", DEFAULT_INTERACTIONS),
    ("--squarecb", ("co",)),
    ("--epsilon 0.05", ()),
]

_DRIVER = """
import sys, time
import vowpal_wabbit_next as vw
args = sys.argv[1:]
t = time.perf_counter()
vw.run_cli_driver(args)
print(time.perf_counter() - t)
"""


def _namespaces(line: str) -> dict[str, dict[str, float]]:
    """A VW text line's namespaces as DSJson members with the same feature hashes."""
    out: dict[str, dict[str, float]] = {}
    for part in line.split("|")[1:]:
        tokens = part.split()
        features: dict[str, float] = {}
        for tok in tokens[1:]:
            name, sep, value = tok.partition(":")
            features[name if sep else tok] = float(value) if sep else 1.0
        out[tokens[0]] = features
    return out


def write_dsjson(lb: LoggedBandit, path: Path, scale: float) -> None:
    """A minimal DSJson writer (used when ``offline_eval.io.export`` is not available)."""
    shared, actions = shared_lines(lb), catalogue_lines(lb)
    f = lb.frame
    with path.open("w") as out:
        for i in range(lb.n):
            chosen = int(f["chosen"].iloc[i])
            k = int(f["n_treatments"].iloc[i])
            context: dict[str, object] = dict(_namespaces(shared[i]))
            context["_multi"] = [_namespaces(a) for a in actions[int(f["catalogue_id"].iloc[i])]]
            record = {
                "_label_cost": -float(f["reward"].iloc[i]) * scale,
                "_label_probability": float(f["propensity"].iloc[i]),
                "_label_Action": chosen + 1,
                "_labelIndex": chosen,
                "a": [chosen + 1, *(j + 1 for j in range(k) if j != chosen)],
                "p": [float(f["propensity"].iloc[i])],
                "c": context,
            }
            out.write(json.dumps(record) + "\n")


def export(data: Path, lb: LoggedBandit, path: Path, scale: float) -> str:
    try:
        from offline_eval.io.export import export_log
    except ImportError:
        write_dsjson(lb, path, scale)
        return "bench writer"
    export_log(data, path, fmt="dsjson", reward_scale=scale, progress=False)
    return "offline_eval.io.export"


def driver_seconds(path: Path, args: list[str]) -> float:
    cmd = [sys.executable, "-c", _DRIVER, "--dsjson", "-d", str(path), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--decisions", type=int, default=10_000)
    p.add_argument("--customers", type=int, default=2_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        data = Path(tmp) / "data"
        t = time.perf_counter()
        simulate_in_process(
            SimulationConfig(seed=ns.seed, customers=ns.customers, decisions=ns.decisions),
            data_dir=data,
        )
        lb = load_sqlite(data, progress=False)
        dsjson = Path(tmp) / "log.json"
        writer = export(data, lb, dsjson, DEFAULT_SCALE)
        sizes = lb.frame["n_treatments"]
        print(
            f"log: {lb.n} decisions, {sizes.mean():.1f} candidates on average "
            f"(max {sizes.max()}), simulated in {time.perf_counter() - t:.1f}s; "
            f"DSJson by {writer}"
        )
        print(
            f"{'settings':<40} {'replay dec/s':>13} {'driver dec/s':>13} {'ratio':>7}  "
            "(medians of {})".format(ns.repeats)
        )
        worst = float("inf")
        for exploration, pairs in SETTINGS:
            args = vw_arguments(exploration, pairs, seed=ns.seed)
            replay = [progressive_replay(args, lb).seconds for _ in range(ns.repeats)]
            driver = [driver_seconds(dsjson, args) for _ in range(ns.repeats)]
            r_rate = lb.n / statistics.median(replay)
            d_rate = lb.n / statistics.median(driver)
            worst = min(worst, r_rate / d_rate)
            label = f"{exploration} -q {','.join(pairs) or 'none'}"
            print(f"{label:<40} {r_rate:>13,.0f} {d_rate:>13,.0f} {r_rate / d_rate:>7.0%}")
        print(f"lowest replay/driver ratio: {worst:.0%} (target >= 50%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

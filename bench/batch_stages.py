"""Where an in-process batch decision's time goes, stage by stage (µs per decision).

The batch path (``campaign run --data-dir``: :class:`offerbandit.campaign_local.LocalChooser`
over :mod:`bandit.choose_batch`) with its stages wrapped in timers: each wrapper adds the
wall time spent inside it (nested stages are also inside their parents). Durable log
(``synchronous=FULL``), 10 treatments, untrained or trained uplift model.

    .venv/bin/python -m bench.batch_stages --customers 20000 [--trained]
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bench_batch import chunks, consume, customers, template

TOTALS: collections.Counter[str] = collections.Counter()


def timed(owner: Any, name: str, label: str) -> None:
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TOTALS[label] += time.perf_counter() - t0

    setattr(owner, name, wrapper)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--trained", action="store_true")
    ns = p.parse_args(argv)
    import bandit.choose_batch as cb
    import offerbandit.campaign_local as local
    from bandit.choose import Decider, Fingerprints
    from bandit.eligibility import check_customer
    from bandit.log.sqlite.decisions import DecisionRows
    from bandit.log.sqlite.store import SqliteDecisionLog
    from offerbandit.bench import trained_uplift_checkpoint

    timed(cb.BatchChooser, "submit", "batch submit (all below)")
    timed(cb, "check_customer", "  customer checks")
    timed(Fingerprints, "of", "  request fingerprints")
    timed(SqliteDecisionLog, "find_requests", "  retry lookup (one query)")
    timed(cb.BatchChooser, "_decide", "  decide (holdout … sample)")
    timed(Decider, "scores_groups", "    scores (one pass)")
    timed(cb.BatchChooser, "_log", "  decisions + log rows + queue")
    timed(DecisionRows, "row", "    log row encoding")
    timed(local, "_customer", "customer as the wire reads it")
    timed(local, "_answer", "answers (wait durable, bytes, parse)")
    _ = check_customer
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if ns.trained:
            os.environ["OFFERBANDIT_MODEL"] = str(trained_uplift_checkpoint(folder / "m"))
        svc = local.open_local(folder / "data")
        os.environ.pop("OFFERBANDIT_MODEL", None)
        people = customers(ns.customers, "stages")
        t0, c0 = time.perf_counter(), time.process_time()
        n = consume(local.LocalChooser(svc).choose_batches(template(), chunks(people)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        svc.stop()
    print(f"{n} decisions in {wall:.2f} s: {n / wall:.0f}/s, CPU {1e6 * cpu / n:.1f} µs each")
    print(f"load average: {os.getloadavg()[0]:.2f} (2 cores)")
    for label, total in TOTALS.items():
        print(f"{label:<42} {1e6 * total / n:8.1f} µs/decision")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark the off-policy estimators on a large synthetic log.

Times every estimator with a normal interval against a plain NumPy IPS mean computed in the
same run, measures peak traced memory (tracemalloc) of each call, then times one bootstrap
and one empirical-likelihood interval. Prints a table and checks the targets:
all estimators together ≤ 10 × plain IPS + 5 s, every peak ≤ 2 GB.

Usage: ``python bench/bench_estimators.py [--rows 1000000] [--actions 10]``
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from offline_eval.estimators import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    BanditData,
    Estimate,
    OffPolicyEstimator,
    SwitchDR,
)
from offline_eval.estimators.intervals import BootstrapInterval, EmpiricalLikelihoodInterval

T = TypeVar("T")
FloatArray = NDArray[np.float64]
GB = 2**30


@dataclass(frozen=True)
class Row:
    name: str
    seconds: float
    peak_bytes: int
    value: float
    ci: tuple[float, float]


def timed(fn: Callable[[], T], repeat: int) -> tuple[T, float]:
    """Result of ``fn`` and its best wall time over ``repeat`` runs."""
    best = float("inf")
    result: T | None = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return result, best


def peak_memory(fn: Callable[[], object]) -> int:
    """Peak bytes allocated (traced) while ``fn`` runs, above what was allocated before."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base


def make_log(
    n: int, k: int, seed: int
) -> tuple[FloatArray, NDArray[np.int64], FloatArray, FloatArray, FloatArray, FloatArray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k))
    logging = np.exp(0.5 * logits)
    logging /= logging.sum(axis=1, keepdims=True)
    logging = 0.8 * logging + 0.2 / k
    target = np.exp(2.0 * logits)
    target /= target.sum(axis=1, keepdims=True)
    cdf = np.cumsum(logging, axis=1)
    chosen = np.argmax(cdf > rng.random((n, 1)) * cdf[:, -1:], axis=1).astype(np.int64)
    rows = np.arange(n)
    mu = 1.0 / (1.0 + np.exp(-logits))
    rewards = (rng.random(n) < mu[rows, chosen]).astype(np.float64)
    q_hat = np.clip(mu + rng.normal(scale=0.05, size=(n, k)), 0.0, 1.0)
    return rewards, chosen, logging[rows, chosen], logging, target, q_hat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--actions", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="best-of for the timings")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"generating {args.rows:,} rows x {args.actions} actions ...", flush=True)
    rewards, chosen, propensities, logging, target, q_hat = make_log(
        args.rows, args.actions, args.seed
    )

    def plain_ips() -> float:
        w = target[np.arange(args.rows), chosen] / propensities
        return float(np.mean(w * rewards))

    plain_value, plain_s = timed(plain_ips, args.repeat)
    rows: list[Row] = [
        Row("plain NumPy IPS mean", plain_s, peak_memory(plain_ips), plain_value, (np.nan,) * 2)
    ]

    def build() -> BanditData:
        return BanditData(rewards, chosen, propensities, logging_pmf=logging)

    data, build_s = timed(build, args.repeat)
    rows.append(Row("BanditData (validation)", build_s, peak_memory(build), np.nan, (np.nan,) * 2))

    estimators: list[OffPolicyEstimator] = [IPS(), SNIPS(), DM(), DR(), SNDR(), SwitchDR(tau=10.0)]
    total = 0.0
    for estimator in estimators:

        def run(estimator: OffPolicyEstimator = estimator) -> Estimate:
            return estimator.estimate(data, target, q_hat)

        est, seconds = timed(run, args.repeat)
        total += seconds
        rows.append(
            Row(
                f"{est.estimator} + normal",
                seconds,
                peak_memory(run),
                est.value,
                (est.ci_low, est.ci_high),
            )
        )

    boot = BootstrapInterval(n_resamples=args.resamples, seed=args.seed)
    est, seconds = timed(lambda: SNIPS().estimate(data, target, interval=boot), 1)
    peak = peak_memory(lambda: SNIPS().estimate(data, target, interval=boot))
    rows.append(
        Row(
            f"SNIPS + bootstrap({args.resamples})",
            seconds,
            peak,
            est.value,
            (est.ci_low, est.ci_high),
        )
    )

    el = EmpiricalLikelihoodInterval(r_min=0.0, r_max=1.0)
    est, seconds = timed(lambda: SNIPS().estimate(data, target, interval=el), 1)
    peak = peak_memory(lambda: SNIPS().estimate(data, target, interval=el))
    rows.append(
        Row("SNIPS + empirical likelihood", seconds, peak, est.value, (est.ci_low, est.ci_high))
    )

    print()
    print(f"{'what':34} {'time s':>9} {'x plain':>9} {'peak MB':>9} {'value':>8}  interval")
    for row in rows:
        ci = "" if np.isnan(row.ci[0]) else f"[{row.ci[0]:.4f}, {row.ci[1]:.4f}]"
        value = "" if np.isnan(row.value) else f"{row.value:.4f}"
        print(
            f"{row.name:34} {row.seconds:9.4f} {row.seconds / plain_s:9.1f} "
            f"{row.peak_bytes / 2**20:9.1f} {value:>8}  {ci}"
        )
    budget = 10.0 * plain_s + 5.0
    worst_peak = max(row.peak_bytes for row in rows)
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print()
    print(
        f"{len(estimators)} estimators with normal intervals: {total:.3f} s "
        f"({total / plain_s:.1f}x plain IPS); budget 10 x plain + 5 s = {budget:.3f} s: "
        f"{'PASS' if total <= budget else 'FAIL'}"
    )
    print(
        f"worst traced peak {worst_peak / 2**20:.0f} MB (process max RSS {max_rss / 2**20:.0f} MB, "
        f"inputs included); budget 2048 MB: {'PASS' if worst_peak <= 2 * GB else 'FAIL'}"
    )


if __name__ == "__main__":
    main()

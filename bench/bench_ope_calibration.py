"""Coverage of the off-policy intervals against the simulator's truth.

Runs ``--logs`` seeded in-process simulations per arm (a small log each), reads each log the
way ``offerbandit eval`` does (``load_sqlite`` → :class:`~offline_eval.study.study.Study`
with the default reward model) and evaluates three targets: uniform random, all-control
and the best static rule per stage (hindsight). For every estimator × interval kind it
records whether the 95% interval covers the truth, and the same for the verdict's paired
difference to the logged policy (DR, normal).

Truth, per target: the world's exact expected value of the target's pmf on the events the
service saw, counting only purchases inside the attribution window — the expectation of
the reward the log holds (``World.expected_values_within``). The exact value with late
purchases too is recorded as ``truth_all`` (its gap to ``truth`` is the definition gap).

Arms: ``A`` 5,000 customers (the logger mostly its initial model), ``B`` 500 customers
(the logger learns: heavy weights). Prints a progress bar, then a markdown table; writes
the per-(log, target, estimator, interval) rows to ``--csv``.

Usage: ``python bench/bench_ope_calibration.py --logs 100 --decisions 3000 --csv cal.csv``
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.records import Windows
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.sim import World, WorldConfig, WorldEvent
from bandit.sim.driver import (
    DEFAULT_WINDOW_SECONDS,
    DriveOptions,
    InProcessBackend,
    drive,
)
from offline_eval.estimators import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    BootstrapInterval,
    EmpiricalLikelihoodInterval,
    Interval,
    NormalInterval,
    OffPolicyEstimator,
    SwitchDR,
)
from offline_eval.io.logs import load_sqlite
from offline_eval.replay.policies import AllControl, Uniform, treatment_matrix
from offline_eval.study.study import SWITCH_TAU, Study
from offline_eval.study.verdict import paired_difference

FloatArray = NDArray[np.float64]
ARMS = {"A": 5000, "B": 500}


class RecordingWorld(World):
    """The simulator's world, keeping every event it generates (the events as served)."""

    def __init__(self, seed: int, config: WorldConfig) -> None:
        super().__init__(seed=seed, config=config)
        self.seen: list[WorldEvent] = []

    def events(self, n: int) -> Iterator[WorldEvent]:
        for event in super().events(n):
            self.seen.append(event)
            yield event


def simulate(seed: int, customers: int, decisions: int, folder: Path) -> RecordingWorld:
    """One seeded in-process run of the default service (uplift policy) into ``folder``."""
    world = RecordingWorld(seed, WorldConfig(n_customers=customers))
    clock = ManualClock(world.clock)
    service = DecisionService(
        ServiceConfig(
            data_dir=folder,
            seed=seed,
            windows=Windows(default=DEFAULT_WINDOW_SECONDS),
            background=False,
            synchronous="OFF",
        ),
        clock,
    )
    service.start()
    try:
        drive(world, InProcessBackend(service, clock), DriveOptions(decisions=decisions, seed=seed),
              mode="in-process")  # fmt: skip
    finally:
        service.stop()
    return world


@dataclass(frozen=True)
class Target:
    name: str
    pmf: FloatArray
    truth: float
    truth_all: float


@dataclass(frozen=True)
class RowValues:
    """The truth per evaluated row and candidate column of the log."""

    valid: NDArray[np.bool_]
    world_col: NDArray[np.intp]
    within: FloatArray
    exact: FloatArray

    def truth(self, pmf: FloatArray) -> tuple[float, float]:
        return (
            float((pmf * self.within).sum(axis=1).mean()),
            float((pmf * self.exact).sum(axis=1).mean()),
        )


def row_values(world: RecordingWorld, study: Study) -> RowValues:
    lb = study.lb
    if len(world.seen) != lb.n:
        raise RuntimeError(f"{len(world.seen)} events but {lb.n} logged decisions")
    rank = np.argsort(np.argsort(lb.frame["seq"].to_numpy(), kind="stable"))
    mask = study.mask
    rows = [world.seen[int(r)] for r in rank[mask]]  # row i's event, in decision order
    refs, matrix = treatment_matrix(lb)
    column_of = np.array([world.treatment_index(r) for r in refs])
    valid = (matrix >= 0)[mask]
    world_col = np.where(valid, column_of[np.maximum(matrix[mask], 0)], 0)
    within = world.expected_values_within(rows, DEFAULT_WINDOW_SECONDS)
    exact = world.expected_values(rows)
    return RowValues(
        valid,
        world_col,
        np.where(valid, np.take_along_axis(within, world_col, axis=1), 0.0),
        np.where(valid, np.take_along_axis(exact, world_col, axis=1), 0.0),
    )


def targets(world: RecordingWorld, study: Study, values: RowValues) -> list[Target]:
    """Uniform, all-control and the hindsight static rule on the evaluated rows."""
    lb, mask = study.lb, study.mask
    stage = lb.frame["c.stage"].astype(str).to_numpy()[mask]
    control_col = np.argmax((treatment_matrix(lb)[1] == 0)[mask], axis=1)
    exact_all = world.expected_values([world.seen[0]]).shape[1]
    rule_pmf = np.zeros_like(values.within)
    for s in np.unique(stage):
        sel = np.flatnonzero(stage == s)
        # the world treatment with the best mean value in the stage (control where not offered)
        sums = np.zeros(exact_all)
        np.add.at(sums, values.world_col[sel], np.where(values.valid[sel], values.exact[sel], 0.0))
        best = int(np.argmax(sums))
        hit = (values.world_col[sel] == best) & values.valid[sel]
        chosen = np.where(hit.any(axis=1), np.argmax(hit, axis=1), control_col[sel])
        rule_pmf[sel, chosen] = 1.0
    out = []
    for name, pmf in (
        ("uniform", Uniform().target(lb).pmf[mask]),
        ("control", AllControl().target(lb).pmf[mask]),
        ("rule", rule_pmf),
    ):
        out.append(Target(name, pmf, *values.truth(pmf)))
    return out


KINDS: dict[str, Interval] = {
    "normal": NormalInterval(0.05),
    "bootstrap": BootstrapInterval(0.05, n_resamples=400, seed=0),
    "el": EmpiricalLikelihoodInterval(0.05),
}
ESTIMATORS: tuple[OffPolicyEstimator, ...] = (
    IPS(),
    SNIPS(),
    DM(),
    DR(),
    SNDR(),
    SwitchDR(SWITCH_TAU),
)


def evaluate(arm: str, seed: int, world: RecordingWorld, study: Study) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    data, q = study.data, study.q_hat
    values = row_values(world, study)
    logged_truth = values.truth(study.lb.pmf[study.mask])
    for t in targets(world, study, values):
        for est in ESTIMATORS:
            for kind, interval in KINDS.items():
                if kind == "el" and not isinstance(est, IPS | SNIPS):
                    continue
                e = est.estimate(data, t.pmf, q if est.needs_q_hat else None, interval=interval)
                rows.append(
                    {"arm": arm, "seed": seed, "target": t.name, "estimator": est.label,
                     "interval": kind, "value": e.value, "low": e.ci_low, "high": e.ci_high,
                     "truth": t.truth, "truth_all": t.truth_all, "ess": e.ess, "n": e.n}
                )  # fmt: skip
        # the verdict's paired difference to the logged policy (DR, normal)
        psi = DR().scores(data, t.pmf, q).influence()
        d = paired_difference(psi, data.rewards, alpha=0.05)
        e = DR().estimate(data, t.pmf, q)
        rows.append(
            {"arm": arm, "seed": seed, "target": t.name, "estimator": "DR − logged",
             "interval": "paired normal", "value": d.value, "low": d.ci_low, "high": d.ci_high,
             "truth": t.truth - logged_truth[0], "truth_all": t.truth_all - logged_truth[1],
             "ess": e.ess, "n": e.n}
        )  # fmt: skip
    return rows


def table(frame: pd.DataFrame, truth: str = "truth") -> str:
    frame = frame.assign(covered=(frame["low"] <= frame[truth]) & (frame[truth] <= frame["high"]))
    frame = frame.assign(width=frame["high"] - frame["low"], bias=frame["value"] - frame[truth])
    g = frame.groupby(["estimator", "interval", "arm", "target"], sort=False)
    stats = g.agg(coverage=("covered", "mean"), bias=("bias", "mean"), width=("width", "mean"))
    cols = [(a, t) for a in sorted(frame["arm"].unique()) for t in ("uniform", "control", "rule")]
    head = "| estimator | interval | " + " | ".join(f"{a} {t}" for a, t in cols) + " |"
    lines = [head, "|" + "---|" * (2 + len(cols))]
    cell = {
        key: f"{100 * row.coverage:.0f} / {row.bias:+.2f} / {row.width:.1f}"
        for key, row in zip(stats.index, stats.itertuples(index=False), strict=True)
    }
    for est, kind in dict.fromkeys((k[0], k[1]) for k in stats.index):
        cells = [cell.get((est, kind, a, t), "") for a, t in cols]
        lines.append(f"| {est} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logs", type=int, default=100, help="seeded logs per arm")
    p.add_argument("--decisions", type=int, default=3000)
    p.add_argument("--arms", default="A,B")
    p.add_argument("--first-seed", type=int, default=1000)
    p.add_argument("--csv", type=Path, default=Path("ope-calibration.csv"))
    p.add_argument("--from-csv", action="store_true", help="only print the tables of --csv")
    ns = p.parse_args()
    if ns.from_csv:
        report(pd.read_csv(ns.csv), ns.decisions)
        return
    arms = [a.strip() for a in ns.arms.split(",") if a.strip()]
    records: list[dict[str, object]] = []
    bar = tqdm(total=ns.logs * len(arms), unit="log", desc="calibration")
    for i in range(ns.logs):
        for arm in arms:
            seed = ns.first_seed + i
            with tempfile.TemporaryDirectory(prefix="ope-cal-") as tmp:
                world = simulate(seed, ARMS[arm], ns.decisions, Path(tmp))
                lb = load_sqlite(Path(tmp), progress=False)
                study = Study(lb, progress=False)
                records += evaluate(arm, seed, world, study)
            bar.update(1)
            pd.DataFrame.from_records(records).to_csv(ns.csv, index=False)  # partial results
    bar.close()
    frame = pd.DataFrame.from_records(records)
    frame.to_csv(ns.csv, index=False)
    report(frame, ns.decisions)


def report(frame: pd.DataFrame, decisions: int) -> None:
    n_logs = frame.groupby("arm")["seed"].nunique().to_dict()
    print(f"\n{n_logs} logs of {decisions} decisions; coverage % / mean bias / mean width "
          "(EUR), truth = within the attribution window\n")  # fmt: skip
    print(table(frame))
    print("\nagainst the truth with late purchases (the definition gap included):\n")
    print(table(frame, "truth_all"))
    low_ess = frame[frame["estimator"] == "DR"].groupby(["arm", "target"])["ess"]
    print(
        "\nshare of logs with ESS < 100:",
        (low_ess.apply(lambda s: (s < 100).mean())).round(2).to_dict(),
    )
    supported = frame[frame["ess"] >= 100]
    print("\nonly logs with ESS ≥ 100 (where a verdict is given):\n")
    print(table(supported))


if __name__ == "__main__":
    main()

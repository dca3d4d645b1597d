"""Learning benchmark: which VW exploration (and interactions) should the service default to?

Over the same seeded worlds (``bandit.sim.World``) and several seeds, every policy meets the
same event stream (its own fatigue aside) and is scored with the world's truth on the events
it saw: value per decision over the last 20 % of decisions, its share of the oracle's value on
those events, and cumulative regret against that oracle.

VW policies are driven through the public APIs the service itself uses — ``VWPolicy``,
``floored_pmf`` + ``sample_index`` and ``RewardRule`` — without SQLite, for speed. Feedback is
realistically delayed: a decision is learned when its attribution window (2 simulated days by
default) closes, with the purchases that happened inside it; later purchases are lost, as on
the server. The frontend excludes unreachable channels (no consent, no app), as the driver
does.

Baselines run online in the same worlds: uniform random over the eligible treatments,
all-control, the best static rule per lifecycle stage (found with hindsight on a control run
of the same world, control where the rule's channel is unreachable) and the myopic oracle.

    python -m bench.bench_learning --decisions 100000 --seeds 3          # the full grid
    python -m bench.bench_learning --decisions 20000 --seeds 1 --policies eps0.05,squarecb
    python -m bench.bench_learning --decisions 50000 --seed-list 0,1 --jobs 1 --scale 0.1 \
        --add "sq-g100=--squarecb --gamma_scale 100" --policies sq-g100

``--scale`` (money → VW cost units for learning, default ``RewardRule().scale``) and
``--clip-revenue`` (winsorise the attributed revenue the learner sees, never the score) apply
to every VW policy of the run; non-default values are appended to the policy's name
(``squarecb@s0.1``, ``squarecb@c200``) so that runs with different settings stay apart in the
runs log. ``--add NAME=EXPLORATION`` defines an extra VW policy (default interactions; the
exploration string may carry any VW option, e.g. ``-l 0.1``).

Writes ``reports/learning.png`` (cumulative regret and value above control over decisions,
one line per policy) and ``reports/learning.json`` (every number of the table).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.learner import DEFAULT_EXPLORATION, DEFAULT_INTERACTIONS, VWPolicy, vw_arguments
from bandit.records import Incremental
from bandit.rewards import RewardRule
from bandit.sampling import floored_pmf, sample_index
from bandit.sim import World, WorldConfig, WorldEvent
from bandit.sim.driver import DEFAULT_WINDOW_SECONDS, LAST_SHARE, eligible_mask
from bandit.types import Treatment
from bandit.uplift import UpliftPolicy, uplift_arguments
from bandit.vwformat import action_lines, reward_to_cost, shared_line

CURVE_POINTS = 200
LIVE_POINTS = (4_000, 10_000, 20_000, 30_000, 50_000, 100_000)
"""Decisions after which the live ``GetStats`` estimate is recorded (learning policies)."""
PUBLISH_EVERY = 1000
"""The uplift policy publishes a new posterior after this many learned decisions (the
service's default checkpoint cadence)."""


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A policy of the benchmark: a VW configuration or a baseline."""

    name: str
    kind: str
    """``vw``, ``uplift``, ``uniform``, ``control``, ``static`` or ``oracle``."""
    exploration: str = ""
    """VW exploration arguments, or the uplift policy's options."""
    interactions: tuple[str, ...] = ()
    cost_weight: float = 1.0
    """Relative running time, to start the slow ones first."""
    scale: float | None = None
    """Money → VW cost units for learning; ``None``: ``RewardRule().scale``."""
    clip_revenue: float | None = None
    """Winsorise the attributed revenue the learner sees at this many EUR (scores unchanged)."""

    @property
    def base(self) -> str:
        """The name without the ``@…`` suffix of the reward settings."""
        return self.name.split("@", 1)[0]


Q = tuple(DEFAULT_INTERACTIONS)
POLICIES: dict[str, PolicySpec] = {
    s.name: s
    for s in [
        PolicySpec("uplift", "uplift", "", cost_weight=1.5),
        PolicySpec("uplift-auto", "uplift", "--ridge-cross auto", cost_weight=1.6),
        PolicySpec("uplift-k2", "uplift", "--kappa 2", cost_weight=1.5),
        PolicySpec("eps0.02", "vw", "--epsilon 0.02", Q),
        PolicySpec("eps0.05", "vw", "--epsilon 0.05", Q),
        PolicySpec("eps0.1", "vw", "--epsilon 0.1", Q),
        PolicySpec("squarecb", "vw", "--squarecb", Q, 1.3),
        PolicySpec("sq-g1000", "vw", DEFAULT_EXPLORATION, Q, 1.3),
        PolicySpec("softmax", "vw", "--softmax --lambda 100", Q),
        PolicySpec("bag3", "vw", "--bag 3 --epsilon 0.02", Q, 2.5),
        PolicySpec("cover3", "vw", "--cover 3 --epsilon 0.02", Q, 3.0),
        PolicySpec("rnd3", "vw", "--rnd 3 --epsilon 0.02", Q, 2.0),
        PolicySpec("eps0.05-dm", "vw", "--epsilon 0.05 --cb_type dm", Q),
        PolicySpec("eps0.05-noq", "vw", "--epsilon 0.05", ()),
        PolicySpec("eps0.02-noq", "vw", "--epsilon 0.02", ()),
        PolicySpec("squarecb-noq", "vw", "--squarecb", (), 1.3),
        PolicySpec("softmax-noq", "vw", "--softmax --lambda 100", ()),
        PolicySpec("uniform", "uniform", cost_weight=0.4),
        PolicySpec("control", "control", cost_weight=0.4),
        PolicySpec("static", "static", cost_weight=0.5),
        PolicySpec("oracle", "oracle", cost_weight=0.6),
    ]
}
DEFAULT_GRID = ",".join(POLICIES)


@dataclass(frozen=True, slots=True)
class RunResult:
    """One policy on one seed, scored on the events it saw."""

    policy: str
    seed: int
    decisions: int
    last_value: float
    """Expected value per decision of the chosen treatments, last 20 %."""
    last_oracle: float
    last_control: float
    last_static: float
    """Hindsight best static rule on the same last-20 % events."""
    all_value: float
    all_oracle: float
    regret: float
    """Cumulative regret against the oracle on the same events (EUR, all decisions)."""
    curve_x: list[int]
    curve_regret: list[float]
    curve_gain: list[float]
    """Value above control per decision in consecutive blocks (for the plot)."""
    seconds: float
    live: list[list[float]] = field(default_factory=list)
    """What ``GetStats``' incremental estimate would say after the first ``n`` decisions of
    :data:`LIVE_POINTS`: ``[n, per decision, 95 % low, high]`` from the realised rewards,
    ``ψ = r − 1{control}·r/μ(control)`` (bandit/records.py ``Incremental``); learning
    policies only."""


def _static_rule(world: World, n: int) -> NDArray[np.intp]:
    """Per stage index, the best column with hindsight on ``n`` control-run events."""
    world.reset()
    events = []
    for e in world.events(n):
        world.apply(e, world.treatments()[0])
        events.append(e)
    values = world.expected_values(events)
    masks = np.array([eligible_mask(world, e) for e in events])
    effective = np.where(masks, values, values[:, :1])
    stages = np.array([world.stages.index(world.stage_of(e)) for e in events])
    rule = np.zeros(len(world.stages), dtype=np.intp)
    for s in range(len(world.stages)):
        sel = stages == s
        if sel.any():
            rule[s] = int(np.argmax(effective[sel].sum(axis=0)))
    world.reset()
    return rule


def run_policy(
    spec: PolicySpec,
    seed: int,
    decisions: int,
    customers: int,
    window: float,
    control_share: float,
    world_settings: tuple[tuple[str, float], ...] = (),
) -> RunResult:
    """Run one policy online for ``decisions`` events of the world ``seed`` (``WorldConfig``
    fields in ``world_settings`` override the defaults)."""
    started = time.perf_counter()
    world = World(seed=seed, config=WorldConfig(n_customers=customers, **dict(world_settings)))
    treatments = world.treatments()
    k_all = len(treatments)
    lines = action_lines(treatments)
    rule = RewardRule() if spec.scale is None else RewardRule(scale=spec.scale)
    rng = np.random.default_rng([seed, 7])
    static = _static_rule(world, 20_000) if spec.kind == "static" else None
    policy = (
        VWPolicy(vw_arguments(spec.exploration, spec.interactions, seed))
        if spec.kind == "vw"
        else None
    )
    pending: deque[tuple[float, str, list[str], int, float, float]] = deque()
    uplift = (
        UpliftPolicy.from_args(uplift_arguments(spec.exploration, seed))
        if spec.kind == "uplift"
        else None
    )
    uplift_pending: deque[tuple[float, WorldEvent, Treatment, float, bool]] = deque()
    candidates: dict[bytes, tuple[Treatment, ...]] = {}
    since_publish = 0
    values = np.empty((decisions, k_all), dtype=np.float32)
    psi = np.full(decisions, np.nan)
    masks = np.empty((decisions, k_all), dtype=np.bool_)
    chosen = np.empty(decisions, dtype=np.intp)
    stages = np.empty(decisions, dtype=np.intp)
    stage_index = {s: i for i, s in enumerate(world.stages)}
    buffer: list[WorldEvent] = []
    buffer_start = 0

    def flush() -> None:
        nonlocal buffer_start
        if buffer:
            values[buffer_start : buffer_start + len(buffer)] = world.expected_values(buffer)
            buffer_start += len(buffer)
            buffer.clear()

    for i, event in enumerate(world.events(decisions)):
        mask = eligible_mask(world, event)
        cols = np.flatnonzero(mask)
        masks[i] = mask
        stages[i] = stage_index[world.stage_of(event)]
        if policy is not None:
            while pending and pending[0][0] <= event.time:
                _, sh, acts, k, cost, p = pending.popleft()
                policy.learn(sh, acts, k, cost, p)
            shared = shared_line(
                event.customer.features, event.trigger.type, event.trigger.features
            )
            actions = [lines[c] for c in cols]
            scores = policy.predict(shared, actions)
            pmf = floored_pmf(scores, 0, control_share)
            k = sample_index(pmf, float(rng.random()))
            col = int(cols[k])
        elif uplift is not None:
            while uplift_pending and uplift_pending[0][0] <= event.time:
                _, ev, tr, rev, bought = uplift_pending.popleft()
                uplift.learn(ev.context, tr, rev, bought)
                since_publish += 1
            if since_publish >= PUBLISH_EVERY:
                uplift.publish()
                since_publish = 0
            key = mask.tobytes()
            cand = candidates.get(key)
            if cand is None:
                cand = candidates[key] = tuple(treatments[c] for c in cols)
            pmf = floored_pmf(uplift.scores(event.context, cand), 0, control_share)
            k = sample_index(pmf, float(rng.random()))
            col = int(cols[k])
        elif spec.kind == "uniform":
            k = int(rng.integers(len(cols)))
            col = int(cols[k])
        elif spec.kind == "control":
            col = 0
        elif spec.kind == "static":
            assert static is not None
            col = int(static[stages[i]])
            col = col if mask[col] else 0
        else:  # oracle: the best eligible treatment for this very event
            v = world.expected_values(event)[0]
            col = int(cols[np.argmax(v[cols])])
        chosen[i] = col
        t = treatments[col]
        outcome = world.apply(event, t)
        if policy is not None or uplift is not None:
            in_window = outcome.purchased and outcome.delay_seconds < window
            revenue = outcome.revenue if in_window else 0.0
            reward = rule.reward(
                revenue=revenue,
                n_outcomes=int(in_window),
                is_control=t.is_control,
                fixed_cost=t.offer.fixed_cost if t.offer else 0.0,
                discount_rate=t.offer.discount_rate if t.offer else 0.0,
                contact_cost=t.channel.contact_cost if t.channel else 0.0,
            )
            psi[i] = reward - (reward / pmf[0] if col == 0 else 0.0)  # cols[0] is control
        if uplift is not None:
            uplift_pending.append((event.time + window, event, t, revenue, in_window))
        if policy is not None:
            if spec.clip_revenue is not None:
                revenue = min(revenue, spec.clip_revenue)
                reward = rule.reward(
                    revenue=revenue,
                    n_outcomes=int(in_window),
                    is_control=t.is_control,
                    fixed_cost=t.offer.fixed_cost if t.offer else 0.0,
                    discount_rate=t.offer.discount_rate if t.offer else 0.0,
                    contact_cost=t.channel.contact_cost if t.channel else 0.0,
                )
            pending.append(
                (
                    event.time + window,
                    shared,
                    actions,
                    k,
                    reward_to_cost(reward, rule.scale),
                    pmf[k],
                )
            )
        buffer.append(event)
        if len(buffer) >= 2048:
            flush()
    flush()
    result = _result(spec.name, seed, values, masks, chosen, stages, time.perf_counter() - started)
    if np.isnan(psi).all():
        return result
    return replace(result, live=_live(psi))


def _live(psi: NDArray[np.float64]) -> list[list[float]]:
    """``GetStats``' incremental estimate after the first ``n`` decisions (bandit/records.py)."""
    out = []
    for n in LIVE_POINTS:
        if n <= len(psi):
            e = Incremental.from_sums(n, float(psi[:n].sum()), float(np.square(psi[:n]).sum()))
            out.append([n, e.per_decision, e.ci_low, e.ci_high])
    return out


def _result(
    name: str,
    seed: int,
    values: NDArray[np.float32],
    masks: NDArray[np.bool_],
    chosen: NDArray[np.intp],
    stages: NDArray[np.intp],
    seconds: float,
) -> RunResult:
    v = values.astype(np.float64)
    n = len(chosen)
    rows = np.arange(n)
    true = v[rows, chosen]
    oracle = np.where(masks, v, -np.inf).max(axis=1)
    control = v[:, 0]
    k = n - max(1, round(LAST_SHARE * n))
    effective = np.where(masks[k:], v[k:], control[k:, None])
    static_total = 0.0
    for s in np.unique(stages[k:]):
        static_total += float(effective[stages[k:] == s].sum(axis=0).max())
    regret = np.cumsum(oracle - true)
    step = max(1, n // CURVE_POINTS)
    x = list(range(step, n + 1, step))
    gain = [float((true[j - step : j] - control[j - step : j]).mean()) for j in x]
    return RunResult(
        policy=name,
        seed=seed,
        decisions=n,
        last_value=float(true[k:].mean()),
        last_oracle=float(oracle[k:].mean()),
        last_control=float(control[k:].mean()),
        last_static=static_total / (n - k),
        all_value=float(true.mean()),
        all_oracle=float(oracle.mean()),
        regret=float(regret[-1]),
        curve_x=x,
        curve_regret=[float(regret[j - 1]) for j in x],
        curve_gain=gain,
        seconds=seconds,
    )


# ---- aggregation, table, plot ------------------------------------------------------------------


def _ms(xs: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(xs, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarise(results: Sequence[RunResult], order: Sequence[str]) -> list[dict[str, Any]]:
    """Mean and std over seeds per policy, in ``order``."""
    rows = []
    for name in order:
        rs = [r for r in results if r.policy == name]
        if not rs:
            continue
        value = _ms([r.last_value for r in rs])
        share = _ms([r.last_value / r.last_oracle for r in rs])
        above = _ms([r.last_value - r.last_control for r in rs])
        gain_share = _ms(
            [(r.last_value - r.last_control) / (r.last_oracle - r.last_control) for r in rs]
        )
        vs_static = _ms([r.last_value / r.last_static - 1.0 for r in rs])
        static_gain = _ms(
            [(r.last_value - r.last_control) / (r.last_static - r.last_control) - 1.0 for r in rs]
        )
        regret = _ms([r.regret for r in rs])
        rows.append(
            {
                "policy": name,
                "seeds": len(rs),
                "value_last20": value,
                "share_of_oracle": share,
                "above_control": above,
                "share_of_oracle_gain": gain_share,
                "vs_best_static": vs_static,
                "gain_vs_static_gain": static_gain,
                "regret": regret,
                "oracle_last20": _ms([r.last_oracle for r in rs]),
                "static_last20": _ms([r.last_static for r in rs]),
                "control_last20": _ms([r.last_control for r in rs]),
                "seconds": _ms([r.seconds for r in rs]),
            }
        )
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of the summary rows."""

    def pm(x: tuple[float, float], fmt: str = ".2f", pct: bool = False) -> str:
        m, s = (100 * x[0], 100 * x[1]) if pct else x
        return f"{m:{fmt}} ± {s:{fmt}}" + ("%" if pct else "")

    out = [
        "| policy | seeds | value/decision, last 20% | % of oracle | above control | "
        "% of oracle's gain | vs best static | cum. regret vs oracle (EUR) | s/run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        out.append(
            f"| {r['policy']} | {r['seeds']} | {pm(r['value_last20'])}"
            f" | {pm(r['share_of_oracle'], '.1f', True)}"
            f" | {pm(r['above_control'])} | {pm(r['share_of_oracle_gain'], '.0f', True)}"
            f" | {pm(r['vs_best_static'], '+.1f', True)} | {pm(r['regret'], ',.0f')}"
            f" | {r['seconds'][0]:.0f} |"
        )
    return "\n".join(out)


def live_table(results: Sequence[RunResult], names: Sequence[str]) -> str:
    """Per learning policy and ``n``: the live estimate per seed (its 95 % interval) and how
    many seeds' intervals lie above 0."""
    lines = ["\nlive GetStats estimate after n decisions (EUR a decision above all-control):"]
    for name in names:
        runs = sorted((r for r in results if r.policy == name and r.live), key=lambda r: r.seed)
        points = sorted({int(p[0]) for r in runs for p in r.live})
        for n in points:
            cells = [
                f"{p[1]:+.2f} [{p[2]:+.2f}, {p[3]:+.2f}]"
                for r in runs
                for p in r.live
                if int(p[0]) == n
            ]
            above = sum(1 for r in runs for p in r.live if int(p[0]) == n and p[2] > 0)
            lines.append(f"  {name} n={n}: {'; '.join(cells)} — above 0: {above}/{len(cells)}")
    return "\n".join(lines)


def plot(results: Sequence[RunResult], order: Sequence[str], path: Path) -> None:
    """Cumulative regret and block value above control over decisions, mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 6))
    cmap = plt.get_cmap("tab20")
    for i, name in enumerate(order):
        rs = [r for r in results if r.policy == name]
        if not rs:
            continue
        x = np.asarray(rs[0].curve_x)
        regret = np.mean([r.curve_regret for r in rs], axis=0)
        gain = np.mean([r.curve_gain for r in rs], axis=0)
        kernel = np.ones(5) / 5
        smooth = np.convolve(gain, kernel, mode="same")
        base = name.split("@", 1)[0]
        style = "-" if base not in POLICIES or POLICIES[base].kind == "vw" else "--"
        ax1.plot(x, regret, style, label=name, color=cmap(i % 20))
        ax2.plot(x, smooth, style, label=name, color=cmap(i % 20))
    ax1.set(xlabel="decisions", ylabel="cumulative regret vs oracle (EUR)",
            title="Cumulative regret (mean over seeds)")  # fmt: skip
    ax2.set(xlabel="decisions", ylabel="value above all-control per decision (EUR)",
            title="Value above control (block means, smoothed)")  # fmt: skip
    ax2.axhline(0.0, color="grey", lw=0.8)
    ax1.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- command line ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_learning",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=3, help="worlds 0 … seeds-1")
    parser.add_argument(
        "--seed-list", default=None, help="comma list of worlds to run (overrides --seeds)"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help=f"money → VW cost units for learning (default {RewardRule().scale})",
    )
    parser.add_argument(
        "--clip-revenue",
        type=float,
        default=None,
        help="winsorise the revenue the learner sees at this many EUR (scoring unchanged)",
    )
    parser.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="NAME=EXPLORATION",
        help="an extra VW policy with the default interactions (repeatable)",
    )
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument(
        "--world",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a WorldConfig field, e.g. --world fatigue_per_contact=0.5 (repeatable)",
    )
    parser.add_argument("--window-hours", type=float, default=DEFAULT_WINDOW_SECONDS / 3600)
    parser.add_argument("--control-share", type=float, default=0.05)
    parser.add_argument("--policies", default=DEFAULT_GRID, help=f"comma list of {DEFAULT_GRID}")
    parser.add_argument(
        "--jobs", type=int, default=2, help="worker processes (1: run in this process, no pool)"
    )
    parser.add_argument("--plot", type=Path, default=Path("reports/learning.png"))
    parser.add_argument("--json", type=Path, default=Path("reports/learning.json"))
    parser.add_argument(
        "--runs-log",
        type=Path,
        default=Path("reports/learning-runs.jsonl"),
        help="every finished run is appended here at once (partial results survive)",
    )
    parser.add_argument(
        "--from-log",
        action="store_true",
        help="run nothing: summarise and plot the runs already in --runs-log",
    )
    ns = parser.parse_args(argv)
    for item in ns.add:
        name, sep, exploration = item.partition("=")
        if not sep or not name.strip() or "@" in name:
            parser.error(f"--add wants NAME=EXPLORATION, got {item!r}")
        exploration = exploration.strip()
        if exploration == "uplift" or exploration.startswith("uplift "):  # uplift options
            options = exploration.removeprefix("uplift").strip()
            POLICIES[name.strip()] = PolicySpec(name.strip(), "uplift", options, cost_weight=1.5)
        else:
            POLICIES[name.strip()] = PolicySpec(name.strip(), "vw", exploration, Q)
    names = [n.strip() for n in ns.policies.split(",") if n.strip()]
    if ns.from_log:
        # Logged names may carry reward-setting suffixes: keep those whose base was asked for.
        logged = [RunResult(**json.loads(line)) for line in ns.runs_log.open()]
        seen = list(dict.fromkeys(r.policy for r in logged))
        wanted = set(names)
        order = [n for n in seen if n in wanted or n.split("@", 1)[0] in wanted]
        order.sort(key=lambda n: names.index(n.split("@", 1)[0]) if n.split("@", 1)[0] in names
                   else names.index(n))  # fmt: skip
        report(logged, order, ns, time.perf_counter())
        return 0
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        parser.error(f"unknown policies {unknown}; choose from {','.join(POLICIES)}")
    suffix = ""
    if ns.scale is not None and ns.scale != RewardRule().scale:
        suffix += f"@s{ns.scale:g}"
    if ns.clip_revenue is not None:
        suffix += f"@c{ns.clip_revenue:g}"
    specs = {}
    for n in names:
        spec = POLICIES[n]
        if spec.kind == "vw" and suffix:
            spec = PolicySpec(
                n + suffix, "vw", spec.exploration, spec.interactions, spec.cost_weight,
                ns.scale, ns.clip_revenue,
            )  # fmt: skip
        specs[n] = spec
    names = [specs[n].name for n in names]
    seeds = (
        [int(x) for x in ns.seed_list.split(",") if x.strip()]
        if ns.seed_list
        else list(range(ns.seeds))
    )
    tasks = [(spec, seed) for spec in specs.values() for seed in seeds]
    if ns.jobs > 1:
        tasks.sort(key=lambda t: -t[0].cost_weight)
    window = ns.window_hours * 3600.0
    world = _world_settings(ns.world, parser)
    results: list[RunResult] = []
    ns.runs_log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if ns.jobs <= 1:  # in this process, in the given order: one benchmark process in all
        with tqdm(total=len(tasks), unit="run", file=sys.stderr) as bar:
            for spec, seed in tasks:
                try:
                    r = run_policy(
                        spec, seed, ns.decisions, ns.customers, window, ns.control_share, world
                    )
                except Exception as exc:  # one bad configuration must not lose the others
                    r = None
                    print(f"{spec.name}/{seed} failed: {exc}", file=sys.stderr)
                _collect(r, results, ns, bar)
        report(results, names, ns, started)
        return 0
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=ns.jobs, mp_context=ctx) as pool:
        futures = {
            pool.submit(
                run_policy,
                spec,
                seed,
                ns.decisions,
                ns.customers,
                window,
                ns.control_share,
                world,
            ): (spec.name, seed)
            for spec, seed in tasks
        }
        with tqdm(total=len(futures), unit="run", file=sys.stderr) as bar:
            for f in as_completed(futures):
                try:
                    r = f.result()
                except Exception as exc:  # one bad configuration must not lose the others
                    r = None
                    name, seed = futures[f]
                    print(f"{name}/{seed} failed: {exc}", file=sys.stderr)
                _collect(r, results, ns, bar)
    report(results, names, ns, started)
    return 0


def _world_settings(
    items: Sequence[str], parser: argparse.ArgumentParser
) -> tuple[tuple[str, float], ...]:
    fields = set(WorldConfig.__dataclass_fields__) - {"n_customers", "start_time"}
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            parser.error(f"--world wants FIELD=VALUE with FIELD one of {sorted(fields)}")
        try:
            out.append((name, float(value)))
        except ValueError:
            parser.error(f"--world {name}: {value!r} is not a number")
    return tuple(out)


def _collect(
    r: RunResult | None, results: list[RunResult], ns: argparse.Namespace, bar: tqdm[Any]
) -> None:
    """Keep a finished run (append it to the run log too) and advance the progress bar."""
    if r is not None:
        results.append(r)
        with ns.runs_log.open("a") as log:
            log.write(json.dumps(asdict(r)) + "\n")
        bar.set_postfix_str(f"{r.policy}/{r.seed}: {r.last_value:.2f} ({r.seconds:.0f}s)")
    bar.update(1)


def report(
    results: Sequence[RunResult], names: Sequence[str], ns: argparse.Namespace, started: float
) -> None:
    """Print the table, write the plot and the JSON numbers."""
    names = [n for n in names if any(r.policy == n for r in results)]
    seeds = sorted({r.seed for r in results})
    decisions = sorted({r.decisions for r in results})
    rows = summarise(results, names)
    print(
        f"\n{decisions} decisions, seeds {seeds}, {ns.customers} customers, "
        f"{ns.window_hours:g} h attribution window, control share {ns.control_share}"
        f"{'; world ' + ' '.join(ns.world) if ns.world else ''}; "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    print(table(rows))
    ref = rows[0] if rows else None
    if ref is not None:
        o, s, c = ref["oracle_last20"][0], ref["static_last20"][0], ref["control_last20"][0]
        print(f"\n(on {ref['policy']}'s events: oracle {o:.2f}, best static {s:.2f}, "
              f"control {c:.2f} per decision)")  # fmt: skip
    print(live_table(results, names))
    plot(results, names, ns.plot)
    ns.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(ns).items()},
        "summary": rows,
        "runs": [asdict(r) for r in results],
    }
    ns.json.write_text(json.dumps(payload, allow_nan=False))
    print(f"\nplot: {ns.plot}  numbers: {ns.json}")


if __name__ == "__main__":
    sys.exit(main())

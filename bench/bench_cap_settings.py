"""Cap settings compared in the simulated world, against its truth: the value above doing
nothing of the default (uplift) policy under several contact policies.

Each setting is one ``offerbandit simulate --in-process`` run per seed (the default world:
fatigue and annoyance make frequent contacts cost money) with the policy file applied before
scoring. The table gives, over the last 20 % of each run, the true value above all-control per
decision (mean ± standard error over the seeds), the share of the oracle's gain, the share of
events treated, and the run's whole incremental value. The default world has no negative
outcome types, so the settings compare caps and repeats.

    .venv/bin/python bench/bench_cap_settings.py [--seeds 0,1,2] [--decisions 20000]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from bandit.sim.driver import SimulationConfig, simulate_in_process

SETTINGS: dict[str, str] = {
    "no policy": "",
    "≤ 3 contacts / 7 days": """
version = "three a week"
[[cap]]
max = 3
days = 7
""",
    "≤ 1 contact / 7 days": """
version = "one a week"
[[cap]]
max = 1
days = 7
""",
    "≤ 1 contact / 2 days": """
version = "one every two days"
[[cap]]
max = 1
days = 2
""",
}


def run(seeds: list[int], decisions: int, customers: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="cap-settings-") as tmp:
        for label, text in SETTINGS.items():
            path = None
            if text:
                path = Path(tmp) / f"{len(rows)}.toml"
                path.write_text(text)
            above, share, treated, total = [], [], [], []
            for seed in seeds:
                config = SimulationConfig(
                    seed=seed,
                    customers=customers,
                    decisions=decisions,
                    contact_policy=None if path is None else str(path),
                )
                r = simulate_in_process(config)
                last = r.last
                above.append(last.incremental_value_per_decision)
                share.append(last.share_of_oracle_gain)
                treated.append(1.0 - last.control_decisions / last.decisions)
                total.append(r.overall.incremental_value_total)
                print(
                    f"  {label:<44} seed {seed}: {above[-1]:+.3f} EUR/decision above control "
                    f"(last 20 %), treated {treated[-1]:.0%}",
                    file=sys.stderr,
                    flush=True,
                )
            rows.append(
                {
                    "setting": label,
                    "above": float(np.mean(above)),
                    "se": float(np.std(above, ddof=1) / math.sqrt(len(above)))
                    if len(above) > 1
                    else math.nan,
                    "per_seed": above,
                    "share": float(np.mean(share)),
                    "treated": float(np.mean(treated)),
                    "total": float(np.mean(total)),
                }
            )
    return rows


def table(rows: list[dict[str, object]], seeds: list[int], decisions: int) -> str:
    lines = [
        f"default world, {decisions:,} decisions, seeds {','.join(map(str, seeds))}; "
        "last 20 %: true value above all-control",
        "",
        "| setting | above control, EUR/decision | per seed | share of oracle gain "
        "| treated | whole run, EUR |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        per = ", ".join(f"{x:+.2f}" for x in r["per_seed"])  # type: ignore[attr-defined]
        lines.append(
            f"| {r['setting']} | {r['above']:+.3f} ± {r['se']:.3f} | {per} "
            f"| {r['share']:.0%} | {r['treated']:.0%} | {r['total']:+,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2", help="world seeds, comma-separated")
    p.add_argument("--decisions", type=int, default=20_000)
    p.add_argument("--customers", type=int, default=5000)
    ns = p.parse_args(argv)
    seeds = [int(s) for s in ns.seeds.split(",") if s.strip()]
    rows = run(seeds, ns.decisions, ns.customers)
    print(table(rows, seeds, ns.decisions))
    return 0


if __name__ == "__main__":
    sys.exit(main())

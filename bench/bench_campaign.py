"""``offerbandit campaign run`` throughput and memory: a synthetic audience of ``--customers``
(Parquet) decided through a server in its own process (durable log), timed end to end, with
this process's peak RSS (the audience is streamed, so it should not grow with the audience).

    .venv/bin/python -m bench.bench_campaign --customers 20000 50000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq

from offerbandit.bench import start_server
from offerbandit.campaign import Campaign, audience, run
from server.client import OfferBanditClient

CAMPAIGN = """
id = "bench"
trigger = "campaign"
[[offer]]
id = "d10"
discount_rate = 0.1
[[offer]]
id = "ship"
fixed_cost = 4.0
[[channel]]
id = "email"
contact_cost = 0.01
[[channel]]
id = "push"
contact_cost = 0.0
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--customers", type=int, nargs="+", default=[20_000])
    ns = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "c.toml").write_text(CAMPAIGN)
        campaign = Campaign.load(folder / "c.toml")
        proc, address = start_server(folder / "data", "full")
        try:
            with OfferBanditClient(address, timeout=30) as c:
                grpc.channel_ready_future(c.channel).result(timeout=30)
                print(
                    f"{'customers':>10} {'seconds':>8} {'decisions/s':>12} {'client RSS MiB':>15}"
                )
                for n in ns.customers:
                    path = folder / f"audience-{n}.parquet"
                    stages = ["new", "active", "at_risk", "lapsed", "vip"]
                    pq.write_table(
                        pa.table(
                            {
                                "customer_id": [f"{n}-{i}" for i in range(n)],
                                "stage": [stages[i % 5] for i in range(n)],
                                "ltv": [float(i % 300) for i in range(n)],
                            }
                        ),
                        path,
                        row_group_size=10_000,
                    )
                    t0 = time.perf_counter()
                    s = run(
                        c, campaign, audience(path), folder / f"send-{n}.parquet", progress=False
                    )
                    dt = time.perf_counter() - t0
                    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    print(
                        f"{s.decided:>10} {dt:>8.1f} {s.decided / dt:>12.0f} {peak:>15.0f}",
                        flush=True,
                    )
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

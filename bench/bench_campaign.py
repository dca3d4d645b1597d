"""``offerbandit campaign run`` throughput and memory: a synthetic audience of ``--customers``
(Parquet, written in row groups so that making it costs little memory) decided through a
server in its own process (durable log; 5 offers × 2 channels), timed end to end, with this
process's peak RSS and the server's peak and current RSS (``VmHWM``, ``VmRSS``): the audience
is streamed through one ChooseBatchStream (1,024 customers a message) and the server reads on
only while 4 messages await their commit, so neither should grow with the audience.

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
id = "d20"
discount_rate = 0.2
[[offer]]
id = "ship"
fixed_cost = 4.0
[[offer]]
id = "gift"
fixed_cost = 8.0
[[offer]]
id = "points"
fixed_cost = 1.0
[[channel]]
id = "email"
contact_cost = 0.01
[[channel]]
id = "push"
contact_cost = 0.0
"""


def _audience(path: Path, n: int, group: int = 50_000) -> None:
    """``n`` customers written a row group at a time."""
    stages = ["new", "active", "at_risk", "lapsed", "vip"]
    writer: pq.ParquetWriter | None = None
    try:
        for lo in range(0, n, group):
            ids = range(lo, min(n, lo + group))
            table = pa.table(
                {
                    "customer_id": [f"{n}-{i}" for i in ids],
                    "stage": [stages[i % 5] for i in ids],
                    "ltv": [float(i % 300) for i in ids],
                }
            )
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=10_000)
    finally:
        if writer is not None:
            writer.close()


def _server_rss(pid: int) -> tuple[float, float]:
    """The server's peak and current resident set (MiB)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (
        int(fields["VmHWM"].split()[0]) / 1024,
        int(fields["VmRSS"].split()[0]) / 1024,
    )


def _in_process(sizes: list[int], profile: Path | None) -> int:
    """The same campaigns decided in this process (durable log, group commits)."""
    import cProfile

    from offerbandit.campaign_local import LocalChooser, open_local

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "c.toml").write_text(CAMPAIGN)
        campaign = Campaign.load(folder / "c.toml")
        service = open_local(folder / "data")
        prof = cProfile.Profile() if profile is not None else None
        try:
            print(f"{'customers':>10} {'seconds':>8} {'decisions/s':>12} {'CPU µs/decision':>16}")
            for n in sizes:
                path = folder / f"audience-{n}.parquet"
                _audience(path, n)
                t0, c0 = time.perf_counter(), time.process_time()
                if prof is not None:
                    prof.enable()
                s = run(
                    LocalChooser(service),
                    campaign,
                    audience(path),
                    folder / f"send-{n}.parquet",
                    progress=False,
                )
                if prof is not None:
                    prof.disable()
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                print(
                    f"{s.decided:>10} {dt:>8.1f} {s.decided / dt:>12.0f} "
                    f"{1e6 * cpu / s.decided:>16.0f}",
                    flush=True,
                )
        finally:
            service.stop()
        if prof is not None and profile is not None:
            prof.dump_stats(profile)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--customers", type=int, nargs="+", default=[20_000])
    p.add_argument(
        "--in-process",
        action="store_true",
        help="decide in this process (campaign run --data-dir) instead of through a server",
    )
    p.add_argument("--profile", type=Path, help="with --in-process: write a cProfile here")
    ns = p.parse_args(argv)
    if ns.in_process:
        return _in_process(ns.customers, ns.profile)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "c.toml").write_text(CAMPAIGN)
        campaign = Campaign.load(folder / "c.toml")
        proc, address = start_server(folder / "data", "full")
        try:
            with OfferBanditClient(address, timeout=30) as c:
                grpc.channel_ready_future(c.channel).result(timeout=30)
                print(
                    f"{'customers':>10} {'seconds':>8} {'decisions/s':>12} "
                    f"{'client peak MiB':>16} {'server peak MiB':>16} {'server now MiB':>15}"
                )
                for n in ns.customers:
                    path = folder / f"audience-{n}.parquet"
                    _audience(path, n)
                    t0 = time.perf_counter()
                    s = run(
                        c, campaign, audience(path), folder / f"send-{n}.parquet", progress=False
                    )
                    dt = time.perf_counter() - t0
                    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    hwm, now = _server_rss(proc.pid)
                    print(
                        f"{s.decided:>10} {dt:>8.1f} {s.decided / dt:>12.0f} {peak:>16.0f} "
                        f"{hwm:>16.0f} {now:>15.0f}",
                        flush=True,
                    )
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``offerbandit export``: write the joined decision log as Parquet, VW DSJson or CSV.

Errors in the log or the output path are reported on stderr with exit status 1:

>>> main(["--log", "/nonexistent", "--format", "dsjson", "--out", "x.json", "--quiet"])
1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bandit.errors import StorageError
from offline_eval._cli import time_arg
from offline_eval.io.export import DEFAULT_REWARD_SCALE, ExportFormat, export_log
from offline_eval.io.status import check_closed


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def default_outcomes_path(out: Path) -> Path:
    """``log.parquet`` → ``log.outcomes.parquet`` (``.csv`` likewise).

    >>> default_outcomes_path(Path("exports/log.csv")).as_posix()
    'exports/log.outcomes.csv'
    """
    return out.with_name(f"{out.stem}.outcomes{out.suffix or '.parquet'}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="offerbandit export",
        description="Export the joined decision log (decisions with the rewards the service "
        "computed) as Parquet, Vowpal Wabbit DSJson or CSV. See docs/offline-data.md.",
    )
    p.add_argument(
        "--log", required=True, help="data folder, decisions.sqlite or postgresql:// URL to read"
    )
    p.add_argument("--format", required=True, choices=[f.value for f in ExportFormat], dest="fmt")
    p.add_argument("--out", required=True, type=Path, help="file to write")
    p.add_argument(
        "--outcomes",
        type=Path,
        help="also write the raw outcomes here (Parquet, or CSV for a .csv name); "
        "default for parquet/csv: <out>.outcomes.<ext>; none for dsjson",
    )
    p.add_argument("--no-outcomes", action="store_true", help="do not write outcomes")
    p.add_argument("--since", type=time_arg, help="decisions at or after this ISO time (UTC)")
    p.add_argument("--until", type=time_arg, help="decisions before this ISO time (UTC)")
    p.add_argument(
        "--all",
        action="store_true",
        help="include open decisions (no final reward yet; DSJson marks them _skipLearn)",
    )
    p.add_argument(
        "--include-voided",
        action="store_true",
        help="include voided decisions and outcomes (offerbandit void), flagged by voided_at",
    )
    p.add_argument(
        "--reward-scale",
        type=_positive,
        default=DEFAULT_REWARD_SCALE,
        help="DSJson _label_cost = -reward x scale (default: the service's %(default)s)",
    )
    p.add_argument("--chunk-size", type=int, default=10_000, help="decisions per read")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def main(argv: Sequence[str]) -> int:
    ns = parser().parse_args(list(argv))
    fmt = ExportFormat(ns.fmt)
    outcomes: Path | None = ns.outcomes
    if outcomes is None and not ns.no_outcomes and fmt is not ExportFormat.DSJSON:
        outcomes = default_outcomes_path(ns.out)
    if ns.no_outcomes:
        outcomes = None
    try:
        if not ns.all and not check_closed(
            ns.log, since=ns.since, until=ns.until, prog="offerbandit export"
        ):
            return 1
        result = export_log(
            ns.log,
            ns.out,
            fmt=fmt,
            outcomes_out=outcomes,
            closed_only=not ns.all,
            since=ns.since,
            until=ns.until,
            include_voided=ns.include_voided,
            reward_scale=ns.reward_scale,
            chunk_size=ns.chunk_size,
            progress=not ns.quiet,
        )
    except (OSError, ValueError, StorageError) as e:
        print(f"offerbandit export: error: {e}", file=sys.stderr)
        return 1
    if result.rows == 0:
        print(f"offerbandit export: {ns.log} has no decisions to export", file=sys.stderr)
        return 1
    if not ns.quiet:
        print(
            f"wrote {result.rows} decisions to {result.path} in {result.seconds:.1f}s "
            f"({result.rows_per_second:,.0f}/s)"
        )
        if result.outcomes_path is not None:
            print(f"wrote {result.outcomes} outcomes to {result.outcomes_path}")
    return 0

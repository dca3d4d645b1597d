"""``offerbandit uplift``: incremental net revenue by customer, trigger, offer and channel.

Loads the decision log (closed decisions), estimates what each treatment, offer and channel
earned against control (doubly robust, per slice), what the live policy earned against
all-control, and the persistent-holdout comparison; prints the table sorted by incremental
net revenue, writes CSV/JSON/PNG to ``--out`` and logs the same as an MLflow run.

    offerbandit uplift --log data/ --by stage --by trigger --pair stage,offer \\
        --min-count 50 --out uplift-report --study spring-campaign
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from offline_eval._cli import time_arg
from offline_eval.io.logs import load_sqlite
from offline_eval.io.status import check_closed
from offline_eval.uplift.analysis import DEFAULT_DIMENSIONS, uplift_report
from offline_eval.uplift.report import DEFAULT_MAX_CI_WIDTH

log = logging.getLogger(__name__)


def _pair(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise argparse.ArgumentTypeError(f"a pair is two different dimensions 'a,b', not {text!r}")
    return parts[0], parts[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="offerbandit uplift",
        description="Incremental net revenue (net of offer and contact costs) against control, "
        "by customer segment, trigger, offer and channel, with confidence intervals.",
    )
    p.add_argument("--log", required=True, help="decisions.sqlite, its folder or postgresql:// URL")
    p.add_argument(
        "--by",
        action="append",
        metavar="DIM",
        help="slice by DIM: stage (the segment column), trigger, offer, channel, treatment or "
        f"any customer/trigger feature; repeatable (default: {' '.join(DEFAULT_DIMENSIONS)})",
    )
    p.add_argument(
        "--pair", action="append", type=_pair, default=[], metavar="A,B", help="cross two dims"
    )
    p.add_argument("--segment-column", help="customer column 'stage' stands for (default c.stage)")
    p.add_argument(
        "--min-count",
        type=int,
        default=30,
        help="fewest treated and control decisions a slice needs (default 30)",
    )
    p.add_argument(
        "--max-ci-width",
        type=float,
        default=DEFAULT_MAX_CI_WIDTH,
        help="widest interval (EUR per decision) still shown as a number (default "
        f"{DEFAULT_MAX_CI_WIDTH:g}; 'inf': no limit)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="1 − confidence (default 0.05)")
    p.add_argument("--since", type=time_arg, help="first decision time (epoch seconds or ISO)")
    p.add_argument("--until", type=time_arg, help="decisions before this time")
    p.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=40, help="table rows printed (default 40)")
    p.add_argument(
        "--out", type=Path, default=Path("uplift-report"), help="folder for CSV/JSON/PNG"
    )
    p.add_argument("--study", default="uplift", help="MLflow experiment (default 'uplift')")
    p.add_argument("--run-name", help="MLflow run name (default: uplift <log file>)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI "
                   "or sqlite:///mlflow.db)")  # fmt: skip
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument(
        "--campaign",
        metavar="ID",
        help="only this outbound campaign's decisions, with its incremental revenue against "
        "its own holdout first (docs/campaigns.md)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    return run(ns)


def run(ns: argparse.Namespace) -> int:
    progress = not ns.no_progress
    try:
        lb = load_sqlite(ns.log, since=ns.since, until=ns.until, progress=progress)
    except (FileNotFoundError, ValueError) as err:
        print(f"offerbandit uplift: {err}", file=sys.stderr)
        return 2
    if not check_closed(
        ns.log, since=ns.since, until=ns.until, prog="offerbandit uplift", loaded=lb.n
    ):
        return 1
    if ns.campaign:
        from offline_eval.uplift.campaign import campaign_rows, campaign_summary

        try:
            lb = campaign_rows(lb, ns.campaign)
        except ValueError as err:
            print(f"offerbandit uplift: {err}", file=sys.stderr)
            return 1
        print(campaign_summary(lb, ns.campaign, ns.alpha) + "\n")
    by: Sequence[str] = tuple(ns.by) if ns.by else DEFAULT_DIMENSIONS
    try:
        report = uplift_report(
            lb,
            by=by,
            pairs=ns.pair,
            segment_column=ns.segment_column,
            min_count=ns.min_count,
            max_ci_width=ns.max_ci_width,
            alpha=ns.alpha,
            folds=ns.folds,
            seed=ns.seed,
            progress=progress,
        )
    except ValueError as err:
        print(f"offerbandit uplift: {err}", file=sys.stderr)
        return 2
    print(report.summary(top=ns.top))
    if ns.no_mlflow:
        paths = report.write(ns.out)
        print(f"\nwrote {', '.join(str(p) for p in paths)}")
        return 0
    from offline_eval.tracking.tracker import default_tracking_uri, ui_command

    uri = ns.tracking_uri or default_tracking_uri()
    run_id = report.log_to_mlflow(
        ns.study,
        tracking_uri=uri,
        run_name=ns.run_name or f"uplift {Path(lb.source).name}",
        out_dir=ns.out,
        params={"log": lb.source, "since": ns.since, "until": ns.until},
    )
    print(f"\nwrote {ns.out}/; MLflow run {run_id} in study {ns.study!r} ({ui_command(uri)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

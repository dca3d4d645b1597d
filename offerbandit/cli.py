"""The ``offerbandit`` command: serve, bench, and the data-science subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def _setup_logging(level: str, fmt: str = "text") -> None:
    from server.logs import configure

    configure(level, fmt)


def _serve(ns: argparse.Namespace) -> int:
    from offline_eval.tracking.registry import load_checkpoint  # MLflow, imported only when used
    from server.app import serve
    from server.settings import Settings

    overrides = {
        k: v
        for k, v in {
            "host": ns.host,
            "port": ns.port,
            "data_dir": ns.data_dir,
            "model": ns.model,
            "exploration": ns.exploration,
            "policy": ns.policy,
            "uplift_options": ns.uplift_options,
            "role": ns.role,
            "log": ns.log,
        }.items()
        if v is not None
    }
    settings = Settings.load(ns.config, **overrides)
    _setup_logging(settings.log_level, settings.log_format)
    serve(settings, registry=load_checkpoint)
    return 0


def _bench(ns: argparse.Namespace) -> int:
    from offerbandit.bench import main as bench_main

    return int(bench_main(ns.rest))


def _simulate(ns: argparse.Namespace) -> int:
    from offerbandit.simulate import main as simulate_main

    return int(simulate_main(ns.rest))


def _demo(ns: argparse.Namespace) -> int:
    from offerbandit.demo import main as demo_main

    return int(demo_main(ns.rest))


def _offline(module: str, name: str = "main") -> Callable[[argparse.Namespace], int]:
    def run(ns: argparse.Namespace) -> int:
        main = getattr(importlib.import_module(module), name)
        return int(main(ns.rest))

    return run


_PASS_THROUGH: dict[str, Callable[[argparse.Namespace], int]] = {
    "bench": _bench,
    "simulate": _simulate,
    "demo": _demo,
    "token": _offline("offerbandit.tokens"),
    "backup": _offline("offerbandit.backup"),
    "erase": _offline("offerbandit.admin", "erase_main"),
    "health": _offline("offerbandit.health"),
    "vacuum": _offline("offerbandit.admin", "vacuum_main"),
    "campaign": _offline("offerbandit.campaign"),
    "soak": _offline("offerbandit.soak"),
    "void": _offline("offerbandit.admin", "void_main"),
    "rollback": _offline("offerbandit.admin", "rollback_main"),
    "trainer": _offline("offerbandit.trainer"),
    "export": _offline("offline_eval.io.cli_export"),
    "eval": _offline("offline_eval.study.cli_eval"),
    "uplift": _offline("offline_eval.uplift.cli_uplift"),
    "call": _offline("offerbandit.call"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="offerbandit", description="Real-time next-best-offer decisions with a bandit."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gRPC decision service")
    p.add_argument("--config", type=Path, help="TOML settings file (see server/settings.py)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--data-dir", type=Path, help="decision log and checkpoints (default ./data)")
    p.add_argument("--model", help="start from a checkpoint file or models:/name@alias")
    p.add_argument("--exploration", help='VW exploration, e.g. "--squarecb"')
    p.add_argument("--policy", choices=["uplift", "vw"], help="the live policy's kind (default vw)")
    p.add_argument(
        "--uplift-options", help='options of the uplift policy, e.g. "--kappa 1 --explore 0.1"'
    )
    p.add_argument(
        "--role", choices=["all", "decider"], help="decider: Choose and outcomes only (scale-out)"
    )
    p.add_argument("--log", help="the decision log: a postgresql:// URL (default: SQLite)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("bench", help="Choose latency/throughput benchmark over real gRPC")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_bench)

    p = sub.add_parser("simulate", help="drive the simulated marketing world (see docs)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_simulate)

    p = sub.add_parser("demo", help="start a server, simulate through it, summarise")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_demo)

    for name, text in (
        ("export", "export the joined decision log as Parquet or VW DSJson"),
        ("eval", "off-policy evaluation of candidate policies, tracked in MLflow"),
        ("uplift", "incremental revenue by customer, trigger, offer and channel"),
        ("soak", "minutes of mixed load at a fixed rate, printing RSS, log and WAL sizes"),
        ("token", "create or list bearer tokens for a server's tokens_file"),
        ("backup", "a consistent copy of the decision log while the server runs"),
        ("erase", "erase customers from the decision log (right to be forgotten)"),
        ("health", "ask a server's health service; exit 0 when SERVING (container checks)"),
        ("vacuum", "convert an older decision log once so that retention shrinks the file"),
        ("campaign", "decide for a whole audience through a running server; activate sends"),
        ("void", "flag decisions or outcomes as void: kept in the log, never learned"),
        ("rollback", "make an older kept model checkpoint the newest again"),
        ("call", "call the service with JSON from a shell: offerbandit call Choose '{…}'"),
        ("trainer", "the one active trainer of a PostgreSQL log (a standby waits to take over)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("rest", nargs=argparse.REMAINDER)

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _PASS_THROUGH:
        # These subcommands own their flags: hand them everything after the name.
        return int(_PASS_THROUGH[args[0]](argparse.Namespace(rest=args[1:])))
    ns = parser.parse_args(args)
    return int(ns.func(ns))


if __name__ == "__main__":
    sys.exit(main())

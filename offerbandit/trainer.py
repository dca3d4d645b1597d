"""``offerbandit trainer``: the learning role as its own process, on a PostgreSQL log.

    offerbandit trainer --config offerbandit.toml   # log = "postgresql://…", model_store = …

Reads the same settings as ``serve`` (the log, the model store, the policy and the reward
rule). Exactly one trainer is active per log; start a second as a standby: it waits on the
log's lease and takes over when the first dies (docs/scale-out.md). SIGTERM or SIGINT: learn
what is closed, checkpoint, give the lease up.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("offerbandit.trainer")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="offerbandit trainer",
        description="Close attribution windows, learn in log order and publish model versions "
        "to the model store; one active per PostgreSQL log, others stand by.",
    )
    p.add_argument("--config", type=Path, help="TOML settings file (see server/settings.py)")
    p.add_argument("--log", help="the decision log's postgresql:// URL")
    p.add_argument("--model-store", type=Path, help="folder of model checkpoints")
    p.add_argument("--data-dir", type=Path, help="data folder (model store default)")
    return p


def main(argv: Sequence[str]) -> int:
    from bandit.learn.trainer import Trainer
    from bandit.log.backends import is_postgres_url
    from bandit.service import policy_arguments
    from server.logs import configure
    from server.settings import Settings

    ns = parser().parse_args(list(argv))
    overrides = {
        k: v
        for k, v in {"log": ns.log, "model_store": ns.model_store, "data_dir": ns.data_dir}.items()
        if v is not None
    }
    settings = Settings.load(ns.config, **overrides)
    configure(settings.log_level, settings.log_format)
    if not is_postgres_url(settings.log):
        print(
            "offerbandit trainer: log must be a postgresql:// URL (a SQLite log is served and "
            "trained by one `offerbandit serve`)",
            file=sys.stderr,
        )
        return 2
    from bandit.log.postgres import PostgresDecisionLog
    from bandit.log.postgres.lease import TrainerLease

    config = settings.service_config()
    decision_log = PostgresDecisionLog(
        settings.log, windows=config.windows, reward_rule=config.reward_rule
    )
    trainer = Trainer(
        log=decision_log,
        lease=TrainerLease(settings.log),
        model_store=config.checkpoint_dir,
        args=policy_arguments(config),
        reward_rule=config.reward_rule,
        clock=time.time,
        keep=config.checkpoints_kept,
        batch=config.learn_batch,
        close_interval=config.close_interval_seconds,
        checkpoint_every_learns=config.checkpoint_every_learns,
        checkpoint_every_seconds=config.checkpoint_every_seconds,
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping the trainer", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    def _announce() -> None:
        while not stop.is_set():
            if trainer.active.wait(0.2):
                print("offerbandit trainer active", flush=True)
                return

    threading.Thread(target=_announce, name="announce", daemon=True).start()
    print("offerbandit trainer started", flush=True)
    try:
        trainer.run(stop)
    finally:
        decision_log.close()
    log.info("trainer stopped cleanly")
    return 0


__all__ = ["main", "parser"]

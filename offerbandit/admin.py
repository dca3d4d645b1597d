"""Operator commands on a data folder: ``offerbandit void`` and ``offerbandit rollback``.

Recovery from a bad learn (a poisoned outcome feed, a test campaign that leaked into
production): **stop the server**, void what should never have been learned, roll the model
back to a checkpoint from before it, start the server again. Nothing is deleted: voided
decisions and outcomes stay in the log with ``voided_at`` set, and the checkpoints after the
one restored stay on disk (until ``checkpoints_kept`` prunes them). On start the service
loads the restored checkpoint and learns again every decision closed since its position,
skipping voided decisions and using the rewards corrected by voided outcomes.

Examples::

    offerbandit void --data-dir data --outcome o-123 --outcome o-124
    offerbandit void --data-dir data --outcomes-received 2024-05-01T10:00 2024-05-01T11:00
    offerbandit void --data-dir data --decisions-decided 1714557600 1714561200
    offerbandit rollback --data-dir data --list
    offerbandit rollback --data-dir data --to 12        # or --back 1

Times are ISO 8601 (UTC unless they carry an offset) or seconds since the epoch.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bandit.checkpoint import CheckpointStore
from bandit.log.sqlite import SqliteDecisionLog
from bandit.log.sqlite.erasure import erase_customer
from bandit.log.sqlite.retention import auto_vacuum_mode, convert_to_incremental
from server.settings import Settings


def parse_time(text: str) -> float:
    """Seconds since the epoch from ISO 8601 (UTC by default) or a number.

    >>> parse_time("1970-01-01T00:01:00"), parse_time("90.5")
    (60.0, 90.5)
    """
    try:
        return float(text)
    except ValueError:
        pass
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _settings(ns: argparse.Namespace) -> Settings:
    overrides = {"data_dir": ns.data_dir} if ns.data_dir is not None else {}
    return Settings.load(ns.config, **overrides)


def void_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="offerbandit void",
        description="Flag decisions or outcomes as void: kept in the log, never learned. "
        "Stop the server first; then roll back (offerbandit rollback) and start it again.",
    )
    p.add_argument("--config", type=Path, help="TOML settings file (reward settings)")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--outcome", action="append", default=[], help="an outcome id (repeatable)")
    p.add_argument("--decision", action="append", default=[], help="an event id (repeatable)")
    p.add_argument("--outcomes-received", nargs=2, metavar=("FROM", "TO"))
    p.add_argument("--decisions-decided", nargs=2, metavar=("FROM", "TO"))
    ns = p.parse_args(list(argv))
    if not (ns.outcome or ns.decision or ns.outcomes_received or ns.decisions_decided):
        p.error("name something to void")
    settings = _settings(ns)
    config = settings.service_config()
    log = SqliteDecisionLog(config.log_path, windows=config.windows, reward_rule=config.reward_rule)
    now = time.time()
    try:
        outcomes = log.void_outcomes(
            now,
            ns.outcome,
            tuple(map(parse_time, ns.outcomes_received)) if ns.outcomes_received else None,  # type: ignore[arg-type]
        )
        decisions = log.void_decisions(
            now,
            ns.decision,
            tuple(map(parse_time, ns.decisions_decided)) if ns.decisions_decided else None,  # type: ignore[arg-type]
        )
    finally:
        log.close()
    print(f"voided {outcomes} outcomes and {decisions} decisions in {config.log_path}")
    return 0


def rollback_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="offerbandit rollback",
        description="Make an older kept checkpoint the newest again (stop the server first).",
    )
    p.add_argument("--config", type=Path)
    p.add_argument("--data-dir", type=Path)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--list", action="store_true", help="list the kept checkpoints")
    g.add_argument("--to", type=int, metavar="VERSION", help="restore this version")
    g.add_argument("--back", type=int, metavar="N", help="restore the one N before the newest")
    ns = p.parse_args(list(argv))
    config = _settings(ns).service_config()
    store = CheckpointStore(config.checkpoint_dir, keep=config.checkpoints_kept)
    versions = store.versions()
    if ns.list:
        for v in versions:
            c = store.read(v)
            note = f" (restores v{c.restored_from})" if c.restored_from else ""
            print(f"v{v}: learned {c.learned}, log position {c.position}{note}")
        return 0
    if not versions:
        p.error(f"no checkpoints in {config.checkpoint_dir}")
    target = ns.to
    if ns.back is not None:
        if not 0 < ns.back < len(versions):
            p.error(f"--back takes 1 to {len(versions) - 1} here")
        target = versions[-1 - ns.back]
    restored = store.rollback(target, time.time())
    print(
        f"checkpoint v{restored.version} restores v{target} (log position {restored.position}); "
        "start the server to learn again from there, voided rows skipped"
    )
    return 0


def erase_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="offerbandit erase",
        description="Erase a customer from the decision log (the right to be forgotten): "
        "their id becomes a random pseudonym and their features are removed, in every "
        "decision and outcome; the old bytes are overwritten in the database and its WAL. "
        "The server may run meanwhile. What cannot be erased: docs/operations.md.",
    )
    p.add_argument("--config", type=Path, help="the server's TOML settings file")
    p.add_argument("--data-dir", type=Path, help="the server's data_dir (default: settings)")
    p.add_argument("--customer", required=True, action="append", help="a customer id (repeat)")
    ns = p.parse_args(argv)
    log_path = _settings(ns).service_config().log_path
    if not Path(log_path).exists():
        p.error(f"no decision log at {log_path}")
    status = 0
    for customer_id in ns.customer:
        done = erase_customer(Path(log_path), customer_id)
        print(
            f"{customer_id!r} erased as {done.pseudonym}: {done.decisions} decisions, "
            f"{done.outcomes} outcomes"
            + ("" if done.wal_truncated else "; the WAL is still held by a reader: run again")
        )
        status = status or (0 if done.wal_truncated else 1)
    return status


def vacuum_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="offerbandit vacuum",
        description="Convert a decision log created before retention (auto_vacuum NONE) to "
        "auto_vacuum INCREMENTAL, once, so that retention gives the space it frees back to "
        "the file system. One VACUUM: it rewrites the whole file (room for a second copy "
        "needed) and holds the log's writer meanwhile: stop the server first.",
    )
    p.add_argument("--config", type=Path, help="the server's TOML settings file")
    p.add_argument("--data-dir", type=Path, help="the server's data_dir (default: settings)")
    ns = p.parse_args(argv)
    log_path = Path(_settings(ns).service_config().log_path)
    if not log_path.exists():
        p.error(f"no decision log at {log_path}")
    conn = sqlite3.connect(log_path)
    try:
        mode = auto_vacuum_mode(conn)
    finally:
        conn.close()
    if mode == "incremental":
        print(f"{log_path} has auto_vacuum=incremental already: nothing to do")
        return 0
    before, after = convert_to_incremental(log_path)
    print(
        f"{log_path}: auto_vacuum {mode} → incremental, "
        f"{before / 1e6:.1f} MB → {after / 1e6:.1f} MB"
    )
    return 0

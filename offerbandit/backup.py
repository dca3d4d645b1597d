"""``offerbandit backup``: a consistent copy of the decision log while the server runs.

    offerbandit backup --data-dir data --out backups/2026-12-06

SQLite's online backup copies the log page by page in one read transaction (WAL readers
never block the server's writer, and the writer never blocks the copy), so the copy is the
log as of one instant: every decision and outcome committed before it, none half-written.
The newest model checkpoints are copied too (each written atomically by the server), so a
restore is: stop the server, put the folder back as its ``data_dir``, start it — it loads
the checkpoint and learns again whatever closed after it. The copy is checked with
``PRAGMA integrity_check`` before the command says it is done.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

LOG_NAME = "decisions.sqlite"
CHECKPOINTS = "checkpoints"


def backup(data_dir: Path, out: Path, checkpoints: int = 2) -> tuple[int, int]:
    """Copy the log (and the newest ``checkpoints`` checkpoint files) to the new folder
    ``out``; returns (decisions, outcomes) in the copy."""
    source = data_dir / LOG_NAME
    if not source.exists():
        raise FileNotFoundError(f"no decision log at {source}")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty: back up to a new folder")
    out.mkdir(parents=True, exist_ok=True)
    target = out / LOG_NAME
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=4096, sleep=0.005)  # yields between steps: the server goes on
        dst.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal beside it
        (check,) = dst.execute("PRAGMA integrity_check").fetchone()
        if check != "ok":
            raise RuntimeError(f"the copy failed its integrity check: {check}")
        (decisions,) = dst.execute("SELECT COUNT(*) FROM decisions").fetchone()
        (outcomes,) = dst.execute("SELECT COUNT(*) FROM outcomes").fetchone()
    finally:
        src.close()
        dst.close()
    kept = sorted((data_dir / CHECKPOINTS).glob("*"), key=lambda p: p.stat().st_mtime)
    if checkpoints and kept:
        (out / CHECKPOINTS).mkdir()
        for path in kept[-checkpoints:]:
            if path.is_file() and not path.name.endswith(".tmp"):
                shutil.copy2(path, out / CHECKPOINTS / path.name)
    return int(decisions), int(outcomes)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="offerbandit backup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="the server's data_dir")
    p.add_argument("--out", type=Path, required=True, help="a new folder for the copy")
    p.add_argument("--checkpoints", type=int, default=2, help="newest checkpoints to copy")
    ns = p.parse_args(argv)
    start = time.monotonic()
    try:
        decisions, outcomes = backup(ns.data_dir, ns.out, ns.checkpoints)
    except (OSError, RuntimeError, sqlite3.Error) as exc:
        print(f"offerbandit backup: {exc}", file=sys.stderr)
        return 1
    size = (ns.out / LOG_NAME).stat().st_size / 2**20
    print(
        f"backed up {decisions} decisions and {outcomes} outcomes ({size:.1f} MiB) to "
        f"{ns.out} in {time.monotonic() - start:.1f} s; integrity check ok"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

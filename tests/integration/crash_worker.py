"""A learner process for the SIGKILL test: learns a prepared log, checkpointing often.

Run as ``python -m tests.integration.crash_worker DATA_DIR``. It prints ``done`` after every
closed decision is learned and checkpointed; the test kills it (SIGKILL) before that, at
random moments, and starts it again.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bandit.service import DecisionService, ServiceConfig

CHECKPOINT_EVERY = 97


def config(data_dir: Path, background: bool) -> ServiceConfig:
    return ServiceConfig(
        data_dir=data_dir,
        background=background,
        policy="vw",  # the reference model below is a VW workspace
        control_share=0.1,
        checkpoint_every_learns=CHECKPOINT_EVERY,
        checkpoint_every_seconds=3600.0,
        learn_batch=16,
        close_interval_seconds=3600.0,
    )


def main() -> int:
    svc = DecisionService(config(Path(sys.argv[1]), background=True))
    svc.start()
    target = svc.log.last_closed()
    while svc.position < target:
        time.sleep(0.01)
    svc.stop()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`offerbandit serve` with a contact policy, as its own process: SIGHUP re-reads the file (a
bad one is refused with a log message and the running policy stays), and a bad file at start
refuses to start with a message naming the rule and field."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bandit.contact import ContactPolicy
from server.client import OfferBanditClient

CAP = "[[cap]]\nname = 'weekly'\nmax = 1\ndays = 7\n"


def _serve(tmp: Path, policy: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, OFFERBANDIT_CONTACT_POLICY=str(policy), OFFERBANDIT_LOG_LEVEL="INFO")
    return subprocess.Popen(
        [sys.executable, "-m", "offerbandit.cli", "serve", "--port", "0", "--data-dir",
         str(tmp / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip


def _logged(lines: list[str], text: str) -> bool:
    """Whether the server logs ``text`` (waited for, up to 30 s)."""
    for _ in range(300):
        if any(text in line for line in list(lines)):
            return True
        time.sleep(0.1)
    return False


def _digest_becomes(client: OfferBanditClient, digest: str) -> bool:
    """GetStats' digest, waited for: the signal is handled asynchronously (up to 30 s)."""
    for _ in range(300):
        if client.stats().contact_policy == digest:
            return True
        time.sleep(0.1)
    return False


def test_sighup_reloads_and_a_bad_file_keeps_the_running_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(CAP)
    proc = _serve(tmp_path, policy)
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        m = re.search(r"listening on \S+:(\d+)", proc.stdout.readline())
        assert m is not None
        with OfferBanditClient(f"127.0.0.1:{m.group(1)}") as client:
            first = ContactPolicy.parse(CAP).digest
            assert client.stats().contact_policy == first
            policy.write_text("[[cap]]\nmax = 1\n")  # no window
            proc.send_signal(signal.SIGHUP)
            assert _logged(lines, "contact policy reload refused")
            assert client.stats().contact_policy == first  # the running policy stays
            good = CAP.replace("max = 1", "max = 2")
            policy.write_text(good)
            proc.send_signal(signal.SIGHUP)
            assert _digest_becomes(client, ContactPolicy.parse(good).digest)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        reader.join(timeout=60)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    err = "".join(lines)
    assert "cap[0].days: give either days or hours" in err
    assert proc.returncode == 0


def test_a_bad_file_refuses_to_start(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[[quiet_hours]]\nstart = '25:00'\nend = '08:00'\n")
    proc = _serve(tmp_path, policy)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "refusing to start" in err
    assert "quiet_hours[0].start: must be a time of day" in err

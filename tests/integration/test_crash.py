"""kill -9 at any moment loses no acknowledged record and learns nothing twice."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from bandit.checkpoint import CheckpointStore
from bandit.eligibility import ChooseInput
from bandit.learner import VWPolicy
from bandit.records import OutcomeInput
from bandit.service import DecisionService, ManualClock
from bandit.types import Channel, Customer, Offer, Trigger
from server.client import OfferBanditClient
from tests.integration.crash_worker import config

ROOT = Path(__file__).resolve().parents[2]
N_DECISIONS = 2500


def _prepare_log(data_dir: Path) -> None:
    """A log of closed decisions with rewards (no learning yet)."""
    clock = ManualClock()
    svc = DecisionService(config(data_dir, background=False), clock)
    svc.start()
    offers = [Offer(f"o{i}", {"k": float(i)}, discount_rate=0.05 * i) for i in range(4)]
    channels = [Channel("email", contact_cost=0.1), Channel("sms", contact_cost=0.3)]
    rng = random.Random(5)
    for i in range(N_DECISIONS):
        seg = rng.choice(["a", "b", "c"])
        d = svc.choose(
            ChooseInput(Customer(f"c{i}", {"seg": seg}), Trigger("login"), offers, channels)
        )
        if rng.random() < 0.4:
            svc.record_outcome(OutcomeInput(f"out{i}", d.event_id, "", "purchase", 20.0, None))
        clock.advance(1.0)
    clock.advance(10**7)
    assert svc.close_due_windows() == N_DECISIONS
    svc.log.close()  # no stop(): nothing learned, no checkpoint


def _reference_model(data_dir: Path) -> VWPolicy:
    """Every closed decision learned once, in log order, without interruption."""
    svc = DecisionService(config(data_dir, background=False))
    policy = VWPolicy(svc.vw_args)
    for cd in svc.log.closed_after(0, 10**9):
        policy.learn_decision(cd.decision, cd.reward, svc.config.reward_rule.scale)
    svc.log.close()
    return policy


def _copy(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())


@pytest.mark.slow
def test_sigkill_while_learning_neither_loses_nor_repeats(tmp_path: Path) -> None:
    base = tmp_path / "base"
    _prepare_log(base)
    reference = _reference_model(base)
    data = tmp_path / "run"
    _copy(base, data)
    store = CheckpointStore(data / "checkpoints")
    rng = random.Random(11)
    kills = 0
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for _attempt in range(40):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.crash_worker", str(data)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        before = store.latest()
        seen = before.version if before else 0
        # Kill at a random moment after the worker wrote one or two more checkpoints.
        wait_for = seen + rng.choice([1, 2])
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            latest = store.latest()
            if latest is not None and latest.version >= wait_for:
                time.sleep(rng.uniform(0.0, 0.05))
                break
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        out, _ = proc.communicate(timeout=60)
        ckpt = store.latest()
        assert ckpt is not None
        # Positions are contiguous closed_seq values from 1: learned == position means every
        # decision up to the checkpoint was learned once, none skipped, none twice.
        assert ckpt.learned == ckpt.position
        if "done" in out:
            break
    assert kills >= 3, "the worker finished before it could be killed a few times"
    final = store.latest()
    assert final is not None
    assert (final.position, final.learned) == (N_DECISIONS, N_DECISIONS)
    # The same weights and learning state (adaptive and normalised accumulators), exactly,
    # as learning each decision once. The 4th slot per weight is scratch space that VW
    # does not save; it is rebuilt on the next learn.
    resumed = np.asarray(VWPolicy(final.vw_args, final.model).weights())[..., :3]
    assert np.array_equal(resumed, np.asarray(reference.weights())[..., :3])


def _serve(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "offerbandit.cli", "serve", "--port", "0",
            "--data-dir", str(data_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), OFFERBANDIT_LOG_LEVEL="WARNING"),
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on \S+:(\d+)", line)
    assert m, line
    return proc, f"127.0.0.1:{m.group(1)}"


@pytest.mark.slow
def test_sigkill_under_load_loses_no_acknowledged_decision(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, address = _serve(data)
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    offers = [Offer("a"), Offer("b")]
    channels = [Channel("email")]

    def load(k: int) -> None:
        with OfferBanditClient(address, timeout=5) as c:
            i = 0
            while not stop.is_set():
                try:
                    a = c.choose(Customer(f"c{k}-{i}"), Trigger("login"), offers, channels)
                except grpc.RpcError:
                    return  # the server died under us: this call was not acknowledged
                with lock:
                    acknowledged.append(a.event_id)
                i += 1

    threads = [threading.Thread(target=load, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acknowledged) > 100
    proc, address = _serve(data)
    try:
        with OfferBanditClient(address) as c:
            missing = []
            for event_id in acknowledged:
                try:
                    c.get_decision(event_id)
                except grpc.RpcError:
                    missing.append(event_id)
            assert missing == []
            assert c.stats().decisions >= len(acknowledged)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_sigterm_drains_flushes_and_saves_the_model(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, address = _serve(data)
    with OfferBanditClient(address) as c:
        ids = [
            c.choose(Customer(f"c{i}"), Trigger("login"), [Offer("a")], [Channel("email")]).event_id
            for i in range(20)
        ]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    proc, address = _serve(data)
    try:
        with OfferBanditClient(address) as c:
            assert c.stats().decisions == 20
            assert [c.get_decision(e).event_id for e in ids] == ids
    finally:
        proc.terminate()
        proc.communicate(timeout=30)

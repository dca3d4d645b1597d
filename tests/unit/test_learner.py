"""The VW policy: cached/fast paths agree with the public API; checkpoints are atomic."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from bandit.checkpoint import Checkpoint, CheckpointStore, read_checkpoint
from bandit.errors import StorageError
from bandit.learner import VWPolicy, describe_policy, vw_arguments
from bandit.vwformat import label_prefix

ARGS = vw_arguments("--epsilon 0.1", ["co", "ch", "oh"], seed=0)
ACTIONS = ["|o @control |h @control"] + [f"|o @id=o{j} |h @id=h{j % 2}" for j in range(8)]


def _data(n: int, seed: int = 1) -> list[tuple[str, list[str], int, float, float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        shared = f"shared |c seg={rng.choice('abcdef')} x:{rng.random():.4f}"
        out.append((shared, ACTIONS, rng.randrange(len(ACTIONS)), -rng.random(), 1 / len(ACTIONS)))
    return out


def test_fast_predict_with_cached_actions_equals_the_public_path() -> None:
    p = VWPolicy(ARGS)
    data = _data(300)
    for row in data[:200]:
        p.learn(*row)
    for shared, actions, *_ in data[200:]:
        assert p.predict(shared, actions) == p.predict_public(shared, actions)


@pytest.mark.parametrize("exploration", ["--epsilon 0.1", "--squarecb", "--softmax --lambda 5"])
def test_learning_with_cached_action_examples_equals_fresh_parses(exploration: str) -> None:
    args = vw_arguments(exploration, ["co", "oh"], seed=0)
    cached = VWPolicy(args)
    fresh = VWPolicy(args)
    parse = fresh._parser.parse_line
    for shared, actions, chosen, cost, prob in _data(500):
        cached.learn(shared, actions, chosen, cost, prob)
        lines = [shared] + [
            label_prefix(cost, prob) + a if i == chosen else a for i, a in enumerate(actions)
        ]
        fresh._ws.learn_one([parse(line) for line in lines])
    a = np.asarray(cached.weights())[..., :3]
    b = np.asarray(fresh.weights())[..., :3]
    assert np.array_equal(a, b)


def test_a_reloaded_model_predicts_the_same() -> None:
    p = VWPolicy(ARGS)
    data = _data(200)
    for row in data:
        p.learn(*row)
    q = VWPolicy(ARGS, p.serialize())
    for shared, actions, *_ in data[:20]:
        assert q.predict(shared, actions) == p.predict(shared, actions)


def test_policy_description_names_exploration_not_seed() -> None:
    assert describe_policy(ARGS) == "vw:--epsilon 0.1 -q co -q ch -q oh"


def test_checkpoints_are_atomic_files_and_old_ones_are_pruned(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    for v in range(1, 5):
        store.save(Checkpoint(v, v * 10, v * 10, ARGS, 0.0, b"model-%d" % v))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["model-00000003.ckpt", "model-00000004.ckpt"]
    latest = store.latest()
    assert latest is not None
    assert (latest.version, latest.position, latest.model) == (4, 40, b"model-4")
    (tmp_path / "model-00000005.tmp").write_bytes(b"half-written")  # a crash mid-write
    assert store.latest() == latest
    (tmp_path / "model-00000009.ckpt").write_bytes(b"not json\n")
    with pytest.raises(StorageError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "model-00000009.ckpt")

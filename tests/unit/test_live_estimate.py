"""GetStats' doubly robust incremental estimate against a known truth, on seeded simulated logs.

Each log: customers of four segments whose control purchase rate and basket differ a lot (what
a baseline can explain), a treatment with a known uplift, and a policy that adapts (the more
a segment has earned when treated, the more it is treated, down to the 5 % control floor), so
the decisions are not independent — the case the estimate's baseline, fitted only on
earlier decisions, is built for. Tolerances come from the number of logs (binomial)."""

from __future__ import annotations

import math
import random

import numpy as np

from bandit.log.sqlite.live import LiveIncremental, Row
from bandit.records import Incremental

SEGMENTS = {"a": (0.1, 20.0), "b": (0.5, 60.0), "c": (0.8, 120.0), "d": (0.85, 200.0)}
"""Control's purchase rate and basket per segment."""
LIFT = {"a": 0.10, "b": 0.10, "c": -0.05, "d": 0.02}
"""The treatment's extra purchase rate (c is hurt by it)."""
COST = 1.0


def _value(segment: str, treated: bool) -> float:
    p, basket = SEGMENTS[segment]
    return (p + (LIFT[segment] if treated else 0.0)) * basket - (COST if treated else 0.0)


def _log(seed: int, n: int) -> tuple[float, list[float], list[float]]:
    """The truth (Σ μ·v − v(control), averaged) and both estimates' scores for one log."""
    rng = random.Random(seed)
    earned = {s: [0.0, 0] for s in SEGMENTS}
    rows, plain, truth = [], [], 0.0
    for _ in range(n):
        s = rng.choice(list(SEGMENTS))
        total, count = earned[s]
        mean = total / count if count else 0.0
        # Adapts to what it has seen: treats a segment more once its treated rows earned more.
        mu = 0.05 if count > 20 and mean > _value(s, False) else 0.5
        truth += (1.0 - mu) * (_value(s, True) - _value(s, False))
        control = rng.random() < mu
        p, basket = SEGMENTS[s]
        bought = rng.random() < p + (0.0 if control else LIFT[s])
        reward = (basket if bought else 0.0) - (0.0 if control else COST)
        if not control:
            earned[s][0] += reward
            earned[s][1] += 1
        rows.append(
            Row({"segment": s, "visits": float(rng.randrange(5))}, "login", {}, reward, control, mu)
        )
        plain.append(reward - (reward / mu if control else 0.0))
    dr = LiveIncremental(dims=32, block=200).add(rows)
    return truth / n, plain, dr


def _interval(psi: list[float]) -> Incremental:
    a = np.asarray(psi)
    return Incremental.from_sums(len(a), float(a.sum()), float(np.dot(a, a)))


def test_the_doubly_robust_interval_covers_the_truth_and_is_narrower_than_the_plain_one() -> None:
    logs, n = 100, 800
    covered = 0
    errors, widths, plain_widths = [], [], []
    for seed in range(logs):
        truth, plain, dr = _log(seed, n)
        e, p = _interval(dr), _interval(plain)
        covered += e.ci_low <= truth <= e.ci_high
        errors.append(e.per_decision - truth)
        widths.append(e.ci_high - e.ci_low)
        plain_widths.append(p.ci_high - p.ci_low)
    # 95 % coverage: Binomial(100, 0.95) has sd 2.2; 3 sd below its mean of 95 is 88.5.
    assert covered >= 89, covered
    # Unbiased: the mean error within 4 standard errors of 0 (the errors' own spread).
    se = float(np.std(errors, ddof=1)) / math.sqrt(logs)
    assert abs(float(np.mean(errors))) < 4 * se, (np.mean(errors), se)
    # The baseline explains most of control's reward here: clearly narrower intervals.
    assert np.mean(widths) < 0.8 * np.mean(plain_widths), (np.mean(widths), np.mean(plain_widths))


def test_a_baseline_of_zero_gives_the_plain_scores() -> None:
    rows = [Row({"s": "a"}, "t", {}, r, c, 0.25) for r, c in [(4.0, True), (2.0, False)]]
    # The first block is scored before any fit: b = 0, so ψ = r − 1{control}·r/μ.
    assert LiveIncremental(block=10).add(rows) == [4.0 - 16.0, 2.0]


def test_scores_do_not_depend_on_how_the_rows_are_batched() -> None:
    rng = random.Random(1)
    rows = [
        Row({"s": rng.choice("abc")}, "t", {}, rng.random() * 10, rng.random() < 0.3, 0.3)
        for _ in range(700)
    ]
    whole = LiveIncremental(dims=32, block=100).add(rows)
    parts = LiveIncremental(dims=32, block=100)
    pieces: list[float] = []
    for k in range(0, 700, 37):
        pieces += parts.add(rows[k : k + 37])
    # The same fits at the same rows; only the sums' order may differ (float rounding).
    assert np.allclose(pieces, whole, rtol=1e-9, atol=1e-9)

"""The uplift policy: exact pmfs, exactly-once persistence, and it learns where to treat."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bandit.learner import describe_policy, make_policy
from bandit.rewards import RewardRule
from bandit.types import (
    CONTROL_TREATMENT,
    Channel,
    Context,
    Customer,
    Offer,
    Treatment,
    Trigger,
)
from bandit.uplift import UpliftPolicy, parse_settings, uplift_arguments
from bandit.uplift.features import FeatureIndex, context_tokens

GOOD = Treatment(
    Offer("voucher", {"kind": "money"}, fixed_cost=2.0), Channel("sms", contact_cost=0.1)
)
POOR = Treatment(
    Offer("discount", {"kind": "pct"}, discount_rate=0.2), Channel("sms", contact_cost=0.1)
)
TREATMENTS = (CONTROL_TREATMENT, GOOD, POOR)
BASE_RATE, BASKET = 0.3, 50.0
LIFT = {
    ("a", "voucher"): 0.4,
    ("b", "voucher"): -0.2,
    ("a", "discount"): 0.05,
    ("b", "discount"): 0.05,
}
"""Purchase probability added by a delivered offer, per segment. In segment ``a`` the voucher
is worth 0.4·50 − 2·0.7 − 0.1 ≈ +18.5 EUR over control; in ``b`` it annoys: −0.2·50 − 2·0.1 −
0.1 ≈ −10.3; the 20% discount loses money everywhere (−0.2·17.5 + 2.5·0.8 − 0.1 ≈ −1.6)."""


def _ctx(segment: str, i: int = 0) -> Context:
    return Context(
        Customer(f"c{i}", {"segment": segment, "ltv": 100.0 + i % 7, "vip": i % 3 == 0}),
        Trigger("login", {"hour": float(i % 24)}),
    )


def _true_uplift(segment: str, t: Treatment) -> float:
    if t.offer is None or t.channel is None:
        return 0.0
    p = BASE_RATE + LIFT[(segment, t.offer.id)]
    value = p * BASKET * (1 - t.offer.discount_rate) - p * t.offer.fixed_cost
    return value - t.channel.contact_cost - BASE_RATE * BASKET


def _train(policy: UpliftPolicy, n: int, seed: int, start: int = 0) -> None:
    """Uniformly logged decisions with purchases drawn from the small world above; the
    first ``start`` are drawn (the stream stays the same) but not learned."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        segment = "a" if rng.random() < 0.5 else "b"
        t = TREATMENTS[int(rng.integers(3))]
        p = BASE_RATE + (LIFT[(segment, t.offer.id)] if t.offer else 0.0)
        bought = bool(rng.random() < p)
        if i >= start:
            policy.learn(_ctx(segment, i), t, BASKET if bought else 0.0, bought)


def test_an_empty_policy_explores_evenly_and_otherwise_does_nothing() -> None:
    p = UpliftPolicy.from_args(uplift_arguments("--explore 0.3"))
    assert p.scores(_ctx("a"), TREATMENTS) == pytest.approx([0.7 + 0.1, 0.1, 0.1])


@pytest.mark.parametrize("explore", [0.0, 0.1, 1.0])
def test_the_pmf_is_the_stated_mixture_of_the_confident_choice_and_posterior_votes(
    explore: float,
) -> None:
    p = UpliftPolicy.from_args(uplift_arguments(f"--explore {explore} --samples 16"))
    _train(p, 600, seed=1)
    p.publish()
    for segment in "ab":
        pmf = np.array(p.scores(_ctx(segment), TREATMENTS))
        mean, dev = p.uplift(_ctx(segment), TREATMENTS)
        sd = np.sqrt(np.mean(dev**2, axis=1))
        kappa = p.settings.kappa * math.sqrt(1 + p.settings.evidence / p.posterior.n)
        lower = mean - kappa * sd
        best = 1 + int(np.argmax(lower[1:]))
        greedy = best if lower[best] > 0 else 0
        votes = np.bincount(np.argmax(mean[:, None] + dev, axis=0), minlength=3) / 16
        expected = explore * votes
        expected[greedy] += 1 - explore
        assert pmf == pytest.approx(expected, abs=1e-12)
        assert math.fsum(pmf) == pytest.approx(1.0, abs=1e-12)
        assert (pmf >= 0).all()
        assert p.scores(_ctx(segment), TREATMENTS) == list(pmf)  # a function of the model


@pytest.mark.parametrize("form", ["product", "additive"])
def test_it_learns_to_treat_the_positive_cell_and_to_leave_the_negative_cell_alone(
    form: str,
) -> None:
    # The default prior on crosses (λ = 1000) believes a segment-specific effect only once a
    # cell holds several thousand decisions: n/6 = 8000 per segment × treatment here.
    n = 48_000
    p = UpliftPolicy.from_args(uplift_arguments(f"--explore 0.1 --form {form}", seed=0))
    _train(p, n, seed=2)
    p.publish()
    # Per cell about n/6 decisions per treatment; a purchase indicator times 50 EUR has a
    # standard deviation of at most 25 EUR, so the effect's standard error is at most
    # 25·sqrt(2/(n/6)) ≈ 0.4 EUR. Allow five of them, plus what the prior keeps of the
    # pooled effect: λ/(n/6 + λ) of the ±14 EUR between the segments' voucher uplifts.
    se = 25.0 * math.sqrt(2 / (n / 6)) + 14.0 * 1000 / (n / 6 + 1000)
    for segment in "ab":
        mean, _ = p.uplift(_ctx(segment, 5), TREATMENTS)
        for k, t in enumerate(TREATMENTS):
            assert abs(mean[k] - _true_uplift(segment, t)) < 5 * se, (segment, t, mean)
    treat_a = p.scores(_ctx("a", 5), TREATMENTS)
    treat_b = p.scores(_ctx("b", 5), TREATMENTS)
    assert treat_a[1] >= 0.9  # the voucher, confidently
    assert treat_b[0] >= 0.9  # control: nothing in b is worth its cost
    assert treat_b[1] + treat_b[2] <= 0.1


@pytest.mark.parametrize("form", ["product", "additive"])
def test_a_restart_from_the_serialized_model_neither_loses_nor_repeats_learning(
    form: str,
) -> None:
    args = uplift_arguments(f"--samples 8 --form {form}", seed=4)
    whole = UpliftPolicy.from_args(args)
    _train(whole, 900, seed=3)
    first = UpliftPolicy.from_args(args)
    _train(first, 400, seed=3)
    resumed = UpliftPolicy.from_args(args, first.serialize())
    assert resumed.learned == 400
    _train(resumed, 900, seed=3, start=400)
    a, b = whole.publish(), resumed.publish()
    for x, y in zip(a.means + a.samples, b.means + b.samples, strict=True):
        np.testing.assert_array_equal(x, y)
    assert whole.scores(_ctx("a"), TREATMENTS) == resumed.scores(_ctx("a"), TREATMENTS)


def test_a_decider_built_from_the_bytes_scores_like_the_publisher() -> None:
    args = uplift_arguments("", seed=1)
    learner = UpliftPolicy.from_args(args)
    _train(learner, 500, seed=5)
    decider = make_policy(args, learner.serialize())
    for segment in "ab":
        assert decider.scores(_ctx(segment), TREATMENTS) == learner.scores(
            _ctx(segment), TREATMENTS
        )


def test_learn_closed_learns_revenue_and_purchase_from_the_closed_decision() -> None:
    from bandit.types import Decision

    p = UpliftPolicy.from_args(uplift_arguments(""))
    d = Decision("e1", _ctx("a"), TREATMENTS, (0.5, 0.25, 0.25), 1, "v0", "uplift", 1.0)
    p.learn_closed(d, reward=45.9, revenue=50.0, n_outcomes=1, rule=RewardRule())
    p.learn_closed(d, reward=-0.1, revenue=0.0, n_outcomes=0, rule=RewardRule())
    stats = p._ensure_stats()
    assert stats.n == 2
    assert stats.yty.tolist() == [2500.0, 1.0]  # revenue² and purchase² summed


def test_hostile_revenue_is_clipped_and_never_poisons_the_model() -> None:
    p = UpliftPolicy.from_args(uplift_arguments("--max-revenue 500"))
    p.learn(_ctx("a"), GOOD, 1e300, True)
    p.learn(_ctx("a"), GOOD, float("nan"), True)
    p.learn(_ctx("b"), CONTROL_TREATMENT, float("inf"), True)
    p.publish()
    pmf = p.scores(_ctx("a"), TREATMENTS)
    assert all(math.isfinite(x) for x in pmf)
    assert math.fsum(pmf) == pytest.approx(1.0)
    assert p._ensure_stats().yty[0] <= 3 * 500.0**2


def test_the_fast_context_reader_matches_the_general_path() -> None:
    idx = FeatureIndex(max_params=4096)
    ctx = Context(
        Customer("c", {"s": "x", "n": -3.5, "i": 7, "f": False, "tags": ("a", "b", "a")}),
        Trigger("t", {"h": 1e12, "z": "q"}),
    )
    added = dict(zip(*[a.tolist() for a in idx.context(ctx, add=True)], strict=True))
    read = dict(zip(*[a.tolist() for a in idx.context(ctx)], strict=True))
    assert read == pytest.approx(added)
    assert len(added) == len(context_tokens(ctx))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("--kappa -1", "kappa must be >= 0"),
        ("--evidence -5", "evidence must be >= 0"),
        ("--explore 1.5", "explore must be within"),
        ("--samples 0", "samples must be within"),
        ("--ridge 0", "ridges must be > 0"),
        ("--frobnicate 3", "unknown uplift options"),
        ("--kappa x", "bad uplift options"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(options: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        uplift_arguments(options)


def test_arguments_round_trip_and_name_the_policy() -> None:
    args = uplift_arguments("--kappa 1.5", seed=9)
    assert parse_settings(args[1:]).args() == args
    assert describe_policy(args).startswith("uplift:--kappa 1.5 --explore 0.1")


def test_a_reloaded_model_learns_tokens_it_has_never_seen() -> None:
    """After a reload, new offers, channels and context tokens get parameters (the flags
    that mark pair tokens and trigger types were sized to the tokens, not to the tables)."""
    p = UpliftPolicy.from_args(uplift_arguments(""))
    _train(p, 50, seed=6)
    q = UpliftPolicy.from_args(p.args, p.serialize())
    fresh = Treatment(Offer("new", {"kind": "gift"}), Channel("push", {"rich": True}))
    for i in range(30):
        ctx = Context(Customer(f"n{i}", {f"f{i}": "x"}), Trigger(f"t{i}"))
        q.learn(ctx, fresh, 10.0, True)
    q.publish()
    assert math.fsum(q.scores(_ctx("a"), (*TREATMENTS, fresh))) == pytest.approx(1.0)


def test_the_gate_asks_for_more_evidence_while_little_is_learned() -> None:
    # The same model, published once: the gate's kappa is kappa·sqrt(1 + evidence/n), so a
    # treatment confident at kappa 1 is left alone while n is small next to ``evidence``.
    plain = UpliftPolicy.from_args(uplift_arguments("--explore 0 --evidence 0", seed=0))
    strict = UpliftPolicy.from_args(uplift_arguments("--explore 0 --evidence 1e9", seed=0))
    for p in (plain, strict):
        _train(p, 6_000, seed=5)
        p.publish()
    mean, dev = plain.uplift(_ctx("a", 5), TREATMENTS)
    sd = np.sqrt(np.mean(dev**2, axis=1))
    assert mean[1] - sd[1] > 0  # the voucher in segment a: confident at kappa 1 …
    assert mean[1] - math.sqrt(1 + 1e9 / 6_000) * sd[1] < 0  # … not with the evidence term
    assert plain.scores(_ctx("a", 5), TREATMENTS) == [0.0, 1.0, 0.0]
    assert strict.scores(_ctx("a", 5), TREATMENTS) == [1.0, 0.0, 0.0]

"""The uplift policy as the live policy, over real gRPC: it learns where treating pays, it
logs exact propensities, and a restart continues from its checkpoint."""

from __future__ import annotations

import random
import time

from bandit.types import Channel, Customer, Offer, Trigger
from server.client import OfferBanditClient
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from tests.conftest import ServerFactory

OFFERS = [Offer("shoes", {"cat": "shoes"}), Offer("bags", {"cat": "bags"}, fixed_cost=2.0)]
CHANNELS = [Channel("email", contact_cost=0.5)]
BEST = {"runner": "shoes", "traveller": "bags"}


def _mass(answer: pb.ChooseResponse, offer_id: str) -> float:
    return sum(s.probability for s in answer.ranking if s.treatment.offer_id == offer_id)


def _control_mass(answer: pb.ChooseResponse) -> float:
    return sum(s.probability for s in answer.ranking if not s.treatment.offer_id)


def _wait_learned(c: OfferBanditClient, n: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = c.stats()
        if stats.learned_decisions >= n and stats.model_version != "v0":
            return
        time.sleep(0.2)
    raise AssertionError(f"learned {c.stats().learned_decisions} of {n}")


def test_the_uplift_policy_treats_each_segment_with_its_best_offer_and_restarts_in_place(
    make_server: ServerFactory,
) -> None:
    settings = {
        "policy": "uplift",
        # The default prior on crosses (λ = 1000) believes a segment-specific effect after a
        # few thousand decisions per cell; this loop has ~300, so it uses a weaker one.
        "uplift_options": "--explore 0.2 --ridge-cross 30",
        "attribution_window_seconds": 0.3,
        "close_interval_seconds": 0.05,
        "checkpoint_every_learns": 200,
        "checkpoint_every_seconds": 0.5,
    }
    running = make_server(**settings)
    # The outcomes are seeded; which model version answers a call depends on the learner
    # thread's timing, so the margins below are wide (the effects are +27 and +2 EUR).
    rng = random.Random(5)
    n = 2500
    with OfferBanditClient(running.address) as c:
        first = c.choose(Customer("c0", {"segment": "runner"}), Trigger("login"), OFFERS, CHANNELS)
        # Nothing learned yet: control but for the exploration share and the control floor.
        assert _control_mass(first) > 0.8
        for i in range(n):
            segment = rng.choice(list(BEST))
            a = c.choose(
                Customer(f"c{i}", {"segment": segment}), Trigger("login"), OFFERS, CHANNELS
            )
            chosen = next(s for s in a.ranking if s.treatment == a.chosen)
            assert a.propensity == chosen.probability  # logged exactly as sampled
            # Each segment's best offer sells 60% of the time, the other 10%; nothing sells 10%.
            p = 0.1 if a.control else 0.6 if a.chosen.offer_id == BEST[segment] else 0.1
            if rng.random() < p:
                c.record_outcome(f"o{i}", event_id=a.event_id, revenue=50.0)
        _wait_learned(c, n)
        time.sleep(1.0)  # the last checkpoint reaches the decider
        for segment, best in BEST.items():
            a = c.choose(
                Customer("probe", {"segment": segment}), Trigger("login"), OFFERS, CHANNELS
            )
            assert a.policy.startswith("uplift:")
            assert _mass(a, best) > 0.75, (segment, list(a.ranking))
        # Every decision (the probes too) learned before the restart: what the restarted
        # server then says does not depend on how soon after its start it is asked.
        _wait_learned(c, n + 3)
        learned = c.stats().learned_decisions
    data_dir = running.service.config.data_dir
    running.stop(grace=1.0)
    again = make_server(**settings, data_dir=data_dir)
    with OfferBanditClient(again.address) as c:
        stats = c.stats()
        assert stats.learned_decisions == learned  # nothing lost, nothing learned twice
        a = c.choose(Customer("probe", {"segment": "runner"}), Trigger("login"), OFFERS, CHANNELS)
        assert _mass(a, "shoes") > 0.75

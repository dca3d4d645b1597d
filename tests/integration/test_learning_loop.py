"""The loop learns over real gRPC: each segment ends up on its own best treatment."""

from __future__ import annotations

import random
import time

from bandit.types import Channel, Customer, Offer, Trigger
from server.client import OfferBanditClient
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from tests.conftest import ServerFactory

OFFERS = [Offer("shoes", {"cat": "shoes"}), Offer("bags", {"cat": "bags"})]
CHANNELS = [Channel("email", contact_cost=0.5)]
BEST = {"runner": "shoes", "traveller": "bags"}


def _mass(answer: pb.ChooseResponse, offer_id: str) -> float:
    return sum(s.probability for s in answer.ranking if s.treatment.offer_id == offer_id)


def test_live_policy_puts_most_mass_on_each_segments_best_treatment(
    make_server: ServerFactory,
) -> None:
    running = make_server(
        attribution_window_seconds=0.3,
        close_interval_seconds=0.05,
        checkpoint_every_learns=200,
        checkpoint_every_seconds=0.5,
        policy="vw",
        exploration="--squarecb --gamma_scale 1000",  # VW's default; see below
    )
    # Offer features (@id, cat) are shared by both segments, so the segment-specific signal
    # lives only in the customer × offer interaction. With --epsilon 0.1 a segment's greedy
    # choice stayed on the other segment's best offer in about one run in ten (exploration
    # of the right one: 3%); squarecb explores by estimated gap and recovered in every run.
    rng = random.Random(3)
    with OfferBanditClient(running.address) as c:
        for i in range(3000):
            segment = rng.choice(list(BEST))
            a = c.choose(
                Customer(f"c{i}", {"segment": segment}), Trigger("login"), OFFERS, CHANNELS
            )
            # The segment's best offer sells 80% of the time; the other one 10%; doing
            # nothing sells 5% (what would have happened anyway).
            p = 0.05 if a.control else 0.8 if a.chosen.offer_id == BEST[segment] else 0.1
            if rng.random() < p:
                c.record_outcome(f"o{i}", event_id=a.event_id, revenue=50.0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = c.stats()
            if stats.learned_decisions == 3000 and stats.model_version != "v0":
                break
            time.sleep(0.2)
        assert stats.learned_decisions == 3000
        assert stats.outcomes_attributed > 0
        time.sleep(1.0)  # the last checkpoint reaches the decider
        for segment, best in BEST.items():
            a = c.choose(
                Customer("probe", {"segment": segment}), Trigger("login"), OFFERS, CHANNELS
            )
            assert _mass(a, best) > 0.5, (segment, list(a.ranking))
            other = next(o.id for o in OFFERS if o.id != best)
            assert _mass(a, best) > _mass(a, other)

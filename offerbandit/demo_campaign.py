"""The demo's outbound campaign: once the simulated triggered flow has run, one campaign over
every simulated customer through the same server — the live policy, contact policies and log
— with a tenth held out, and the send list written beside the run (docs/campaigns.md)."""

from __future__ import annotations

from pathlib import Path

from bandit.sim import World
from bandit.sim._catalog import CAMPAIGN_TRIGGER
from bandit.types import Trigger
from offerbandit.campaign import Campaign, RunSummary, run
from server.client import OfferBanditClient

CAMPAIGN_ID = "demo-campaign"
HOLDOUT = 0.1

__all__ = ["CAMPAIGN_ID", "demo_campaign"]


def demo_campaign(address: str, world: World, out: Path) -> tuple[RunSummary, str]:
    """Decide the campaign for every customer of ``world`` through the server at
    ``address``; the summary and a line for the demo's output."""
    campaign = Campaign(
        CAMPAIGN_ID,
        Trigger(CAMPAIGN_TRIGGER),
        list(world.offers),
        [c for c in world.channels if c.id in ("email", "sms", "push")],
        holdout=HOLDOUT,
    )

    with OfferBanditClient(address, timeout=30) as client:
        s = run(client, campaign, iter(world.customers), out, progress=False)
    line = (
        f"campaign {CAMPAIGN_ID}: {s.decided} customers decided in one ChooseBatchStream — "
        f"{s.sent} to send, {s.control} left alone by the policy, {s.holdout} held out "
        f"({HOLDOUT:.0%} by a hash of campaign and customer), {s.refused} refused; send list "
        f"{out}. Once sends are activated and windows close: offerbandit uplift --log <server "
        f"log> --campaign {CAMPAIGN_ID}"
    )
    return s, line

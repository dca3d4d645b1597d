"""The simulator's outbound mode: a campaign over the whole customer base every few days,
between the triggered events.

A campaign is one :data:`~bandit.sim._catalog.CAMPAIGN_TRIGGER` event per customer at the
campaign's hour (:meth:`bandit.sim.world.World.campaign_events`), decided like any event —
through the same backend, policy, contact policy and log — with the campaign's id and holdout
share on each Choose, so its decisions carry the ``campaign`` trigger feature and its holdout
customers get control with certainty (``offerbandit uplift --campaign sim-campaign-N``
reports it). The triggered stream is unchanged: a run with campaigns sees the same triggered
events as one without (their values differ only through the contacts the campaigns add).

>>> o = Outbound(every_days=7.0, hour=9.0, holdout=0.1)
>>> o.campaign_id(3)
'sim-campaign-3'
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from bandit.sim import _catalog as cat
from bandit.sim.world import ChooseInputs, World, WorldEvent

__all__ = ["Outbound", "with_campaigns"]


@dataclass(frozen=True, slots=True)
class Outbound:
    """Campaigns every ``every_days`` at ``hour`` (UTC) from the first such time after the
    run starts, each holding out ``holdout`` of the customers."""

    every_days: float = 7.0
    hour: float = 9.0
    holdout: float = 0.1

    def __post_init__(self) -> None:
        if not (self.every_days > 0 and math.isfinite(self.every_days)):
            raise ValueError("campaigns: every_days must be a positive number")
        if not 0.0 <= self.hour < 24.0:
            raise ValueError("campaigns: hour must be within [0, 24)")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError("campaigns: holdout must be within [0, 1)")

    @staticmethod
    def campaign_id(number: int) -> str:
        return f"sim-campaign-{number}"

    def first_after(self, t: float) -> float:
        day = math.floor(t / cat.DAY) * cat.DAY + self.hour * cat.HOUR
        return day if day > t else day + cat.DAY

    def inputs(self, world: World, event: WorldEvent) -> ChooseInputs:
        """The Choose inputs of ``event``: a campaign's carry its id and holdout share."""
        if event.trigger.type != cat.CAMPAIGN_TRIGGER:
            return world.choose_inputs(event)
        number = int(event.event_id.rsplit("-", 2)[1].removeprefix("campaign"))
        return world.choose_inputs(event, self.campaign_id(number), self.holdout)


def with_campaigns(
    world: World, events: Iterator[WorldEvent], outbound: Outbound | None
) -> Iterator[WorldEvent]:
    """``events`` with every campaign due before each of them first (none without
    ``outbound``); campaigns are made as their time comes, so each sees the contacts made
    before it."""
    if outbound is None:
        yield from events
        return
    due = outbound.first_after(world.clock)
    number = 0
    for event in events:
        while due <= event.time:
            yield from world.campaign_events(due, number)
            number += 1
            due += outbound.every_days * cat.DAY
        yield event

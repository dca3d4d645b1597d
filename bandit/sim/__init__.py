"""A simulated marketing world with a known truth, to test and benchmark offerbandit against.

>>> from bandit.sim import World
>>> world = World(seed=1, config=WorldConfig(n_customers=200))
>>> [e.event_id for e in world.events(2)]
['sim1-00000000', 'sim1-00000001']
"""

from __future__ import annotations

from bandit.sim._catalog import ChannelModel, DelayDistribution
from bandit.sim.world import (
    ChooseInputs,
    OutcomeBatch,
    SimulatedOutcome,
    World,
    WorldConfig,
    WorldEvent,
    WorldValues,
)

__all__ = [
    "ChannelModel",
    "ChooseInputs",
    "DelayDistribution",
    "OutcomeBatch",
    "SimulatedOutcome",
    "World",
    "WorldConfig",
    "WorldEvent",
    "WorldValues",
]

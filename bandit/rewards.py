"""Turning a decision's attributed outcomes into the reward the learner optimises.

The rule, for a decision whose window has closed (or, in ``first_outcome`` mode, at its first
attributed outcome):

* control: ``reward = revenue`` when something was attributed, else ``default_reward``;
* a treatment: ``reward = revenue − offer cost − channel contact cost``, where the offer cost
  ``fixed_cost + discount_rate × revenue`` is paid only when attributed revenue is positive
  (an offer that was not redeemed costs nothing), and the contact cost is always paid. With
  nothing attributed: ``default_reward − contact cost``.

VW minimises cost, so the learner uses ``cost = −reward × reward_scale``
(:func:`bandit.vwformat.reward_to_cost`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bandit.types import RewardMode


@dataclass(frozen=True, slots=True)
class RewardRule:
    """How rewards are computed. ``scale`` maps money to VW cost units."""

    default_reward: float = 0.0
    scale: float = 0.01
    mode: RewardMode = RewardMode.WINDOW_SUM

    def reward(
        self,
        *,
        revenue: float,
        n_outcomes: int,
        is_control: bool,
        fixed_cost: float = 0.0,
        discount_rate: float = 0.0,
        contact_cost: float = 0.0,
    ) -> float:
        """Net value of one decision in money.

        >>> rule = RewardRule()
        >>> rule.reward(revenue=80.0, n_outcomes=1, is_control=False,
        ...             discount_rate=0.1, contact_cost=0.5)
        71.5
        >>> rule.reward(revenue=0.0, n_outcomes=0, is_control=False, fixed_cost=5.0,
        ...             contact_cost=0.5)
        -0.5
        >>> rule.reward(revenue=80.0, n_outcomes=1, is_control=True)
        80.0
        """
        if is_control:
            return revenue if n_outcomes else self.default_reward
        base = revenue if n_outcomes else self.default_reward
        offer_cost = fixed_cost + discount_rate * revenue if revenue > 0 else 0.0
        return base - offer_cost - contact_cost

"""Turning a decision's attributed outcomes into the reward the learner optimises.

The rule, for a decision whose window has closed (or, in ``first_outcome`` mode, at its first
attributed outcome):

* control: ``reward = revenue`` when something was attributed, else ``default_reward``;
* a treatment: ``reward = revenue − offer cost − channel contact cost``, where the offer cost
  ``fixed_cost + discount_rate × revenue`` is paid only when attributed revenue is positive
  (an offer that was not redeemed costs nothing), and the contact cost is always paid. With
  nothing attributed: ``default_reward − contact cost``.

**Outcome values.** ``outcome_values`` gives some outcome types a money value of their own,
added to the reward of the decision they are attributed to — typically negative: an
``unsubscribe`` worth −20 makes the learner avoid treatments that annoy
(:meth:`RewardRule.with_outcomes`). The log sums the values of a decision's attributed
outcomes (its ``outcome_value`` column) and adds the sum to the reward when the decision
closes; revenue reports are unaffected.

VW minimises cost, so the learner uses ``cost = −reward × reward_scale``
(:func:`bandit.vwformat.reward_to_cost`).

**Bounded rewards.** Before the rule runs, the attributed revenue is clipped to
``max_learned_revenue`` (:meth:`RewardRule.clip`), and the net reward is kept within
``±max_learned_revenue``: one absurd outcome (a mistyped 1e12, a test order) moves the model
by a bounded step. Only the learned reward is clipped: the log keeps the raw revenue (each
outcome's, and the decision's sum in its ``revenue`` column), while its ``reward`` column is
the clipped reward the learner saw. For offline work this means: estimates built on
``reward`` (OPE of the learner's objective) are estimates of the *clipped* objective — biased
low for decisions with revenue above the cap, with a smaller variance; revenue reports built
on ``revenue`` stay raw. Set ``max_learned_revenue`` above any real basket to make the clip
a pure safety net.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bandit.types import RewardMode


@dataclass(frozen=True, slots=True)
class RewardRule:
    """How rewards are computed. ``scale`` maps money to VW cost units."""

    default_reward: float = 0.0
    scale: float = 0.01
    mode: RewardMode = RewardMode.WINDOW_SUM
    max_learned_revenue: float = 10_000.0
    """Attributed revenue above this is learned as this much (the log keeps the raw value);
    net rewards are kept within ± this."""

    outcome_values: tuple[tuple[str, float], ...] = ()
    """Money values of outcome types (``(("unsubscribe", -20.0),)``), added to the reward of
    the decision an outcome of that type is attributed to."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_learned_revenue) and self.max_learned_revenue > 0):
            raise ValueError(
                f"max_learned_revenue must be finite and positive, not {self.max_learned_revenue}"
            )
        for kind, value in self.outcome_values:
            if not (kind and math.isfinite(value) and abs(value) <= self.max_learned_revenue):
                raise ValueError(
                    f"outcome_values[{kind!r}] must be a finite amount within "
                    f"±max_learned_revenue, not {value}"
                )

    def value_of(self, outcome_type: str) -> float:
        """The money value of an outcome type (0 when none is configured).

        >>> RewardRule(outcome_values=(("unsubscribe", -20.0),)).value_of("unsubscribe")
        -20.0
        """
        for kind, value in self.outcome_values:
            if kind == outcome_type:
                return value
        return 0.0

    def with_outcomes(self, reward: float, value: float) -> float:
        """A closing reward with its attributed outcomes' values added, kept within
        ±``max_learned_revenue``.

        >>> rule = RewardRule(max_learned_revenue=100.0)
        >>> rule.with_outcomes(-0.5, -20.0), rule.with_outcomes(-90.0, -20.0)
        (-20.5, -100.0)
        """
        if not value:
            return reward
        total = reward + value
        bound = self.max_learned_revenue
        return total if -bound <= total <= bound else (bound if total > 0 else -bound)

    def clip(self, revenue: float) -> float:
        """``revenue`` as the learner may see it: within [0, ``max_learned_revenue``].

        >>> rule = RewardRule(max_learned_revenue=1000.0)
        >>> rule.clip(80.0), rule.clip(1e300), rule.clip(-3.0), rule.clip(float("nan"))
        (80.0, 1000.0, 0.0, 0.0)
        """
        if not revenue > 0.0:  # also NaN
            return 0.0
        return revenue if revenue <= self.max_learned_revenue else self.max_learned_revenue

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
        >>> RewardRule(max_learned_revenue=100.0).reward(revenue=1e300, n_outcomes=1,
        ...                                             is_control=True)
        100.0
        """
        revenue = self.clip(revenue)
        if is_control:
            value = revenue if n_outcomes else self.default_reward
        else:
            base = revenue if n_outcomes else self.default_reward
            offer_cost = fixed_cost + discount_rate * revenue if revenue > 0 else 0.0
            value = base - offer_cost - contact_cost
        bound = self.max_learned_revenue
        if not -bound <= value <= bound:
            return bound if value > 0 else -bound  # NaN cannot arise from checked inputs
        return value

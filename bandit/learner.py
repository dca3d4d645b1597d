"""The Vowpal Wabbit policy: scoring contexts into a pmf, learning logged decisions, saving.

:class:`VWPolicy` wraps one ``vowpal_wabbit_next.Workspace`` and is **not** thread-safe: it
has one owner. The service keeps two of them — the *decider* (Choose's, behind a lock) and
the *learner* (the learning thread's) — and publishes the learner's weights to the decider
at every checkpoint, so Choose never waits on learning.

>>> p = VWPolicy(vw_arguments("--epsilon 0.2", ["co"], seed=1))
>>> pmf = p.predict("shared |c a", ["|o @control |h @control", "|o @id=x |h @id=y"])
>>> len(pmf), round(sum(pmf), 6)
(2, 1.0)
"""

from __future__ import annotations

import shlex
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol, cast

import vowpal_wabbit_next as vw

from bandit.caching import IdentityCache
from bandit.rewards import RewardRule
from bandit.types import Context, Decision, Treatment
from bandit.vwformat import (
    action_lines,
    candidate_lines,
    label_prefix,
    reward_to_cost,
    shared_line,
)

DEFAULT_EXPLORATION = "--squarecb --gamma_scale 1000"
DEFAULT_INTERACTIONS = ("co", "ch", "to", "th", "oh")


def vw_arguments(
    exploration: str, interactions: Sequence[str], seed: int, extra: str = ""
) -> list[str]:
    """The full VW command line for a ``--cb_explore_adf`` policy.

    >>> vw_arguments("--squarecb", ["co", "ch"], seed=3)
    ['--cb_explore_adf', '--quiet', '--random_seed', '3', '--squarecb', '-q', 'co', '-q', 'ch']
    """
    args = ["--cb_explore_adf", "--quiet", "--random_seed", str(seed)]
    args += shlex.split(exploration)
    for pair in interactions:
        args += ["-q", pair]
    args += shlex.split(extra)
    return args


def example_lines(context: Context, treatments: Sequence[Treatment]) -> tuple[str, list[str]]:
    """The shared line and the action lines for a context and its candidate treatments."""
    return (
        shared_line(context.customer.features, context.trigger.type, context.trigger.features),
        action_lines(treatments),
    )


def decision_lines(d: Decision) -> tuple[str, list[str]]:
    """The lines a logged decision was scored with (the same path Choose used)."""
    return example_lines(d.context, d.treatments)


class Policy(Protocol):
    """Anything that maps a (shared line, action lines) example to a pmf in action order."""

    def predict(self, shared: str, actions: Sequence[str]) -> list[float]: ...


class Learner(Protocol):
    """What the service needs of a live policy (VW or uplift): score, learn, save.

    ``args`` names the policy and its settings (a VW command line, or ``uplift`` and its
    options); a checkpoint stores it with the model, and :func:`make_policy` rebuilds the
    policy from both. One object has one owner: the service keeps a *learner* and a
    *decider* built from the learner's published model.
    """

    args: list[str]
    learned: int

    def scores(self, context: Context, treatments: tuple[Treatment, ...]) -> Sequence[float]:
        """Non-negative scores in treatment order (control first), normalised by the caller
        before the control floor is mixed in."""
        ...

    def scores_many(
        self, contexts: Sequence[Context], treatments: tuple[Treatment, ...]
    ) -> list[Sequence[float]]:
        """:meth:`scores` of each context with the same candidates, in order: exactly what
        :meth:`scores` gives each (a batch of a campaign's customers scored in one pass)."""
        ...

    def learn_closed(
        self, d: Decision, reward: float, revenue: float, n_outcomes: int, rule: RewardRule
    ) -> None:
        """Learn one closed decision: its net reward and what it was computed from."""
        ...

    def serialize(self) -> bytes: ...


UPLIFT = "uplift"
"""``args[0]`` of an uplift policy (a VW policy's starts with ``--cb_explore_adf``)."""


def make_policy(args: Sequence[str], model: bytes | None = None) -> Learner:
    """The policy ``args`` describe, starting from ``model`` (bytes of :meth:`serialize`).

    >>> make_policy(vw_arguments("--squarecb", ["co"], seed=1)).args[0]
    '--cb_explore_adf'
    """
    if args and args[0] == UPLIFT:
        from bandit.uplift import UpliftPolicy

        return UpliftPolicy.from_args(args, model)
    return VWPolicy(args, model)


class VWPolicy:
    """One VW ``--cb_explore_adf`` workspace with a small cache of parsed action lines.

    Parsed action examples are reused across predictions (with a fixed catalogue, only the
    shared line is parsed per call); a test checks reuse gives identical pmfs.

    Every example is parsed by this workspace's own parser, so the per-example label-type
    check of ``Workspace.predict_one``/``learn_one`` cannot fail; calling the core methods
    directly takes a third of the VW time (one prediction on pre-parsed examples, measured
    in process: 18 vs 58 µs with 10 actions, 37 vs 110 µs with 50; docs/performance.md has
    the service's figures). A test checks both paths agree.
    """

    def __init__(
        self, args: Sequence[str], model: bytes | None = None, *, cache_size: int = 4096
    ) -> None:
        self.args = list(args)
        self._ws = vw.Workspace(self.args, model_data=model)
        self._parser = vw.TextFormatParser(self._ws)
        core = self._ws._workspace
        self._predict = core.predict_multi_ex_one
        self._learn = core.learn_multi_ex_one
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        self._action_lists = IdentityCache(self._actions, size=256)
        self.learned = 0

    def _parse(self, line: str) -> Any:
        return self._parser.parse_line(line)._example

    def _action(self, line: str) -> Any:
        ex = self._cache.get(line)
        if ex is None:
            ex = self._parse(line)
            self._cache[line] = ex
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return ex

    def _actions(self, actions: tuple[str, ...]) -> list[Any]:
        return [self._action(a) for a in actions]

    def predict(self, shared: str, actions: Sequence[str]) -> list[float]:
        """The pmf over ``actions``, in their order (VW ranks; we map back by index)."""
        examples = [self._parse(shared)]
        if actions.__class__ is tuple:  # Choose's cached lines: the same tuple per catalogue
            examples += self._action_lists(actions)
        else:
            action = self._action
            examples += [action(a) for a in actions]
        ranked = cast(list[tuple[int, float]], self._predict(examples))
        pmf = [0.0] * len(actions)
        for index, prob in ranked:
            pmf[index] = prob
        return pmf

    def predict_public(self, shared: str, actions: Sequence[str]) -> list[float]:
        """:meth:`predict` through the wrapper's checked public path (for tests)."""
        examples = [self._parser.parse_line(line) for line in [shared, *actions]]
        ranked = cast(list[tuple[int, float]], self._ws.predict_one(examples))
        pmf = [0.0] * len(actions)
        for index, prob in ranked:
            pmf[index] = prob
        return pmf

    def learn(
        self, shared: str, actions: Sequence[str], chosen: int, cost: float, probability: float
    ) -> None:
        """Learn one logged decision: the chosen action's cost and logged probability.

        Unlabelled action examples come from the parse cache (learning leaves them as they
        were; a test checks the weights equal those of fresh parses)."""
        action = self._action
        examples = [self._parse(shared)]
        for i, a in enumerate(actions):
            examples.append(
                self._parse(label_prefix(cost, probability) + a) if i == chosen else action(a)
            )
        self._learn(examples)
        self.learned += 1

    def scores(self, context: Context, treatments: tuple[Treatment, ...]) -> list[float]:
        """:meth:`predict` on a context and its candidates (Choose's path)."""
        shared = shared_line(
            context.customer.features, context.trigger.type, context.trigger.features
        )
        return self.predict(shared, candidate_lines(treatments))

    def scores_many(
        self, contexts: Sequence[Context], treatments: tuple[Treatment, ...]
    ) -> list[Sequence[float]]:
        """:meth:`scores` of each context (VW predicts one example at a time)."""
        return [self.scores(c, treatments) for c in contexts]

    def learn_closed(
        self, d: Decision, reward: float, revenue: float, n_outcomes: int, rule: RewardRule
    ) -> None:
        """The :class:`Learner` method: VW learns the net reward only."""
        self.learn_decision(d, reward, rule.scale)

    def learn_decision(self, d: Decision, reward: float, scale: float) -> None:
        """Learn a logged decision with its reward (money; ``scale`` maps it to VW cost)."""
        ctx = d.context
        shared = shared_line(ctx.customer.features, ctx.trigger.type, ctx.trigger.features)
        actions = candidate_lines(d.treatments)
        self.learn(shared, actions, d.chosen, reward_to_cost(reward, scale), d.propensity)

    def serialize(self) -> bytes:
        return bytes(self._ws.serialize())

    def weights(self) -> Any:
        """The weight array with its per-weight learning state (for exact comparisons;
        serialized bytes also carry run counters that differ after a reload)."""
        return self._ws.weights()


def describe_policy(args: Sequence[str]) -> str:
    """A short policy id for logs: the exploration part of the VW arguments.

    >>> describe_policy(vw_arguments("--squarecb --gamma_scale 10", ["co"], seed=1))
    'vw:--squarecb --gamma_scale 10 -q co'
    """
    if args and args[0] == UPLIFT:
        return UPLIFT + ":" + " ".join(args[1:])
    skip = {"--cb_explore_adf", "--quiet"}
    out: list[str] = []
    it = iter(args)
    for a in it:
        if a in skip:
            continue
        if a == "--random_seed":
            next(it, None)
            continue
        out.append(a)
    return "vw:" + " ".join(out)

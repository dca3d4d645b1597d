"""Counterfactual replay of candidate VW settings through a decision log.

"What if we had run ``--squarecb`` with these interactions?" A :class:`VWReplay` starts a
fresh VW workspace with the candidate settings and walks the log in decision order
(``seq``). For every logged decision it **first predicts** (that pmf is the candidate's
target pmf for the row) and **then learns** the logged label: the chosen treatment, its cost
``−reward × scale`` and the logged propensity. This is progressive validation: row ``i``'s
pmf comes from a model that has learned rows ``0 … i−1`` only, so the off-policy estimates of
the replay score a learner as it would have behaved online (without the service's feedback
delay, which only makes the live learner a little staler).

Both steps are one call of VW's ``predict_then_learn`` (the prediction is guaranteed to be
made before learning; a test checks it equals a predict followed by a learn), on examples
built from the log column-wise, with each catalogue's action examples parsed once and
reused (only the shared line and the chosen action's labelled line are parsed per row).

The pmf of decisions without a final reward (not closed) is predicted, and nothing is
learned from them. Holdout decisions are learned like the service learns them, and left out
of the estimates by the study.

>>> VWReplay.parse("--squarecb -q co -q ch -l 0.3").vw_args[3:]
['0', '--squarecb', '-q', 'co', '-q', 'ch', '-l', '0.3']
"""

from __future__ import annotations

import itertools
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, cast

import numpy as np
import vowpal_wabbit_next as vw
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.learner import DEFAULT_EXPLORATION, DEFAULT_INTERACTIONS, describe_policy, vw_arguments
from bandit.rewards import RewardRule
from bandit.vwformat import format_number, label_prefix
from offline_eval.io.logs import LoggedBandit
from offline_eval.replay.policies import (
    PolicyTarget,
    catalogue_lines,
    control_columns,
    mix_control_share,
    shared_lines,
)

__all__ = [
    "DEFAULT_GRID_EXPLORATIONS",
    "DEFAULT_GRID_INTERACTIONS",
    "DEFAULT_GRID_LEARNING_RATES",
    "VWReplay",
    "progressive_replay",
    "settings_grid",
]

FloatArray = NDArray[np.float64]

DEFAULT_SCALE: Final = RewardRule().scale
"""The service's default reward → cost scale."""

DEFAULT_GRID_EXPLORATIONS: Final = ("--epsilon 0.05", "--squarecb")
DEFAULT_GRID_INTERACTIONS: Final = ((), ("co", "ch"), DEFAULT_INTERACTIONS)
DEFAULT_GRID_LEARNING_RATES: Final = (0.1, 0.5)

_DROP: Final = {"--cb_explore_adf", "--quiet"}


@dataclass(frozen=True, slots=True)
class ReplayRun:
    """The raw result of one replay."""

    pmf: FloatArray
    model: bytes
    vw_args: list[str]
    learned: int
    seconds: float


def progressive_replay(
    args: Sequence[str],
    lb: LoggedBandit,
    *,
    scale: float = DEFAULT_SCALE,
    model: bytes | None = None,
    progress: bool = False,
    desc: str = "replaying",
    on_row: Callable[[int], None] | None = None,
) -> ReplayRun:
    """Predict-then-learn every logged decision of ``lb`` in ``seq`` order.

    ``on_row(i)`` is called after row ``i`` was predicted and before it is learned (tests use
    it to check the order). Returns the ``(n, K)`` pmfs and the final weights.
    """
    start = time.perf_counter()
    ws = vw.Workspace(list(args), model_data=model)
    parser = vw.TextFormatParser(ws)
    core = ws._workspace
    predict = core.predict_multi_ex_one
    step = core.predict_then_learn_multi_ex_one

    def parse(line: str) -> Any:
        return parser.parse_line(line)._example

    frame = lb.frame
    n, k = lb.n, lb.max_treatments
    pmf = np.zeros((n, k))
    shared = shared_lines(lb)
    lines = catalogue_lines(lb)
    parsed: dict[int, list[Any]] = {}
    cats = frame["catalogue_id"].to_numpy(dtype=np.int64).tolist()
    chosen = frame["chosen"].to_numpy(dtype=np.int64).tolist()
    rewards = frame["reward"].to_numpy(dtype=np.float64)
    closed = frame["closed"].to_numpy(dtype=bool) & np.isfinite(rewards)
    labels = [
        label_prefix(0.0 - r * scale, p) if ok else ""
        for r, p, ok in zip(
            np.where(closed, rewards, 0.0).tolist(),
            frame["propensity"].to_numpy(dtype=np.float64).tolist(),
            closed.tolist(),
            strict=True,
        )
    ]
    order = np.argsort(frame["seq"].to_numpy(), kind="stable").tolist() if n else []
    learned = 0
    for i in tqdm(order, desc=desc, unit="dec", disable=not progress, mininterval=0.5):
        c = cats[i]
        actions = parsed.get(c)
        if actions is None:
            actions = parsed[c] = [parse(line) for line in lines[c]]
        examples = [parse(shared[i]), *actions]
        label = labels[i]
        if label and on_row is None:
            a = chosen[i]
            examples[1 + a] = parse(label + lines[c][a])
            ranked = cast(list[tuple[int, float]], step(examples))
            learned += 1
        else:
            ranked = cast(list[tuple[int, float]], predict(examples))
            if on_row is not None:
                on_row(i)
            if label:
                a = chosen[i]
                examples[1 + a] = parse(label + lines[c][a])
                core.learn_multi_ex_one(examples)
                learned += 1
        row = pmf[i]
        for index, prob in ranked:
            row[index] = prob
    total = pmf.sum(axis=1, keepdims=True)
    pmf /= np.where(total > 0, total, 1.0)
    return ReplayRun(pmf, bytes(ws.serialize()), list(args), learned, time.perf_counter() - start)


def _split_args(spec: str) -> tuple[list[str], list[str], float | None, int | None]:
    """(exploration tokens, interactions, learning rate, seed) of a VW argument string."""
    text = spec.strip()
    if text.startswith("vw:"):
        text = text[3:]
    tokens = shlex.split(text)
    rest: list[str] = []
    pairs: list[str] = []
    lr: float | None = None
    seed: int | None = None
    it = iter(tokens)
    for tok in it:
        if tok in _DROP:
            continue
        if tok in ("-q", "--quadratic", "--interactions"):
            value = next(it, None)
            if value is None:
                raise ValueError(f"{tok} needs a value in {spec!r}")
            pairs.append(value)
        elif tok.startswith("-q") and len(tok) > 2:
            pairs.append(tok[2:])
        elif tok in ("-l", "--learning_rate"):
            value = next(it, None)
            if value is None:
                raise ValueError(f"{tok} needs a value in {spec!r}")
            lr = float(value)
        elif tok == "--random_seed":
            value = next(it, None)
            if value is None:
                raise ValueError(f"{tok} needs a value in {spec!r}")
            seed = int(value)
        else:
            rest.append(tok)
    return rest, pairs, lr, seed


@dataclass(frozen=True, slots=True)
class VWReplay:
    """Candidate VW ``--cb_explore_adf`` settings, scored by replaying them through the log.

    Attributes:
        exploration: the exploration part of the VW command line (``--squarecb``,
            ``--epsilon 0.1`` …).
        interactions: ``-q`` namespace pairs (``co``, ``ch``, ``to``, ``th``, ``oh``: customer,
            trigger, offer, channel; see :mod:`bandit.vwformat`).
        learning_rate: VW ``-l`` (``None``: VW's default, 0.5).
        seed: VW ``--random_seed``.
        extra: any further VW arguments.
        scale: reward (money) → VW cost scale, as the service's ``RewardRule.scale``.
        control_share: control share mixed into the target pmf, as the service does (the
            model learns the same either way).
        label: a display name (default: the VW arguments).
    """

    exploration: str = DEFAULT_EXPLORATION
    interactions: tuple[str, ...] = ()
    learning_rate: float | None = None
    seed: int = 0
    extra: str = ""
    scale: float = DEFAULT_SCALE
    control_share: float = 0.0
    label: str = ""

    @classmethod
    def parse(cls, spec: str, **overrides: Any) -> VWReplay:
        """From a VW argument string, e.g. ``"--squarecb -q co -l 0.3"`` (or a logged
        ``policy`` id such as ``"vw:--epsilon 0.05 -q co"``)."""
        rest, pairs, lr, seed = _split_args(spec)
        if not rest:
            rest = shlex.split(DEFAULT_EXPLORATION)
        fields: dict[str, Any] = {
            "exploration": shlex.join(rest),
            "interactions": tuple(pairs),
            "learning_rate": lr,
        }
        if seed is not None:
            fields["seed"] = seed
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def logged(cls, lb: LoggedBandit, **overrides: Any) -> VWReplay:
        """The settings that wrote the log (its ``policy`` column), to replay them."""
        ids = [p for p in lb.frame["policy"].unique().tolist() if str(p).startswith("vw:")]
        if len(ids) != 1:
            raise ValueError(f"the log holds {len(ids)} VW policies ({ids}); give the settings")
        overrides.setdefault("label", "vw:logged")
        return cls.parse(str(ids[0]), **overrides)

    @property
    def vw_args(self) -> list[str]:
        extra = self.extra
        if self.learning_rate is not None:
            extra = f"{extra} -l {format_number(self.learning_rate)}".strip()
        return vw_arguments(self.exploration, self.interactions, self.seed, extra)

    @property
    def name(self) -> str:
        return self.label or describe_policy(self.vw_args)

    def params(self) -> dict[str, str]:
        return {
            "policy": "vw-replay",
            "vw_args": " ".join(self.vw_args),
            "exploration": self.exploration,
            "interactions": ",".join(self.interactions) or "none",
            "learning_rate": "default" if self.learning_rate is None else str(self.learning_rate),
            "reward_scale": str(self.scale),
            "control_share": str(self.control_share),
            "seed": str(self.seed),
        }

    def replay(self, lb: LoggedBandit, *, progress: bool = False) -> ReplayRun:
        return progressive_replay(
            self.vw_args, lb, scale=self.scale, progress=progress, desc=f"replay {self.name}"
        )

    def target(self, lb: LoggedBandit, *, progress: bool = False) -> PolicyTarget:
        run = self.replay(lb, progress=progress)
        pmf = mix_control_share(run.pmf, control_columns(lb), self.control_share)
        rate = run.learned / run.seconds if run.seconds > 0 else float("nan")
        return PolicyTarget(
            pmf,
            model=run.model,
            vw_args=tuple(run.vw_args),
            notes=(f"replayed {lb.n} decisions, learned {run.learned} ({rate:,.0f}/s)",),
            seconds=run.seconds,
            learned=run.learned,
        )


def settings_grid(
    explorations: Sequence[str] = DEFAULT_GRID_EXPLORATIONS,
    interactions: Sequence[Sequence[str]] = DEFAULT_GRID_INTERACTIONS,
    learning_rates: Sequence[float | None] = DEFAULT_GRID_LEARNING_RATES,
    **common: Any,
) -> list[VWReplay]:
    """Every exploration × interactions × learning rate, as replays (``common`` fields shared).

    >>> [r.name for r in settings_grid(["--squarecb"], [(), ("co",)], [0.5])]
    ['vw:--squarecb -l 0.5', 'vw:--squarecb -q co -l 0.5']
    """
    base = VWReplay(**common)
    return [
        replace(base, exploration=e, interactions=tuple(q), learning_rate=lr)
        for e, q, lr in itertools.product(explorations, interactions, learning_rates)
    ]

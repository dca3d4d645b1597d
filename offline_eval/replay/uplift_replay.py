"""Counterfactual replay of candidate uplift-policy settings through a decision log.

The uplift policy's twin of :mod:`offline_eval.replay.vw_replay`: an :class:`UpliftReplay` starts an
empty :class:`~bandit.uplift.UpliftPolicy` with the candidate settings and walks the log in
decision order (``seq``). Each row is **first scored** with the last published posterior —
that pmf is the row's target pmf — **then learned** (closed rows only: attributed revenue and
whether there was a purchase). A new posterior is published every ``publish_every`` learned
decisions, as the service publishes one at each checkpoint, so the replay scores the policy
as it would have behaved online (without the feedback delay).

>>> UpliftReplay.parse("--kappa 2").name
'uplift:--kappa 2'
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.types import Context, Customer, Trigger, freeze_features
from bandit.uplift import UpliftPolicy, uplift_arguments
from offline_eval.io.logs import LoggedBandit, contexts
from offline_eval.replay.policies import PolicyTarget, control_columns, mix_control_share

__all__ = ["UpliftReplay", "log_contexts", "uplift_pmf"]

FloatArray = NDArray[np.float64]

DEFAULT_PUBLISH_EVERY = 1000
"""The service's default ``checkpoint_every_learns``."""


def log_contexts(lb: LoggedBandit) -> list[Context]:
    """Every row's context as the service saw it."""
    ids = lb.frame["customer_id"].tolist()
    types = lb.frame["trigger_type"].tolist()
    out = []
    for i in range(lb.n):
        cust, trig = contexts(lb, i)
        out.append(
            Context(
                Customer(str(ids[i]), freeze_features(cust)),
                Trigger(str(types[i]), freeze_features(trig)),
            )
        )
    return out


def uplift_pmf(
    policy: UpliftPolicy,
    lb: LoggedBandit,
    *,
    learn: bool = False,
    publish_every: int = DEFAULT_PUBLISH_EVERY,
    progress: bool = False,
    desc: str = "scoring",
) -> tuple[FloatArray, int]:
    """``policy``'s pmf on every row in ``seq`` order; with ``learn``, progressive
    validation (score, then learn, publishing every ``publish_every`` learned rows).
    Returns the pmfs and how many rows were learned."""
    frame = lb.frame
    pmf = np.zeros((lb.n, lb.max_treatments))
    ctx = log_contexts(lb)
    cats = frame["catalogue_id"].to_numpy(dtype=np.int64).tolist()
    chosen = frame["chosen"].to_numpy(dtype=np.int64).tolist()
    closed = frame["closed"].to_numpy(dtype=bool).tolist()
    revenue = frame["revenue"].to_numpy(dtype=np.float64).tolist()
    n_out = frame["n_outcomes"].to_numpy(dtype=np.int64).tolist()
    order = np.argsort(frame["seq"].to_numpy(), kind="stable").tolist() if lb.n else []
    learned = since = 0
    for i in tqdm(order, desc=desc, unit="dec", disable=not progress, mininterval=0.5):
        treatments = lb.catalogues[cats[i]]
        row = policy.scores(ctx[i], treatments)
        pmf[i, : len(row)] = row
        if learn and closed[i]:
            policy.learn(ctx[i], treatments[chosen[i]], revenue[i], n_out[i] > 0 and revenue[i] > 0)
            learned += 1
            since += 1
            if since >= publish_every:
                policy.publish()
                since = 0
    total = pmf.sum(axis=1, keepdims=True)
    return pmf / np.where(total > 0, total, 1.0), learned


@dataclass(frozen=True, slots=True)
class UpliftReplay:
    """Candidate uplift settings (``uplift_options`` as the service takes them), scored by
    replaying them through the log. ``control_share`` mixes control in as the service does."""

    options: str = ""
    seed: int = 0
    control_share: float = 0.0
    publish_every: int = DEFAULT_PUBLISH_EVERY
    label: str = ""

    @classmethod
    def parse(cls, spec: str, **overrides: Any) -> UpliftReplay:
        """From an options string (``"--kappa 2 --explore 0.1"``), or ``uplift:…``."""
        text = spec.strip().removeprefix("uplift:").strip()
        uplift_arguments(text)  # refuse bad options now, with their message
        return cls(options=text, **overrides)

    @property
    def args(self) -> list[str]:
        return uplift_arguments(self.options, self.seed)

    @property
    def name(self) -> str:
        return self.label or "uplift:" + (" ".join(shlex.split(self.options)) or "default")

    def params(self) -> dict[str, str]:
        return {
            "policy": "uplift-replay",
            "uplift_args": " ".join(self.args),
            "control_share": str(self.control_share),
            "publish_every": str(self.publish_every),
            "seed": str(self.seed),
        }

    def target(self, lb: LoggedBandit, *, progress: bool = False) -> PolicyTarget:
        start = time.perf_counter()
        policy = UpliftPolicy.from_args(self.args)
        pmf, learned = uplift_pmf(
            policy,
            lb,
            learn=True,
            publish_every=self.publish_every,
            progress=progress,
            desc=f"replay {self.name}",
        )
        pmf = mix_control_share(pmf, control_columns(lb), self.control_share)
        seconds = time.perf_counter() - start
        return PolicyTarget(
            pmf,
            model=policy.serialize(),
            vw_args=tuple(policy.args),
            notes=(f"replayed {lb.n} decisions, learned {learned}",),
            seconds=seconds,
            learned=learned,
        )

"""Where a starting service's policy comes from: the newest checkpoint, else an initial
model, else a fresh policy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bandit.checkpoint import Checkpoint
from bandit.learner import UPLIFT, describe_policy
from bandit.uplift import is_uplift_model

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Start:
    """The policy's arguments and model, and where its learning left off."""

    args: list[str]
    model: bytes | None
    version: int = 0
    position: int = 0
    learned: int = 0


def starting_point(
    latest: Checkpoint | None,
    args: Sequence[str],
    initial_model: bytes | None,
    initial_args: Sequence[str],
    args_of: Callable[[str], list[str]],
) -> Start:
    """The newest checkpoint ``latest`` (its arguments win over the configured ``args``);
    else ``initial_model`` with ``initial_args`` (when given, they win), or — bare weights
    of the other policy kind than configured — with ``args_of(kind)``'s arguments (``kind``
    ``"vw"`` or ``"uplift"``); else a fresh policy from ``args``."""
    args = list(args)
    if latest is not None:
        if latest.vw_args != args:
            log.warning(
                "checkpoint v%d was trained as %s; continuing with those arguments "
                "instead of the configured %s",
                latest.version,
                latest.vw_args,
                args,
            )
        return Start(list(latest.vw_args), latest.model, latest.version, latest.position,
                     latest.learned)  # fmt: skip
    model = initial_model
    if model is not None and initial_args:
        if list(initial_args) != args:
            log.warning(
                "the initial model was trained with %s; using those arguments instead "
                "of the configured %s",
                list(initial_args),
                args,
            )
        args = list(initial_args)
    elif model is not None and (args[0] == UPLIFT) != is_uplift_model(model):
        # Bare weights without their arguments: their own kind wins.
        configured = UPLIFT if args[0] == UPLIFT else "vw"
        args = args_of("vw") if configured == UPLIFT else args_of(UPLIFT)
        log.warning("the initial model is not a %s model; serving it as %s",
                    configured, describe_policy(args))  # fmt: skip
    return Start(args, model)


__all__ = ["Start", "starting_point"]

"""A campaign decided in this process: ``offerbandit campaign run --data-dir DIR``.

The same job as over the wire (:func:`offerbandit.campaign.run`), with the decision service
opened on the data folder here instead of a server — for a batch job on the machine that
holds the log while no server runs: the log has one writer, so stop the server first (or use
``--server``); nothing here detects a running one. :class:`LocalChooser` answers the
campaign's requests as ``ChooseStream`` does: in order, each once its decision is durable,
a refused request as a result with the error's status name and message, and at most
``window`` decisions queued on the log at once
(their writes are committed in groups, as concurrent Choose calls are).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from bandit.commit import Commit
from bandit.errors import OfferBanditError
from bandit.service import DecisionService, SystemClock
from bandit.types import Decision
from server import converters as cv
from server.app import load_initial_model
from server.errors import code_name, short_message
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.settings import Settings

__all__ = ["LocalChooser", "open_local"]

WINDOW = 256
"""Decisions queued on the log before the first is waited for (as the server's stream)."""


class LocalChooser:
    """``choose_stream`` over an in-process :class:`DecisionService`."""

    def __init__(self, service: DecisionService, window: int = WINDOW) -> None:
        self.service = service
        self.window = window

    def choose_stream(
        self, requests: Iterable[pb.ChooseRequest], timeout: float | None = None
    ) -> Iterator[pb.ChooseStreamResult]:
        del timeout  # nothing remote to wait for
        pending: collections.deque[tuple[int, Decision | OfferBanditError, Commit[Any] | None]]
        pending = collections.deque()
        for index, req in enumerate(requests):
            try:
                decision, commit = self.service.submit_choice(cv.choose_from_pb(req))
                pending.append((index, decision, commit))
            except OfferBanditError as exc:
                pending.append((index, exc, None))
            while len(pending) > self.window:
                yield _answer(*pending.popleft())
        while pending:
            yield _answer(*pending.popleft())


def _answer(
    index: int, decision: Decision | OfferBanditError, commit: Commit[Any] | None
) -> pb.ChooseStreamResult:
    if isinstance(decision, OfferBanditError):
        return pb.ChooseStreamResult(
            index=index, error_code=code_name(decision), error=short_message(decision)
        )
    answer: Decision = decision
    if commit is not None:
        try:
            answer = commit.wait()  # durable (or the one logged before under its request id)
        except OfferBanditError as exc:
            return pb.ChooseStreamResult(
                index=index, error_code=code_name(exc), error=short_message(exc)
            )
    return pb.ChooseStreamResult(index=index, decision=cv.choose_to_pb(answer))


def open_local(data_dir: Path, config_file: Path | None = None) -> DecisionService:
    """The decision service on ``data_dir`` with the settings ``serve`` would use (a config
    file and ``OFFERBANDIT_*`` variables; its model, contact policy and control share),
    started without the closer and learner threads (a batch job decides; the server learns
    when it runs again); :meth:`DecisionService.stop` it."""
    settings = Settings.load(config_file, data_dir=data_dir)
    config = replace(settings.service_config(load_initial_model(settings.model)), background=False)
    service = DecisionService(config, SystemClock())
    service.start()
    return service

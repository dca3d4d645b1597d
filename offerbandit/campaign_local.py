"""A campaign decided in this process: ``offerbandit campaign run --data-dir DIR``.

The same job as over the wire (:func:`offerbandit.campaign.run`), with the decision service
opened on the data folder here instead of a server — for a batch job on the machine that
holds the log while no server runs: the log has one writer, so stop the server first (or use
``--server``); nothing here detects a running one. :class:`LocalChooser` answers the
campaign's chunks as ``ChooseBatchStream`` does — each chunk decided in one pass
(:mod:`bandit.choose_batch`) and answered in order once its decisions are durable, a refused
customer as a result with the error's status name and message — with at most ``window``
chunks queued on the log at once (the log's writer commits one while the next is decided).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from bandit.choose_batch import BatchCustomer, BatchResult
from bandit.commit import Commit
from bandit.errors import OfferBanditError
from bandit.service import DecisionService, SystemClock
from bandit.types import Customer, Decision
from server import converters as cv
from server.app import ModelRegistry, is_registry_uri, load_initial_model
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.settings import Settings

__all__ = ["LocalChooser", "open_local"]

WINDOW = 2
"""Chunks queued on the log before the first is waited for."""


class LocalChooser:
    """``choose_batches`` (as :class:`server.client.OfferBanditClient` has it) over an
    in-process :class:`DecisionService`."""

    def __init__(self, service: DecisionService, window: int = WINDOW) -> None:
        self.service = service
        self.window = window

    def choose_batches(
        self,
        template: pb.ChooseRequest,
        chunks: Iterable[Sequence[tuple[Customer, str]]],
        timeout: float | None = None,
    ) -> Iterator[pb.ChooseBatchResult]:
        del timeout  # nothing remote to wait for
        if template.HasField("customer") or template.request_id:
            raise ValueError("a batch template has no customer and no request id")
        tpl = cv.choose_from_pb(template)
        pending: collections.deque[tuple[int, BatchResult]] = collections.deque()
        start = 0
        for chunk in chunks:
            customers = [_customer(c, request_id) for c, request_id in chunk]
            pending.append((start, self.service.submit_batch(tpl, customers, _written)))
            start += len(customers)
            while len(pending) > self.window:
                yield _answer(*pending.popleft())
        while pending:
            yield _answer(*pending.popleft())


def _written() -> None:
    """The ``on_done`` of a chunk's write: the log's writer commits it at once (nothing
    else to do: :func:`_answer` waits on the handles)."""


def _customer(c: Customer, request_id: str) -> BatchCustomer:
    try:
        return BatchCustomer(cv.customer_as_sent(c), request_id)
    except OfferBanditError as exc:
        return BatchCustomer(None, request_id, exc.with_traceback(None))


def _answer(start: int, batch: BatchResult) -> pb.ChooseBatchResult:
    """The batch's answer, each decision once durable (its handle waited for)."""
    return pb.ChooseBatchResult.FromString(cv.batch_answers_to_wire(start, batch.results, _durable))


def _durable(commit: Commit[Decision]) -> Decision:
    return commit.wait()


def open_local(data_dir: Path, config_file: Path | None = None) -> DecisionService:
    """The decision service on ``data_dir`` with the settings ``serve`` would use (a config
    file and ``OFFERBANDIT_*`` variables; its model — a checkpoint file or a registered model,
    ``models:/name@alias`` — contact policy and control share),
    started without the closer and learner threads (a batch job decides; the server learns
    when it runs again); :meth:`DecisionService.stop` it."""
    settings = Settings.load(config_file, data_dir=data_dir)
    registry: ModelRegistry | None = None
    if is_registry_uri(settings.model):  # a registered model, loaded as ``serve`` loads it
        from offline_eval.tracking.registry import load_checkpoint

        registry = load_checkpoint
    initial = load_initial_model(settings.model, registry)
    config = replace(settings.service_config(initial), background=False)
    service = DecisionService(config, SystemClock())
    service.start()
    return service

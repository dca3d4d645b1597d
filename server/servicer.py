"""The gRPC servicer: each RPC converts, calls the service object, converts back.

No business logic and no try/except here: :func:`server.errors.mapped` maps errors once.

The server is a ``grpc.aio`` server: every handler runs on one event loop thread, so no two
requests fight over the GIL, and nothing on that thread waits for the disk. Writes are queued
on the decision log with an *on-done* callback; the log's writer thread commits them (one
fsync for everything queued meanwhile) and the callback resolves the handlers' futures on the
loop (:class:`Commits`). Calls that read or write the database synchronously (GetDecision, Activate,
GetStats) run on a small thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc

from bandit.commit import Commit, OnDone
from bandit.errors import NotReady, OfferBanditError, TooLarge
from bandit.logcodec import SCHEMA_VERSION
from bandit.records import OutcomeResult
from bandit.service import DecisionService
from server import converters as cv
from server.errors import check_parsed, code_name, mapped, safe_deserializer, short_message
from server.pb.offerbandit.v1 import decision_service_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]

STREAM_GROUP = 256
"""Most uncommitted outcome writes one RecordOutcomes stream has before it reads on."""
T = TypeVar("T")


class Commits:
    """Log commits → asyncio futures on one loop, and who commits.

    Each write is submitted with an ``on_done`` callback (:meth:`on_done`) that the
    committing thread calls once it is durable; a ``call_soon_threadsafe`` then resolves the
    handler's future on the loop (at once when the loop itself committed).

    When a call is alone — nothing else in flight, none for a while — it commits its own
    write on the loop (:meth:`call` says so, :meth:`Call.settled` does it), which saves two
    thread hand-offs; the loop has nothing else to do meanwhile. A call that finds company, or
    that starts right after the previous one ended (it was queued behind it: committing on the
    loop would hide concurrency), leaves the commit to the writer thread. Any call in flight
    beside another during the last ``WINDOW`` seconds keeps every call on the writer's path.
    """

    WINDOW = 0.1
    """Seconds: how long one sighting of concurrency keeps commits off the loop."""
    QUIET_GAP = 250e-6
    """Seconds since the previous call ended below which a call counts as queued. A client's
    turnaround (answer received → next call's handler) takes ≥ 0.5 ms here; a call queued
    behind the previous one starts 0.05–0.15 ms after it (measured)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._loop_thread: int | None = None
        self.in_flight = 0
        self._peak = 0
        self._window_peak = 0
        self._window_ends = 0.0
        self._last_exit = 0.0

    def future(self) -> asyncio.Future[None]:
        return self.loop.create_future()

    def on_done(self, done: asyncio.Future[None]) -> OnDone:
        """The callback that resolves ``done`` on the loop once its write is committed."""
        return functools.partial(self._committed, done)

    def _committed(self, done: asyncio.Future[None]) -> None:
        if threading.get_ident() == self._loop_thread:
            _resolve(done)  # committed on the loop itself: resolve at once
        else:
            self.loop.call_soon_threadsafe(_resolve, done)

    @contextmanager
    def call(self) -> Iterator[Call]:
        """Around a call that writes (on the loop); :attr:`Call.alone` says whether it should
        commit its write itself."""
        call = Call(self, self._enter())
        try:
            yield call
        except BaseException:
            if call.alone and call.commit is not None:
                # failed or cancelled after queueing a write without waking the writer
                call.commit.hand_off()
            raise
        finally:
            self.in_flight -= 1
            self._last_exit = time.perf_counter()

    def _enter(self) -> bool:
        self._loop_thread = threading.get_ident()
        now = time.perf_counter()
        self.in_flight += 1
        if now >= self._window_ends:
            self._peak, self._window_peak = self._window_peak, self.in_flight
            self._window_ends = now + self.WINDOW
        elif self.in_flight > self._window_peak:
            self._window_peak = self.in_flight
        return (
            self.in_flight == 1
            and self._window_peak == 1
            and self._peak <= 1
            and now - self._last_exit > self.QUIET_GAP
        )


class Call:
    """One RPC's write: whether it runs alone, and the commit it holds."""

    __slots__ = ("_commits", "alone", "commit")

    def __init__(self, commits: Commits, alone: bool) -> None:
        self._commits = commits
        self.alone = alone
        """Submit with ``hold=True``: this call commits its write itself (:meth:`settled`)."""
        self.commit: Commit[Any] | None = None
        """The write this call holds (set right after submitting it)."""

    async def settled(self, done: asyncio.Future[None]) -> None:
        """Until ``done``. A call alone commits in place, after one turn of the loop lets a
        call queued behind it show up (then the writer commits both)."""
        if self.alone and self.commit is not None:
            await asyncio.sleep(0)
            if self._commits.in_flight == 1:
                self.commit.commit_here()
            else:
                self.commit.hand_off()
        await done


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():  # a cancelled call's future stays cancelled
        done.set_result(None)


class DecisionServicer:
    def __init__(
        self, service: DecisionService, loop: asyncio.AbstractEventLoop, blocking_threads: int
    ) -> None:
        self.svc = service
        self.commits = Commits(loop)
        self._pool = ThreadPoolExecutor(blocking_threads, thread_name_prefix="rpc-blocking")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @mapped
    async def Choose(self, request: bytes, context: Context) -> bytes:
        """Takes the serialized ChooseRequest and answers a serialized ChooseResponse (see
        :func:`server.converters.choose_from_wire`); :func:`add_to_server` registers it so."""
        with self.commits.call() as call:
            done = self.commits.future()
            decision, call.commit = self.svc.submit_choice(
                cv.choose_from_wire(request, self.svc.catalogues),
                self.commits.on_done(done),
                hold=call.alone,
            )
            response = cv.choose_to_wire(decision)  # built while the log's fsync runs
            if call.commit is None:  # a retry of a logged request
                return response
            await call.settled(done)
            answer = call.commit.result()
            return response if answer is decision else cv.choose_to_wire(answer)

    @mapped
    async def GetDecision(self, request: pb.GetDecisionRequest, context: Context) -> pb.Decision:
        stored = await self._blocking(self.svc.get_decision, request.event_id)
        return cv.decision_to_pb(stored, SCHEMA_VERSION)

    @mapped
    async def RecordOutcome(
        self, request: pb.Outcome, context: Context
    ) -> pb.RecordOutcomeResponse:
        with self.commits.call() as call:
            done = self.commits.future()
            commit = call.commit = self.svc.submit_outcome(
                cv.outcome_from_pb(request), self.commits.on_done(done), hold=call.alone
            )
            await call.settled(done)
            return cv.outcome_result_to_pb(commit.result())

    @mapped
    async def RecordOutcomes(
        self, request_iterator: AsyncIterator[Any], context: Context
    ) -> pb.RecordOutcomesResponse:
        """Each outcome is checked and queued as it arrives, and the stream is read on only
        while fewer than ``STREAM_GROUP`` writes are uncommitted: memory is bounded by the
        group and one message, whatever the stream's length (the response's small per-item
        results aside). A stream longer than ``max_stream_outcomes`` is refused
        (INVALID_ARGUMENT) once it gets there; the outcomes before were recorded, and
        resending them is safe (outcome ids are idempotent)."""
        if not self.svc.ready:
            raise NotReady("the decision service is not serving")
        limit = self.svc.config.max_stream_outcomes
        max_id = self.svc.config.limits.max_id_length
        response = pb.RecordOutcomesResponse()
        group: list[tuple[str, Commit[OutcomeResult] | OfferBanditError, asyncio.Future[None]]] = []
        with self.commits.call():  # in flight beside others; its writes go to the writer
            async for o in request_iterator:
                if len(response.results) + len(group) >= limit:
                    await self._settle_outcomes(group, response)
                    raise TooLarge(
                        "outcomes",
                        f"the stream carries more than {limit} outcomes; the first {limit} "
                        "were recorded (resending them is safe), the rest were not",
                    )
                done = self.commits.future()
                queued: Commit[OutcomeResult] | OfferBanditError
                outcome_id = ""
                try:
                    check_parsed(o)
                    outcome_id = o.outcome_id if len(o.outcome_id) <= max_id else ""
                    queued = self.svc.submit_outcome(
                        cv.outcome_from_pb(o), self.commits.on_done(done)
                    )
                except OfferBanditError as exc:
                    queued = exc
                group.append((outcome_id, queued, done))
                if len(group) >= STREAM_GROUP:
                    await self._settle_outcomes(group, response)
            await self._settle_outcomes(group, response)
        return response

    async def _settle_outcomes(
        self,
        group: list[tuple[str, Commit[OutcomeResult] | OfferBanditError, asyncio.Future[None]]],
        response: pb.RecordOutcomesResponse,
    ) -> None:
        """Wait for a group's writes and append their results (in stream order)."""
        for outcome_id, queued, done in group:
            index = len(response.results)
            result: OutcomeResult | OfferBanditError
            if isinstance(queued, OfferBanditError):
                result = queued
            else:
                await done
                try:
                    result = queued.result()
                except OfferBanditError as exc:
                    result = exc
            if isinstance(result, OfferBanditError):
                response.results.append(
                    pb.OutcomeResult(
                        outcome_id=outcome_id,
                        status=pb.OUTCOME_STATUS_REJECTED,
                        error_code=code_name(result),
                        error=short_message(result),
                        index=index,
                    )
                )
                response.rejected += 1
            else:
                response.results.append(
                    pb.OutcomeResult(
                        outcome_id=result.outcome_id,
                        status=cv.OUTCOME_STATUS[result.status],
                        event_id=result.event_id,
                        index=index,
                    )
                )
                response.accepted += 1
        group.clear()

    @mapped
    async def Activate(self, request: pb.ActivateRequest, context: Context) -> pb.ActivateResponse:
        at = (
            cv.seconds_from_pb(request.activated_at, "activated_at")
            if request.HasField("activated_at")
            else None
        )
        closes = await self._blocking(self.svc.activate, request.event_id, at)
        return pb.ActivateResponse(
            event_id=request.event_id, window_closes_at=cv.seconds_to_pb(closes)
        )

    @mapped
    async def GetStats(self, request: pb.GetStatsRequest, context: Context) -> pb.Stats:
        stats = await self._blocking(self.svc.stats, float(request.recent_seconds or 3600))
        return cv.stats_to_pb(stats)


SERVICE = pb.DESCRIPTOR.services_by_name["DecisionService"]
_RAW_METHODS = {"Choose"}  # handlers that take and return serialized messages


def _passthrough(data: bytes) -> bytes:
    return data


def add_to_server(servicer: DecisionServicer, server: grpc.aio.Server) -> None:
    """Register every DecisionService RPC, from the service's descriptor.

    Like the generated ``add_DecisionServiceServicer_to_server``, except that the methods in
    ``_RAW_METHODS`` get the wire bytes and return wire bytes.
    """
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in SERVICE.methods:
        request_cls = getattr(pb, method.input_type.name)
        response_cls = getattr(pb, method.output_type.name)
        raw = method.name in _RAW_METHODS
        make = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=safe_deserializer(
                _passthrough if raw else request_cls.FromString, method.input_type.name
            ),
            response_serializer=_passthrough if raw else response_cls.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),)
    )
    # Registered methods skip gRPC's generic lookup per call (grpcio ≥ 1.62; not in the stubs).
    server.add_registered_method_handlers(SERVICE.full_name, handlers)  # type: ignore[attr-defined]

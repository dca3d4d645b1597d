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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import grpc

from bandit.choose_batch import BatchResult
from bandit.commit import Commit, OnDone
from bandit.errors import InvalidRequest, NotReady, OfferBanditError, TooLarge
from bandit.logcodec import SCHEMA_VERSION
from bandit.records import Activation, OutcomeResult
from bandit.service import DecisionService
from bandit.types import Decision
from server import converters as cv
from server.errors import (
    Malformed,
    check_parsed,
    code_name,
    mapped,
    mapped_stream,
    safe_deserializer,
    short_message,
)
from server.pb.offerbandit.v1 import decision_service_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]

STREAM_GROUP = 256
"""Most outcome writes of one stream awaiting their result before it reads on."""
BATCH_GROUP = 4
"""Most ChooseBatch messages of one stream awaiting their result before it reads on."""
T = TypeVar("T")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class _Submission(Protocol[R_co]):
    """One item of a stream, submitted: its result comes once it is known."""

    def result(self) -> Awaitable[R_co]: ...


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


MAX_RESPONSE_BYTES = 4 * 1024 * 1024 - 1024
"""Largest RecordOutcomes response: what every gRPC client receives by default (4 MiB),
less room for the counts and framing."""


class _ResponseBounds:
    """Keeps one response of per-outcome results within a count and a size.

    An outcome is admitted only if its result fits whatever the results still pending turn
    out to be: the size of the results known so far, plus an upper bound for each pending
    one (its id, an event id and an error message as long as they may be). When the bound
    does not fit but results are pending, the caller waits for them (their real sizes are
    smaller); when nothing is pending and it still does not fit, the stream is refused."""

    ERROR_BYTES = 4 * 256 + 64
    """Most bytes of an error message (256 characters of UTF-8) and its code."""
    FIELD_BYTES = 32
    """Tags, lengths, the status and the index of one result, with room to spare."""

    def __init__(self, max_results: int, max_bytes: int) -> None:
        self.max_results = max_results
        self.max_bytes = max_bytes
        self.used = 0
        self.reserved = 0

    def admit(self, count: int, id_bytes: int, max_id: int) -> int | None:
        """Reserve room for the result of outcome number ``count`` and return the bytes
        reserved; None: not now, wait for pending results. Raises :class:`TooLarge` when its
        result cannot fit even then."""
        if count >= self.max_results:
            raise TooLarge(
                "outcomes",
                f"the stream carries more than {self.max_results} outcomes; the first "
                f"{self.max_results} were recorded (resending them is safe), the rest were not; "
                "StreamOutcomes takes streams of any length",
            )
        worst = id_bytes + 4 * max_id + self.ERROR_BYTES + self.FIELD_BYTES  # 4: UTF-8
        if self.used + self.reserved + worst <= self.max_bytes:
            self.reserved += worst
            return worst
        if self.reserved == 0:
            raise TooLarge(
                "outcomes",
                f"the results of more than {count} outcomes would not fit one response "
                f"({self.max_bytes // 1024} KiB); the first {count} were recorded (resending "
                "them is safe), the rest were not; StreamOutcomes takes streams of any length",
            )
        return None

    def answered(self, reserved: int, result: pb.OutcomeResult) -> None:
        """A pending result is known: its reservation becomes its real size."""
        self.reserved -= reserved
        self.used += result.ByteSize() + 5  # the field's tag and length prefix


class _Queued:
    """One outcome of a stream, queued on the log (or rejected before)."""

    __slots__ = ("done", "index", "outcome_id", "reserved", "write")

    def __init__(
        self,
        index: int,
        outcome_id: str,
        write: Commit[OutcomeResult] | OfferBanditError,
        done: asyncio.Future[None],
        reserved: int = 0,
    ) -> None:
        self.index = index
        self.outcome_id = outcome_id
        self.write = write
        self.done = done
        self.reserved = reserved

    async def result(self) -> pb.OutcomeResult:
        """Its result, once its write is durable."""
        outcome: OutcomeResult | OfferBanditError
        if isinstance(self.write, OfferBanditError):
            outcome = self.write
        else:
            await self.done
            try:
                outcome = self.write.result()
            except OfferBanditError as exc:
                outcome = exc
        if isinstance(outcome, OfferBanditError):
            return pb.OutcomeResult(
                outcome_id=self.outcome_id,
                status=pb.OUTCOME_STATUS_REJECTED,
                error_code=code_name(outcome),
                error=short_message(outcome),
                index=self.index,
            )
        return pb.OutcomeResult(
            outcome_id=outcome.outcome_id,
            status=cv.OUTCOME_STATUS[outcome.status],
            event_id=outcome.event_id,
            index=self.index,
        )


class _Decided:
    """One request of a ChooseStream: its decision queued on the log, or its error."""

    __slots__ = ("commit", "decision", "done", "index", "wire")

    def __init__(
        self,
        index: int,
        wire: bytes,
        decision: Any,
        commit: Commit[Any] | OfferBanditError | None,
        done: asyncio.Future[None],
    ) -> None:
        self.index = index
        self.wire = wire
        self.decision = decision
        self.commit = commit
        self.done = done

    async def result(self) -> bytes:
        """The serialized ChooseStreamResult, once the decision is durable."""
        commit = self.commit
        if isinstance(commit, OfferBanditError):
            return _refused(self.index, commit)
        if commit is not None:  # None: a retry of a logged request, answered at once
            await self.done
            try:
                answer = commit.result()
            except OfferBanditError as exc:
                return _refused(self.index, exc)
            if answer is not self.decision:
                self.wire = cv.choose_to_wire(answer)
        return cv.stream_response_to_wire(self.index, self.wire)


class _Countdown:
    """A future on the loop resolved once ``on_done`` was called as many times as
    :meth:`expect` says (``on_done`` may come from any thread, before or after)."""

    __slots__ = ("_count", "_expected", "future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self._count = 0
        self._expected: int | None = None

    def on_done(self) -> None:
        self.loop.call_soon_threadsafe(self._one)

    def _one(self) -> None:
        self._count += 1
        self._check()

    def expect(self, n: int) -> None:
        self._expected = n
        self._check()

    def _check(self) -> None:
        if self._expected is not None and self._count >= self._expected:
            _resolve(self.future)


class _Batched:
    """One message of a ChooseBatchStream: its customers decided, their write queued."""

    __slots__ = ("batch", "done", "start")

    def __init__(self, start: int, batch: BatchResult, done: _Countdown) -> None:
        self.start = start
        self.batch = batch
        self.done = done

    async def result(self) -> bytes:
        """The serialized ChooseBatchResult, once every decision in it is durable."""
        await self.done.future  # every write durable: each handle has its answer
        return cv.batch_answers_to_wire(self.start, self.batch.results, _settled)


def _settled(commit: Commit[Decision]) -> Decision:
    return commit.result()


def _refused(index: int, exc: OfferBanditError) -> bytes:
    return cv.stream_error_to_wire(index, code_name(exc), short_message(exc))


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

    @mapped_stream
    async def ChooseStream(
        self, request_iterator: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        """Serialized ChooseRequests in, serialized ChooseStreamResults out, in order.

        A reader task decides each request as it arrives (the same pipeline and log as
        Choose) and reads on only while fewer than ``STREAM_GROUP`` decisions await their
        commit; the log's writer commits them in groups, and each result is sent once its
        decision is durable. A refused request gets its error in its result."""
        if not self.svc.ready:
            raise NotReady("the decision service is not serving")

        async def submit(index: int, raw: bytes) -> _Decided:
            done = self.commits.future()
            try:
                decision, commit = self.svc.submit_choice(
                    cv.choose_from_wire(raw, self.svc.catalogues), self.commits.on_done(done)
                )
            except OfferBanditError as exc:
                return _Decided(index, b"", None, exc.with_traceback(None), done)
            return _Decided(index, cv.choose_to_wire(decision), decision, commit, done)

        async for result in self._in_order(request_iterator, submit):
            yield result

    @mapped_stream
    async def ChooseBatchStream(
        self, request_iterator: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        """Serialized ChooseBatch messages in, one serialized ChooseBatchResult out per
        message, in order, each once its decisions are durable (:mod:`bandit.choose_batch`:
        one pass and one log write per message, decided on the blocking pool so the loop
        keeps answering other calls). Reads on while fewer than ``BATCH_GROUP`` messages
        await their write. A template that is wrong ends the stream with its
        error (after the results before it); a refused customer gets its error in its
        result."""
        if not self.svc.ready:
            raise NotReady("the decision service is not serving")
        state: dict[str, Any] = {"template": None, "start": 0}
        loop = asyncio.get_running_loop()

        def decide(raw: bytes, done: _Countdown) -> tuple[int, BatchResult]:
            template, customers = cv.batch_from_wire(raw, self.svc.catalogues)
            if template is not None:
                state["template"] = template
            elif state["template"] is None and customers:
                raise InvalidRequest("template", "is required in the stream's first message")
            start = state["start"]
            state["start"] = start + len(customers)
            if not customers:
                return start, BatchResult([], 0)
            return start, self.svc.submit_batch(state["template"], customers, done.on_done)

        async def submit(index: int, raw: bytes) -> _Batched:
            # On the blocking pool: a message's pass takes tens of milliseconds, which the
            # loop spends answering other calls meanwhile (they share the GIL with it).
            done = _Countdown(loop)
            start, batch = await self._blocking(decide, raw, done)
            done.expect(batch.writes)
            return _Batched(start, batch, done)

        async for result in self._in_order(request_iterator, submit, group=BATCH_GROUP):
            yield result

    async def _in_order(
        self,
        items: AsyncIterator[Any],
        submit: Callable[[int, Any], Awaitable[_Submission[R]]],
        answered: Callable[[Any, R], None] | None = None,
        group: int = STREAM_GROUP,
    ) -> AsyncIterator[R]:
        """``submit(index, item)`` for each item of a stream as it arrives, and each
        submission's result, in stream order, as soon as it is known.

        A reader task submits while fewer than ``group`` submissions await their
        result (HTTP/2 flow control then holds the client back), so memory is bounded by that
        group and one message; results are yielded as they come, whether or not more items
        arrive (``answered(submission, result)`` is told of each first). An error raised by
        the reader (the stream's own, or ``submit``'s) is raised after the results before it.
        """
        slots = asyncio.Semaphore(group)
        queued: asyncio.Queue[_Submission[R] | None] = asyncio.Queue()  # ≤ STREAM_GROUP + 1
        failure: list[BaseException] = []

        async def read() -> None:
            index = 0
            try:
                async for item in items:
                    await slots.acquire()
                    queued.put_nowait(await submit(index, item))
                    index += 1
            except Exception as exc:  # raised to the caller after the results before it
                failure.append(exc)
            finally:
                queued.put_nowait(None)

        with self.commits.call():  # in flight beside others; its writes go to the writer
            reader = asyncio.create_task(read())
            try:
                while (submission := await queued.get()) is not None:
                    result = await submission.result()
                    if answered is not None:
                        answered(submission, result)
                    slots.release()
                    yield result
                if failure:
                    raise failure[0]
            finally:
                reader.cancel()

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
        """One response with every outcome's result. Each outcome is checked and queued as it
        arrives (:meth:`_outcome_results`), so memory is bounded by ``STREAM_GROUP`` writes
        and the response's small per-item results. The response stays within
        ``MAX_RESPONSE_BYTES`` and ``max_stream_outcomes`` results: a longer stream is refused
        (INVALID_ARGUMENT) once it gets there; the outcomes before were recorded, and
        resending them is safe (outcome ids are idempotent). :meth:`StreamOutcomes` has no
        such limits."""
        response = pb.RecordOutcomesResponse()
        bounds = _ResponseBounds(self.svc.config.max_stream_outcomes, MAX_RESPONSE_BYTES)
        async for result in self._outcome_results(request_iterator, bounds):
            response.results.append(result)
            if result.status == pb.OUTCOME_STATUS_REJECTED:
                response.rejected += 1
            else:
                response.accepted += 1
        return response

    @mapped_stream
    async def StreamOutcomes(
        self, request_iterator: AsyncIterator[Any], context: Context
    ) -> AsyncIterator[pb.OutcomeResult]:
        """One result per outcome, in stream order, each sent once that outcome is durable
        (or rejected): the server's memory does not grow with the stream, however long."""
        async for result in self._outcome_results(request_iterator, None):
            yield result

    async def _outcome_results(
        self, outcomes: AsyncIterator[Any], bounds: _ResponseBounds | None
    ) -> AsyncIterator[pb.OutcomeResult]:
        """Each outcome's result, in stream order, as soon as it is known.

        A reader task checks and queues each outcome as it arrives and reads on only while
        fewer than ``STREAM_GROUP`` writes await their result (flow control then holds the
        client back), so memory is bounded by that group and one message. The results are
        yielded as the writes commit, whether or not more outcomes arrive. With ``bounds``,
        an outcome whose result might not fit them is not recorded: the reader stops with
        :class:`TooLarge`, raised after the results before it.
        """
        if not self.svc.ready:
            raise NotReady("the decision service is not serving")
        max_id = self.svc.config.limits.max_id_length
        known = asyncio.Event()  # a result came: room may have been freed

        async def submit(index: int, o: Any) -> _Queued:
            outcome_id = ""
            if o.__class__ is not Malformed:
                outcome_id = o.outcome_id if len(o.outcome_id) <= max_id else ""
            reserved = 0
            if bounds is not None:
                id_bytes = len(outcome_id.encode())
                while (room := bounds.admit(index, id_bytes, max_id)) is None:
                    known.clear()
                    await known.wait()
                reserved = room
            done = self.commits.future()
            write: Commit[OutcomeResult] | OfferBanditError
            try:
                check_parsed(o)
                write = self.svc.submit_outcome(cv.outcome_from_pb(o), self.commits.on_done(done))
            except OfferBanditError as exc:
                write = exc.with_traceback(None)  # its frames would hold the message
            return _Queued(index, outcome_id, write, done, reserved)

        def answered(item: _Queued, result: pb.OutcomeResult) -> None:
            if bounds is not None:
                bounds.answered(item.reserved, result)
                known.set()

        async for result in self._in_order(outcomes, submit, answered):
            yield result

    @mapped
    async def Activate(self, request: pb.ActivateRequest, context: Context) -> pb.ActivateResponse:
        a = cv.activation_from_pb(request)
        closes = await self._blocking(self.svc.activate, a.event_id, a.activated_at)
        return pb.ActivateResponse(
            event_id=request.event_id, window_closes_at=cv.seconds_to_pb(closes)
        )

    @mapped_stream
    async def ActivateStream(
        self, request_iterator: AsyncIterator[Any], context: Context
    ) -> AsyncIterator[pb.ActivateResult]:
        """One result per activation, in stream order, each sent once it is durable (or
        refused, with its reason). Each is checked as Activate checks one and queued on the
        log as it arrives, at most ``STREAM_GROUP`` awaiting their commit (:meth:`_in_order`);
        the log's writer commits them in groups."""
        if not self.svc.ready:
            raise NotReady("the decision service is not serving")
        max_id = self.svc.config.limits.max_id_length

        async def submit(index: int, req: Any) -> _Activating:
            event_id = (
                "" if req.__class__ is Malformed or len(req.event_id) > max_id else req.event_id
            )
            done = self.commits.future()
            try:
                check_parsed(req)
                write: Commit[Activation] | OfferBanditError = self.svc.submit_activation(
                    cv.activation_from_pb(req), self.commits.on_done(done)
                )
            except OfferBanditError as exc:
                write = exc.with_traceback(None)
            return _Activating(index, event_id, write, done)

        async for result in self._in_order(request_iterator, submit):
            yield result

    @mapped
    async def GetStats(self, request: pb.GetStatsRequest, context: Context) -> pb.Stats:
        stats = await self._blocking(self.svc.stats, float(request.recent_seconds or 3600))
        return cv.stats_to_pb(stats)


class _Activating:
    """One activation of an ActivateStream, queued on the log (or refused before)."""

    __slots__ = ("done", "event_id", "index", "write")

    def __init__(
        self,
        index: int,
        event_id: str,
        write: Commit[Activation] | OfferBanditError,
        done: asyncio.Future[None],
    ) -> None:
        self.index = index
        self.event_id = event_id
        self.write = write
        self.done = done

    async def result(self) -> pb.ActivateResult:
        """Its result, once its write is durable."""
        write = self.write
        result: Activation | OfferBanditError
        if isinstance(write, OfferBanditError):
            result = write
        else:
            await self.done
            try:
                result = write.result()
            except OfferBanditError as exc:
                result = exc
        return cv.activation_result_to_pb(self.index, self.event_id, result)


SERVICE = pb.DESCRIPTOR.services_by_name["DecisionService"]
_RAW_METHODS = {
    "Choose",
    "ChooseStream",
    "ChooseBatchStream",
}  # handlers that take and return serialized messages


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

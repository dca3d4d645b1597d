"""Interceptors: what runs around every call of the gRPC server, outermost first.

The server is built from a list of interceptors (:func:`server.app.start_server` takes
``interceptors``; :func:`for_settings` gives the ones the settings ask for), so a
cross-cutting concern of every call — authentication, per-call metrics, tracing — is one
more element of that list, not an edit of each RPC. Errors are mapped to statuses inside
the handlers (:func:`server.errors.mapped`), so an interceptor sees statuses, never domain
exceptions; one that refuses a call aborts it with its own status (see the integration test
``test_interceptors``, whose interceptor refuses calls without a key).

None is configured by default: an empty list costs nothing per call (gRPC skips the chain).
With ``tokens_file``, ``metrics_port`` or ``access_log`` set, one :class:`CallPass` checks
every call's bearer token (:class:`server.auth.TokenAuth`), times and counts it
(:class:`server.metrics.CallMetrics`) and logs it (:class:`server.logs.AccessLog`), in one
pass.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from server.settings import Settings

if TYPE_CHECKING:
    Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # generic in the stubs only
    Interceptor = grpc.aio.ServerInterceptor
"""One interceptor (``intercept_service(continuation, handler_call_details)``)."""
S = TypeVar("S")

if TYPE_CHECKING:
    from server.auth import TokenAuth
    from server.logs import AccessLog
    from server.metrics import CallMetrics

    Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]]
    """What an interceptor calls for the handler of the method asked."""


def for_settings(
    settings: Settings, extra: Sequence[Interceptor] = (), metrics: CallMetrics | None = None
) -> list[Interceptor]:
    """The server's interceptors, outermost first: one :class:`CallPass` doing what
    ``settings`` ask for (per-call ``metrics``, the access log with ``access_log``,
    bearer-token authentication with ``tokens_file``), then ``extra`` (the embedding
    program's). Empty when none is asked for."""
    from server.auth import TokenAuth, TokenFile  # both build on this module's Interceptor
    from server.logs import AccessLog

    auth = TokenAuth(TokenFile(settings.tokens_file)) if settings.tokens_file else None
    access = AccessLog() if settings.access_log else None
    own: list[Interceptor] = []
    if auth is not None or access is not None or metrics is not None:
        own.append(CallPass(auth, metrics, access))
    return own + list(extra)


class CallPass(Interceptor):
    """Authentication, per-call metrics and the access log in one interceptor pass.

    grpc.aio runs each interceptor of the chain as its own coroutine around every call, and
    each that wraps the handler builds a new one per call: with tokens and metrics as two
    interceptors a Choose cost ~45 % more server CPU (docs/operations.md). Here the token is
    checked (:meth:`server.auth.TokenAuth.refusal`), and the handler is wrapped once for
    everything that times or logs the call; without the access log (whose request id is
    per call) the wrapped handler is made once per method and reused. A refused call is
    timed, counted and logged with its status, as before."""

    def __init__(
        self, auth: TokenAuth | None, metrics: CallMetrics | None, access: AccessLog | None
    ) -> None:
        self.auth = auth
        self.metrics = metrics
        self.access = access
        self._wrapped: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        refusal = None if self.auth is None else self.auth.refusal(details)
        handler = await continuation(details)
        if refusal is not None:
            from server.auth import refused_handler

            handler = refused_handler(handler, *refusal)
        elif handler is None:
            return handler
        metrics, access = self.metrics, self.access
        if access is not None:
            observe = None if metrics is None else metrics.observer(details.method)
            return access.wrap(handler, details, observe)
        if metrics is None:
            return handler
        if refusal is None:
            found = self._wrapped.get(details.method)
            if found is not None and found[0] is handler:
                return found[1]
        wrapped = around(handler, time.perf_counter, metrics.observer(details.method))
        if refusal is None:
            self._wrapped[details.method] = (handler, wrapped)
        return wrapped


def status_name(context: Any) -> str:
    """The status a finished call's context was ended with (after an abort), by name."""
    code = context.code() if hasattr(context, "code") else None
    return str(code.name) if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def around(
    handler: grpc.RpcMethodHandler[Any, Any],
    begin: Callable[[], S],
    end: Callable[[S, str], None],
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same kind as ``handler`` (unary or streaming, either way) that calls
    ``begin()`` before each call and ``end(state, status)`` after it, whatever happened:
    ``status`` is ``OK``, or the name of the status the call ended with. The wire format
    (deserializer, serializer) stays the handler's."""
    des, ser = handler.request_deserializer, handler.response_serializer
    unary: Any = handler.unary_unary or handler.stream_unary
    if unary is not None:

        async def answer(request: Any, context: Any) -> Any:
            state, status = begin(), "OK"
            try:
                return await unary(request, context)
            except BaseException:
                status = status_name(context)
                raise
            finally:
                end(state, status)

        make = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary is not None
            else grpc.stream_unary_rpc_method_handler
        )
        return make(answer, request_deserializer=des, response_serializer=ser)
    streaming: Any = handler.stream_stream or handler.unary_stream  # async generators
    assert streaming is not None

    async def stream(request: Any, context: Any) -> Any:
        state, status = begin(), "OK"
        try:
            async for message in streaming(request, context):
                yield message
        except BaseException:
            status = status_name(context)
            raise
        finally:
            end(state, status)

    make_stream = (
        grpc.stream_stream_rpc_method_handler
        if handler.stream_stream is not None
        else grpc.unary_stream_rpc_method_handler
    )
    return make_stream(stream, request_deserializer=des, response_serializer=ser)


__all__ = ["CallPass", "Interceptor", "around", "for_settings", "status_name"]

"""Interceptors: what runs around every call of the gRPC server, outermost first.

The server is built from a list of interceptors (:func:`server.app.start_server` takes
``interceptors``; :func:`for_settings` gives the ones the settings ask for), so a
cross-cutting concern of every call — authentication, per-call metrics, tracing — is one
more element of that list, not an edit of each RPC. Errors are mapped to statuses inside
the handlers (:func:`server.errors.mapped`), so an interceptor sees statuses, never domain
exceptions; one that refuses a call aborts it with its own status (see the integration test
``test_interceptors``, whose interceptor refuses calls without a key).

None is configured by default: an empty list costs nothing per call (gRPC skips the chain).
With ``tokens_file`` set, :class:`server.auth.TokenAuth` checks every call's bearer token.
"""

from __future__ import annotations

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
    Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]]
    """What an interceptor calls for the handler of the method asked."""


def for_settings(settings: Settings, extra: Sequence[Interceptor] = ()) -> list[Interceptor]:
    """The server's interceptors, outermost first: those ``settings`` ask for (the access
    log with ``access_log``, bearer-token authentication with ``tokens_file``), then
    ``extra`` (the embedding program's)."""
    from server.auth import TokenAuth, TokenFile  # both build on this module's Interceptor
    from server.logs import AccessLog

    own: list[Interceptor] = []
    if settings.access_log:  # outside authentication: refused calls are logged too
        own.append(AccessLog())
    if settings.tokens_file is not None:
        own.append(TokenAuth(TokenFile(settings.tokens_file)))
    return own + list(extra)


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


__all__ = ["Interceptor", "around", "for_settings", "status_name"]

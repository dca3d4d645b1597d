"""Domain errors → gRPC status, in one table, applied by one decorator to every RPC.

Unexpected exceptions become INTERNAL with a fixed message and a request id; the traceback
goes to the server log (once), never to the client. Field problems also carry a
``google.rpc.BadRequest`` detail naming the field.

Messages that do not parse (garbage or truncated bytes, strings that are not UTF-8) never
reach a handler as an exception: :func:`safe_deserializer` turns them into a
:class:`Malformed` value, which :func:`mapped` (or a streaming handler, per item) answers
with INVALID_ARGUMENT "malformed <Message> …", logged rate-limited, without a traceback.

Every status fits its trailer: domain errors quote at most 64 characters of any input
(:func:`bandit.errors.quote`), and :func:`status_for` caps the whole message at
:data:`MAX_DETAIL` characters.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from bandit.errors import (
    Conflict,
    InvalidRequest,
    InvalidState,
    NotReady,
    OfferBanditError,
    Overloaded,
    StorageError,
    TooLarge,
    UnknownEvent,
)
from bandit.ratelog import RateLimitedLog
from server.logs import current_request_id

log = logging.getLogger(__name__)
_rate_log = RateLimitedLog(log, interval=10.0)

MAX_DETAIL = 1024
"""Longest status message sent (the trailer limit is 8–16 KiB; details repeat the message)."""

# Most specific first: the first matching class wins.
STATUS_OF: tuple[tuple[type[OfferBanditError], grpc.StatusCode], ...] = (
    (TooLarge, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownEvent, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.ALREADY_EXISTS),
    (InvalidState, grpc.StatusCode.FAILED_PRECONDITION),
    (NotReady, grpc.StatusCode.UNAVAILABLE),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (StorageError, grpc.StatusCode.UNAVAILABLE),
)


def status_of(exc: OfferBanditError) -> grpc.StatusCode:
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def _field_of(exc: OfferBanditError) -> str:
    return str(getattr(exc, "field", ""))


def status_for(exc: OfferBanditError) -> grpc.Status:
    """The status a domain error leaves as: code, message, and a BadRequest naming the field."""
    code = status_of(exc)
    message = _capped(str(exc), MAX_DETAIL)
    status = status_pb2.Status(code=code.value[0], message=message)
    field = _capped(_field_of(exc), 256)
    if field and code == grpc.StatusCode.INVALID_ARGUMENT:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
                ]
            )
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


def _capped(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters.

    >>> _capped("abcdef", 4)
    'abc…'
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Malformed:
    """A request message that did not parse: what :func:`safe_deserializer` hands the handler
    instead of raising inside gRPC (which would answer INTERNAL or UNKNOWN and log a
    traceback)."""

    __slots__ = ("error", "message")

    def __init__(self, message: str, error: str) -> None:
        self.message = message
        self.error = error

    def exception(self) -> InvalidRequest:
        return InvalidRequest(
            "request",
            f"malformed {self.message}: not a valid serialized {self.message} ({self.error})",
        )


def safe_deserializer(parse: Callable[[bytes], Any], message: str) -> Callable[[bytes], Any]:
    """``parse``, except that bytes that do not parse give a :class:`Malformed` value."""

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # DecodeError, UnicodeDecodeError, … : the client's bytes
            error = _capped(str(exc) or exc.__class__.__name__, 80)
            _rate_log.warning(
                "malformed", "malformed %s received (%d bytes): %s", message, len(data), error
            )
            return Malformed(message, error)

    return deserialize


def check_parsed(request: Any) -> None:
    """Raise the :class:`InvalidRequest` of a :class:`Malformed` request (streams call this
    per item)."""
    if request.__class__ is Malformed:
        raise request.exception()


Handler = Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
H = TypeVar("H", bound=Handler)


def mapped(method: H) -> H:
    """Wrap an async RPC handler so every error leaves as the right gRPC status."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            if request.__class__ is Malformed:
                raise request.exception()
            return await method(self, request, context)
        except Exception as exc:
            await _abort(exc, method.__name__, context)
        return None  # unreachable: abort raises

    wrapper.__offerbandit_mapped__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


StreamHandler = Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]
S = TypeVar("S", bound=StreamHandler)


def mapped_stream(method: S) -> S:
    """:func:`mapped` for a handler that streams its answers (an async generator): the
    messages sent before an error stay sent, then the error leaves as its gRPC status."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for message in method(self, request, context):
                yield message
        except Exception as exc:
            await _abort(exc, method.__name__, context)

    wrapper.__offerbandit_mapped__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


async def _abort(exc: Exception, name: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """End the call with ``exc``'s status (an :class:`grpc.aio.AbortError` passes through)."""
    if isinstance(exc, OfferBanditError):
        status = status_for(exc)
        await context.abort(status.code, status.details, status.trailing_metadata)
    if isinstance(exc, grpc.aio.AbortError):  # aborted on purpose
        raise exc
    request_id = current_request_id() or uuid.uuid4().hex[:12]
    log.error("unexpected error in %s (request id %s)", name, request_id, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error; quote request id {request_id}")


_CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}
assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT


def short_message(exc: OfferBanditError, limit: int = 256) -> str:
    """A domain error's message for a per-item result inside a response (capped)."""
    return _capped(str(exc), limit)


def code_name(exc: OfferBanditError) -> str:
    """The gRPC status name for per-item errors reported inside a response."""
    return status_of(exc).name

"""Domain errors → gRPC status, in one table, applied by one decorator to every RPC.

Unexpected exceptions become INTERNAL with a fixed message and a request id; the traceback
goes to the server log, never to the client. Field problems also carry a
``google.rpc.BadRequest`` detail naming the field.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
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
    StorageError,
    TooLarge,
    UnknownEvent,
)

log = logging.getLogger(__name__)

# Most specific first: the first matching class wins.
STATUS_OF: tuple[tuple[type[OfferBanditError], grpc.StatusCode], ...] = (
    (TooLarge, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownEvent, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.ALREADY_EXISTS),
    (InvalidState, grpc.StatusCode.FAILED_PRECONDITION),
    (NotReady, grpc.StatusCode.UNAVAILABLE),
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
    message = str(exc)
    status = status_pb2.Status(code=code.value[0], message=message)
    field = _field_of(exc)
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


Handler = Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
H = TypeVar("H", bound=Handler)


def mapped(method: H) -> H:
    """Wrap an async RPC handler so every error leaves as the right gRPC status."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await method(self, request, context)
        except OfferBanditError as exc:
            status = status_for(exc)
            await context.abort(status.code, status.details, status.trailing_metadata)
        except grpc.aio.AbortError:  # aborted on purpose
            raise
        except Exception:
            request_id = uuid.uuid4().hex[:12]
            log.exception("unexpected error in %s (request id %s)", method.__name__, request_id)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"internal error; quote request id {request_id}"
            )
        return None  # unreachable: abort raises

    wrapper.__offerbandit_mapped__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


_CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}
assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT


def code_name(exc: OfferBanditError) -> str:
    """The gRPC status name for per-item errors reported inside a response."""
    return status_of(exc).name

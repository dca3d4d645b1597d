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

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc

from server.settings import Settings

if TYPE_CHECKING:
    Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # generic in the stubs only
    Interceptor = grpc.aio.ServerInterceptor
"""One interceptor (``intercept_service(continuation, handler_call_details)``)."""


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


__all__ = ["Interceptor", "for_settings"]

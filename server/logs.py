"""The server's logs: text or JSON lines, request ids, and an optional access log.

``log_format = "json"`` writes one JSON object a line (``ts``, ``level``, ``logger``,
``message``, ``request_id`` when a call is being answered, ``exc`` with the traceback):
what log collectors parse without rules. ``access_log = true`` adds one line per call on
the ``offerbandit.access`` logger (method, status, milliseconds, request id) from an
interceptor; it is off by default (it costs every call, and a busy decider writes thousands
a second). Customer contexts are never logged.

A call's request id is the caller's ``x-request-id`` metadata (up to 64 printable
characters) or a new random one; with the access log on, every log line written while the
call is answered carries it, and an INTERNAL error quotes the same id to the caller.

>>> rec = logging.LogRecord("x", logging.INFO, "f", 1, "hello %s", ("you",), None)
>>> rec.request_id = "r1"
>>> sorted(json.loads(JsonFormatter().format(rec)))
['level', 'logger', 'message', 'request_id', 'ts']
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from server.interceptors import Interceptor, around

if TYPE_CHECKING:
    from server.interceptors import Continuation


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
"""The id of the call being answered (empty outside calls, or without the access log)."""

access = logging.getLogger("offerbandit.access")


def current_request_id() -> str:
    return REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Puts the current call's request id on every record (``-`` outside calls)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "-")
        if rid and rid != "-":
            out["request_id"] = rid
        for key in ("method", "code", "ms"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(level: str, fmt: str = "text") -> None:
    """The process's log handler: stderr, text or JSON, with request ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "x-request-id":
            text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            text = "".join(ch for ch in text[:64] if ch.isprintable())
            if text:
                return text
    return uuid.uuid4().hex[:16]


def _reset(token: contextvars.Token[str]) -> None:
    with contextlib.suppress(ValueError):  # a generator finished in another context
        REQUEST_ID.reset(token)


class AccessLog(Interceptor):
    """One ``offerbandit.access`` line per call, and the call's request id for every line
    logged while it is answered."""

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None:
            return handler
        return self.wrap(handler, details)

    def wrap(
        self,
        handler: grpc.RpcMethodHandler[Any, Any],
        details: grpc.HandlerCallDetails,
        observe: Callable[[float, str], None] | None = None,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``handler`` with the call's request id set and its access line written (and
        ``observe(start, code)`` called: the metrics, in the same pass)."""
        method = details.method.rsplit("/", 1)[-1]
        rid = _request_id(details.invocation_metadata)

        def begin() -> tuple[contextvars.Token[str], float]:
            return REQUEST_ID.set(rid), time.perf_counter()

        def end(state: tuple[contextvars.Token[str], float], code: str) -> None:
            token, start = state
            if observe is not None:
                observe(start, code)
            ms = round(1000 * (time.perf_counter() - start), 3)
            access.info(
                "%s %s %.3f ms", method, code, ms, extra={"method": method, "code": code, "ms": ms}
            )
            _reset(token)

        return around(handler, begin, end)

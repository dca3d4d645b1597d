"""Bearer tokens with roles, checked around every call.

A caller sends ``authorization: Bearer <token>`` in the call's metadata. The tokens file
holds only each token's SHA-256, with a name and roles::

    # offerbandit tokens — create entries with `offerbandit token add`
    [[token]]
    name = "web-frontend"
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    roles = ["decide", "report"]

Roles, and the methods they open:

=========  ================================================================
``decide``  Choose, ChooseStream, ChooseBatchStream, Activate, ActivateStream
``report``  RecordOutcome, RecordOutcomes, StreamOutcomes
``read``    GetDecision, GetStats, and server reflection
``admin``   every method, and AdminService's (erasure, voiding, policy reload)
=========  ================================================================

Health checks stay open (a load balancer probes them without a token). A method of the
service that no role names is refused to everyone but ``admin``: a new RPC is closed until
someone decides who may call it (``tests`` check that every RPC has a role).

A missing, malformed or unknown token gets UNAUTHENTICATED; a known token without the
method's role gets PERMISSION_DENIED. The file is read again when it changes (its
modification time and size, looked at most once a second): a file that no longer parses is
refused with an error in the log and the tokens before it stay in force.

>>> entry = new_token_entry("ci", ["read"], token="s3cret")
>>> entry["sha256"][:12], entry["roles"]
('1ec1c26b50d5', ['read'])
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from server.interceptors import Interceptor

if TYPE_CHECKING:
    from server.interceptors import Continuation

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/offerbandit.v1.DecisionService/"
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

ADMIN_PREFIX = "/offerbandit.v1.AdminService/"
ADMIN_METHODS = frozenset({"EraseCustomer", "ReloadContactPolicy", "Void"})
"""The operator service's methods (``offerbandit.v1.AdminService``): ``admin`` only."""

ROLES: Mapping[str, frozenset[str]] = {
    "decide": frozenset(
        {"Choose", "ChooseStream", "ChooseBatchStream", "Activate", "ActivateStream"}
    ),
    "report": frozenset({"RecordOutcome", "RecordOutcomes", "StreamOutcomes"}),
    "read": frozenset({"GetDecision", "GetStats"}),
    "admin": frozenset(),  # every method
}
"""The service's methods each role may call (``admin``: all of them)."""


class TokensError(ValueError):
    """A tokens file that cannot be used; the message says where."""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    name: str
    roles: frozenset[str]


def token_digest(token: str) -> str:
    """The SHA-256 (hex) a tokens file stores for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str) -> dict[str, TokenEntry]:
    """digest → entry, from a tokens file's text (:class:`TokensError` naming the entry)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TokensError(f"not valid TOML: {exc}") from exc
    unknown = set(doc) - {"token"}
    if unknown:
        raise TokensError(f"unknown key(s) {sorted(unknown)}: the file holds [[token]] tables")
    entries = doc.get("token", [])
    if not isinstance(entries, list):
        raise TokensError("token: must be an array of tables ([[token]])")
    tokens: dict[str, TokenEntry] = {}
    for i, e in enumerate(entries):
        where = f"token[{i}]"
        if not isinstance(e, dict):
            raise TokensError(f"{where}: must be a table")
        extra = set(e) - {"name", "sha256", "roles"}
        if extra:
            raise TokensError(f"{where}: unknown key(s) {sorted(extra)}")
        name, digest, roles = e.get("name"), e.get("sha256"), e.get("roles")
        if not isinstance(name, str) or not name:
            raise TokensError(f"{where}.name: must be a non-empty string")
        if (
            not isinstance(digest, str)
            or len(digest) != 64
            or any(ch not in "0123456789abcdef" for ch in digest)
        ):
            raise TokensError(f"{where}.sha256: must be 64 lower-case hex digits")
        if not isinstance(roles, list) or not roles or not all(r in ROLES for r in roles):
            raise TokensError(f"{where}.roles: must be a non-empty list of {sorted(ROLES)}")
        if digest in tokens:
            raise TokensError(f"{where}.sha256: the same token as {tokens[digest].name!r}")
        tokens[digest] = TokenEntry(name, frozenset(roles))
    return tokens


def new_token_entry(name: str, roles: Sequence[str], token: str | None = None) -> dict[str, Any]:
    """A new token (random, 256 bits, unless given) and the entry a tokens file keeps of it."""
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise TokensError(
            f"roles: {unknown or 'none given'}; a token has one or more of {sorted(ROLES)}"
        )
    # "ob_" first: a token never starts with "-" (a command line would take it for an
    # option: offerbandit call --token -x…) and secret scanners can recognise it
    token = token or "ob_" + secrets.token_urlsafe(32)
    entry = {"name": name, "sha256": token_digest(token), "roles": list(roles)}
    parse_tokens(_entry_toml(entry))  # checks name and roles
    return {**entry, "token": token}


def _entry_toml(entry: Mapping[str, Any]) -> str:
    roles = ", ".join(f'"{r}"' for r in entry["roles"])
    name = str(entry["name"]).replace("\\", "\\\\").replace('"', '\\"')
    return f'[[token]]\nname = "{name}"\nsha256 = "{entry["sha256"]}"\nroles = [{roles}]\n'


def add_token(path: Path, name: str, roles: Sequence[str]) -> str:
    """Append a new token's entry to the tokens file (created if absent, mode 600) and return
    the token itself: the only time it is shown."""
    entry = new_token_entry(name, roles)
    existing = path.read_text() if path.exists() else "# offerbandit tokens: SHA-256 only\n"
    known = parse_tokens(existing)
    if any(e.name == name for e in known.values()):
        raise TokensError(f"a token named {name!r} is in {path} already")
    text = existing.rstrip("\n") + "\n\n" + _entry_toml(entry)
    parse_tokens(text)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)
    return str(entry["token"])


class TokenFile:
    """The tokens in force, read from a file and read again when it changes."""

    CHECK_EVERY = 1.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._tokens = parse_tokens(path.read_text())  # a bad file at start is fatal
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size

    def lookup(self, token: str) -> TokenEntry | None:
        now = time.monotonic()
        if now - self._checked >= self.CHECK_EVERY:
            self._checked = now
            self._reload_if_changed()
        return self._tokens.get(token_digest(token))

    def _reload_if_changed(self) -> None:
        with self._lock:
            try:
                stamp = self._stat()
                if stamp == self._stamp:
                    return
                tokens = parse_tokens(self.path.read_text())
            except (OSError, TokensError) as exc:
                log.error(
                    "tokens file %s not reloaded, the previous tokens stay: %s", self.path, exc
                )
                return
            self._stamp, self._tokens = stamp, tokens
            log.info("tokens file %s reloaded: %d tokens", self.path, len(tokens))


def allowed(method: str, roles: frozenset[str]) -> bool:
    """May a caller with ``roles`` call ``method`` (a full gRPC method name)?"""
    if "admin" in roles:
        return True
    if method.startswith(SERVICE_PREFIX):
        name = method[len(SERVICE_PREFIX) :]
        return any(name in ROLES[r] for r in roles)
    if method.startswith(REFLECTION_PREFIXES):
        return "read" in roles
    return False


def bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer …`` header, or None."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class TokenAuth(Interceptor):
    """UNAUTHENTICATED without a known token, PERMISSION_DENIED without the method's role;
    health checks pass untouched."""

    def __init__(self, tokens: TokenFile) -> None:
        self.tokens = tokens

    def refusal(self, details: grpc.HandlerCallDetails) -> tuple[grpc.StatusCode, str] | None:
        """Why the call is refused (its status and message), or None when it may go on."""
        method = details.method
        if method.startswith(HEALTH_PREFIX):
            return None
        token = bearer(details.invocation_metadata)
        entry = self.tokens.lookup(token) if token is not None else None
        if entry is None:
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                (
                    "a bearer token is required (metadata 'authorization: Bearer <token>')"
                    if token is None
                    else "unknown token"
                ),
            )
        if allowed(method, entry.roles):
            return None
        return (
            grpc.StatusCode.PERMISSION_DENIED,
            f"token {entry.name!r} has no role that may call {method.rsplit('/', 1)[-1]}",
        )

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        refused = self.refusal(details)
        handler = await continuation(details)
        return handler if refused is None else refused_handler(handler, *refused)


def refused_handler(
    handler: grpc.RpcMethodHandler[Any, Any] | None, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same kind as ``handler`` that ends the call with ``code``."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - an async generator that never yields

    streaming_in = bool(handler and handler.request_streaming)
    streaming_out = bool(handler and handler.response_streaming)
    des = handler.request_deserializer if handler else None
    ser = handler.response_serializer if handler else None
    if streaming_out:
        make = (
            grpc.stream_stream_rpc_method_handler
            if streaming_in
            else grpc.unary_stream_rpc_method_handler
        )
        return make(refuse_stream, request_deserializer=des, response_serializer=ser)
    make = (
        grpc.stream_unary_rpc_method_handler
        if streaming_in
        else grpc.unary_unary_rpc_method_handler
    )
    return make(refuse, request_deserializer=des, response_serializer=ser)

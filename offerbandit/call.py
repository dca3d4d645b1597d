"""``offerbandit call METHOD [JSON]``: call the decision service with JSON from a shell.

A grpcurl for this one service, built on the generated stubs (``server/pb``) and
protobuf's JSON mapping: field names as in the .proto (``customer_id``; lowerCamelCase is
accepted too), timestamps as RFC 3339 text (``"2026-12-06T10:00:00Z"``), enums by name.

* The request is the JSON argument, or stdin when it is missing or ``-``.
* Unary methods (Choose, GetDecision, RecordOutcome, Activate, GetStats) read one JSON
  object and print the answer as indented JSON.
* Streaming methods read many requests: JSON lines (one object a line), or one JSON array;
  ChooseStream, ChooseBatchStream, StreamOutcomes and ActivateStream print one answer a line
  as each arrives (JSON lines), so ``tail -f orders.jsonl | offerbandit call StreamOutcomes``
  feeds outcomes as they come; RecordOutcomes prints its one answer.
* Connection: ``--target`` (default ``127.0.0.1:50051``), TLS with ``--ca-file`` (and
  ``--cert-file``/``--key-file`` for mutual TLS, ``--server-name`` to override the name
  checked), a bearer token with ``--token`` or ``$OFFERBANDIT_TOKEN`` — exactly as
  :func:`server.client.open_channel`.

Exit status: 0 on success, 1 when the server answers with an error (its code and message,
and the field it names, on stderr), 2 for a bad command line or bad JSON (the line and the
field named).

    offerbandit call GetStats
    offerbandit call Choose '{"customer": {"id": "c-42", "features": {"stage": {"text": "new"}}},
                              "trigger": {"type": "login"},
                              "offers": [{"id": "discount_10", "discount_rate": 0.1}],
                              "channels": [{"id": "email", "contact_cost": 0.002}]}'
    offerbandit call RecordOutcome '{"outcome_id": "o-1", "event_id": "…", "type": "purchase",
                                     "revenue": 84}'
    offerbandit call RecordOutcomes < outcomes.jsonl
"""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.client import open_channel
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.pb.offerbandit.v1 import decision_service_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["DecisionService"]
DEFAULT_TARGET = "127.0.0.1:50051"
UNARY_TIMEOUT = 10.0


class BadInput(ValueError):
    """A request that is not JSON, or not JSON for the method's message (names the field)."""


def find_method(name: str) -> MethodDescriptor:
    """A method of ``offerbandit.v1.DecisionService`` by name, case-insensitive; the full
    ``offerbandit.v1.DecisionService/Choose`` form works too.

    >>> find_method("choose").name, find_method("offerbandit.v1.DecisionService/GetStats").name
    ('Choose', 'GetStats')
    """
    short = name.rsplit("/", 1)[-1].rsplit(".", 1)[-1].lower()
    for m in SERVICE.methods:
        if m.name.lower() == short:
            return m
    names = ", ".join(m.name for m in SERVICE.methods)
    raise BadInput(f"no method {name!r} in {SERVICE.full_name}; it has {names}")


def parse_message(text: Any, method: MethodDescriptor, where: str = "") -> Message:
    """One request from JSON (text, or already-decoded JSON); errors name the field.

    >>> parse_message('{"event_id": "e1"}', find_method("GetDecision")).event_id
    'e1'
    >>> parse_message('{"event": "e1"}', find_method("GetDecision"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    offerbandit.call.BadInput: bad JSON for ...GetDecisionRequest: ... no field named "event"...
    """
    cls = GetMessageClass(method.input_type)
    name = method.input_type.full_name
    if isinstance(text, str):
        try:
            text = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"not JSON{where}: {exc}") from None
    if not isinstance(text, dict):
        raise BadInput(f"{name} must be a JSON object{where}, not {type(text).__name__}")
    try:
        return json_format.ParseDict(plain_features(text, method.input_type), cls())
    except json_format.ParseError as exc:
        raise BadInput(f"bad JSON for {name}{where}: {' '.join(str(exc).split())}") from None


def _feature_value(value: Any) -> Any:
    if isinstance(value, bool):
        return {"flag": value}
    if isinstance(value, int | float):
        return {"number": value}
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {"tags": {"values": value}}
    return value  # an object ({"number": 3}) or something the parser will name


def plain_features(data: Any, descriptor: Descriptor) -> Any:
    """``data`` with plain JSON feature values (``"ltv": 310``, ``"stage": "new"``,
    ``"vip": true``, ``"tags": ["a", "b"]``) written as the ``FeatureValue`` messages the
    contract has (``{"number": 310}`` …); values already written so are kept.

    >>> plain_features({"customer": {"id": "c", "features": {"ltv": 3, "vip": True}}},
    ...                find_method("Choose").input_type)["customer"]["features"]
    {'ltv': {'number': 3}, 'vip': {'flag': True}}
    """
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for field in descriptor.fields:
        name = field.name if field.name in out else field.json_name
        if name not in out or field.message_type is None:
            continue
        value = out[name]
        entry = field.message_type
        if entry.GetOptions().map_entry:
            target = entry.fields_by_name["value"].message_type
            if target is not None and target.full_name == "offerbandit.v1.FeatureValue":
                if isinstance(value, dict):
                    out[name] = {k: _feature_value(v) for k, v in value.items()}
            elif target is not None and isinstance(value, dict):
                out[name] = {k: plain_features(v, target) for k, v in value.items()}
        elif isinstance(value, list):  # a repeated message field
            out[name] = [plain_features(v, entry) for v in value]
        else:
            out[name] = plain_features(value, entry)
    return out


def read_requests(source: str | TextIO, method: MethodDescriptor) -> Iterator[Message]:
    """Requests of a streaming method: one JSON array, or JSON lines (read lazily, so a
    never-ending input streams)."""
    if isinstance(source, str):
        stripped = source.strip()
        if stripped.startswith("["):
            try:
                items = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise BadInput(f"not JSON: {exc}") from None
            for i, item in enumerate(items):
                yield parse_message(item, method, f" (item {i})")
            return
        lines: Iterable[str] = stripped.splitlines()
    else:
        first = source.readline()
        if first.lstrip().startswith("["):
            yield from read_requests(first + source.read(), method)
            return
        lines = _chain(first, source)
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield parse_message(line, method, f" (line {number})")


def _chain(first: str, rest: TextIO) -> Iterator[str]:
    if first:
        yield first
    yield from rest


def to_json(message: Message, *, indent: int | None) -> str:
    """A response as JSON: field names as in the .proto, zero values printed, 64-bit
    counters as numbers (protobuf ≥ 5.29; older ones quote them, as proto3 JSON allows).

    >>> to_json(pb.Stats(decisions=3), indent=None)[:40]
    '{"decisions": 3, "activations": 0, "outc'
    """
    options: dict[str, Any] = {
        "preserving_proto_field_name": True,
        "always_print_fields_with_no_presence": True,
    }
    try:
        data = json_format.MessageToDict(message, unquote_int64_if_possible=True, **options)
    except TypeError:  # pragma: no cover - protobuf without the option
        data = json_format.MessageToDict(message, **options)
    return json.dumps(data, indent=indent, ensure_ascii=False)


def describe_error(err: grpc.RpcError) -> str:
    """A failed call in one line: code, message, and the fields a BadRequest detail names."""
    if not isinstance(err, grpc.Call):
        return str(err)
    text = f"{err.code().name}: {err.details()}"
    status = rpc_status.from_call(err)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            text += "".join(
                f" [field {v.field}: {v.description}]"
                for v in bad.field_violations
                if v.field not in text
            )
    return text


def call(
    channel: grpc.Channel,
    method: MethodDescriptor,
    source: str | TextIO,
    out: TextIO,
    *,
    timeout: float | None,
    compact: bool = False,
) -> None:
    """Call ``method`` with the JSON in ``source`` and write the answers to ``out``."""
    stub = pb_grpc.DecisionServiceStub(channel)
    rpc = getattr(stub, method.name)
    indent = None if compact else 2
    stream: _Requests | None = None
    if not method.client_streaming:
        text = source if isinstance(source, str) else source.read()
        request = parse_message(text.strip() or "{}", method)
        responses: Iterable[Message]
        if method.server_streaming:  # none today; kept for the contract's next methods
            responses = rpc(request, timeout=timeout)
        else:
            responses = [rpc(request, timeout=timeout)]
    else:
        stream = _Requests(source, method)
        if method.server_streaming:
            responses = rpc(iter(stream), timeout=timeout)
        else:
            responses = [rpc(iter(stream), timeout=timeout)]
    for response in responses:
        out.write(to_json(response, indent=None if method.server_streaming else indent) + "\n")
        out.flush()
    if stream is not None and stream.error is not None:
        raise stream.error


class _Requests:
    """The requests of a streaming call. A JSON argument or a regular file is parsed whole
    before anything is sent (bad JSON sends nothing); a pipe is read lazily, line by line, so
    an endless feed streams — a bad line then ends the stream after the good ones before it
    (each already answered) and is reported once the call ends (gRPC's reading thread must
    not see the exception: it would cancel the call and lose the message)."""

    def __init__(self, source: str | TextIO, method: MethodDescriptor) -> None:
        self.error: BadInput | None = None
        self._lazy: Iterator[Message] | None = None
        self._ready: list[Message] | None = None
        if isinstance(source, str) or _regular_file(source):
            self._ready = list(read_requests(source, method))
        else:
            self._lazy = read_requests(source, method)

    def __iter__(self) -> Iterator[Message]:
        if self._ready is not None:
            yield from self._ready
            return
        assert self._lazy is not None
        try:
            yield from self._lazy
        except BadInput as exc:
            self.error = exc


def _regular_file(f: TextIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(f.fileno()).st_mode)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return True  # not a real file (a StringIO): read it whole


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="offerbandit call",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", nargs="?", help="Choose, ChooseStream, ChooseBatchStream, "
                   "GetDecision, RecordOutcome, RecordOutcomes, StreamOutcomes, Activate, "
                   "ActivateStream or "
                   "GetStats")  # fmt: skip
    p.add_argument("json", nargs="?", help="the request as JSON (default, or '-': stdin)")
    p.add_argument("--target", default=DEFAULT_TARGET, help=f"HOST:PORT (default {DEFAULT_TARGET})")
    p.add_argument("--token", help="bearer token (default: $OFFERBANDIT_TOKEN)")
    p.add_argument("--ca-file", help="TLS: the CA certificate that signed the server's")
    p.add_argument("--cert-file", help="mutual TLS: this client's certificate chain (PEM)")
    p.add_argument("--key-file", help="mutual TLS: this client's private key (PEM)")
    p.add_argument("--server-name", help="TLS: the name to check the server certificate for")
    p.add_argument("--timeout", type=float, help=f"seconds (default {UNARY_TIMEOUT:g} for unary "
                   "methods, none for streams)")  # fmt: skip
    p.add_argument("--compact", action="store_true", help="one line of JSON per answer")
    p.add_argument("--list", action="store_true", help="list the methods and their messages")
    return p


def list_methods() -> str:
    lines = []
    for m in SERVICE.methods:
        inp = ("stream " if m.client_streaming else "") + m.input_type.full_name
        outp = ("stream " if m.server_streaming else "") + m.output_type.full_name
        lines.append(f"{m.name:<16}{inp} → {outp}")
    return "\n".join(lines)


def main(argv: Sequence[str], stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    ns = parser().parse_intermixed_args(list(argv))
    out = sys.stdout if stdout is None else stdout
    if ns.list:
        print(list_methods(), file=out)
        return 0
    if not ns.method:
        print("offerbandit call: give a METHOD (offerbandit call --list)", file=sys.stderr)
        return 2
    source: str | TextIO = ns.json if ns.json not in (None, "-") else (stdin or sys.stdin)
    if ns.json is None and not isinstance(source, str) and source.isatty():
        source = "{}"  # nothing piped in: an empty request (GetStats), never a silent wait
    try:
        method = find_method(ns.method)
        timeout = ns.timeout
        if timeout is None and not (method.client_streaming or method.server_streaming):
            timeout = UNARY_TIMEOUT
        token = ns.token if ns.token is not None else os.environ.get("OFFERBANDIT_TOKEN")
        channel = open_channel(
            ns.target,
            token=token,
            ca_file=ns.ca_file,
            cert_file=ns.cert_file,
            key_file=ns.key_file,
            server_name=ns.server_name,
        )
    except (BadInput, ValueError, OSError) as exc:
        print(f"offerbandit call: {exc}", file=sys.stderr)
        return 2
    with channel:
        try:
            call(channel, method, source, out, timeout=timeout, compact=ns.compact)
        except BadInput as exc:
            print(f"offerbandit call: {exc}", file=sys.stderr)
            return 2
        except grpc.RpcError as err:
            print(f"offerbandit call: {method.name}: {describe_error(err)}", file=sys.stderr)
            return 1
    return 0


__all__ = [
    "BadInput",
    "call",
    "describe_error",
    "find_method",
    "main",
    "parse_message",
    "read_requests",
    "to_json",
]

"""A small typed Python client for frontends, the simulator and tests.

Example (needs a running server)::

    with OfferBanditClient("127.0.0.1:50051") as client:
        answer = client.choose(
            Customer("c1", {"stage": "vip"}), Trigger("login"),
            offers=[Offer("d10", discount_rate=0.1)], channels=[Channel("email")])
        client.record_outcome("o1", event_id=answer.event_id, type="purchase", revenue=80.0)
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bandit.records import ActivationInput, OutcomeInput
from bandit.types import Channel, Customer, Offer, TreatmentRef, Trigger
from server import converters as cv
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.pb.offerbandit.v1 import decision_service_pb2_grpc as pb_grpc


def choose_request(
    customer: Customer,
    trigger: Trigger,
    offers: Sequence[Offer] = (),
    channels: Sequence[Channel] = (),
    *,
    treatments: Sequence[TreatmentRef] = (),
    excluded: Sequence[TreatmentRef] = (),
    defer_activation: bool = False,
    request_id: str = "",
    campaign_id: str = "",
    campaign_holdout_share: float = 0.0,
) -> pb.ChooseRequest:
    return pb.ChooseRequest(
        customer=cv.customer_to_pb(customer),
        trigger=cv.trigger_to_pb(trigger),
        offers=[cv.offer_to_pb(o) for o in offers],
        channels=[cv.channel_to_pb(c) for c in channels],
        treatments=[cv.ref_to_pb(t) for t in treatments],
        excluded=[cv.ref_to_pb(t) for t in excluded],
        defer_activation=defer_activation,
        request_id=request_id,
        campaign_id=campaign_id,
        campaign_holdout_share=campaign_holdout_share,
    )


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds ``authorization: Bearer <token>`` to every call (plaintext or TLS)."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self.header]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


def open_channel(
    target: str,
    *,
    token: str | None = None,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    server_name: str | None = None,
) -> grpc.Channel:
    """A channel to ``target``: TLS when ``ca_file`` is given (the CA that signed the
    server's certificate; with ``cert_file``/``key_file`` a client certificate for mutual
    TLS), plaintext otherwise; with ``token``, every call carries it as a bearer token.
    ``server_name`` overrides the name checked against the server's certificate."""
    if ca_file is None:
        if cert_file is not None or key_file is not None:
            raise ValueError("a client certificate needs TLS: give ca_file too")
        channel = grpc.insecure_channel(target)
    else:
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(ca_file).read_bytes(),
            private_key=Path(key_file).read_bytes() if key_file else None,
            certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
        )
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(target, creds, options=options)
    if token:
        channel = grpc.intercept_channel(channel, _Bearer(token))
    return channel


class OfferBanditClient:
    """Blocking client over one channel. Use as a context manager, or call :meth:`close`.

    ``token`` and the TLS files are those of :func:`open_channel`; the token defaults to the
    environment variable ``OFFERBANDIT_TOKEN``."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        token: str | None = None,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        server_name: str | None = None,
    ) -> None:
        self.channel = open_channel(
            target,
            token=token if token is not None else os.environ.get("OFFERBANDIT_TOKEN"),
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            server_name=server_name,
        )
        self.stub = pb_grpc.DecisionServiceStub(self.channel)
        self._batch_stream = self.channel.stream_stream(
            "/offerbandit.v1.DecisionService/ChooseBatchStream",
            request_serializer=None,  # ChooseBatch messages written as bytes (batch_to_wire)
            response_deserializer=pb.ChooseBatchResult.FromString,
        )
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.timeout = timeout

    def __enter__(self) -> OfferBanditClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def serving(self, service: str = "") -> bool:
        reply = self.health.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout
        )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def choose(
        self,
        customer: Customer,
        trigger: Trigger,
        offers: Sequence[Offer] = (),
        channels: Sequence[Channel] = (),
        **kwargs: object,
    ) -> pb.ChooseResponse:
        req = choose_request(customer, trigger, offers, channels, **kwargs)  # type: ignore[arg-type]
        return self.stub.Choose(req, timeout=self.timeout)

    def choose_stream(
        self, requests: Iterable[pb.ChooseRequest], timeout: float | None = None
    ) -> Iterator[pb.ChooseStreamResult]:
        """One result per request, in order, each once its decision is durable (build the
        requests with :func:`choose_request`)."""
        return iter(self.stub.ChooseStream(iter(requests), timeout=timeout))

    def choose_batches(
        self,
        template: pb.ChooseRequest,
        chunks: Iterable[Sequence[tuple[Customer, str]]],
        timeout: float | None = None,
    ) -> Iterator[pb.ChooseBatchResult]:
        """One ChooseBatchStream: each chunk of (customer, request id) decided under
        ``template`` (a ChooseRequest without customer and request id, see
        :func:`server.converters.batch_template_to_pb`), one result message per chunk, in
        order, each once its decisions are durable. The chunks are read as the server asks
        for more (it holds a few in flight)."""

        def messages() -> Iterator[bytes]:
            first: pb.ChooseRequest | None = template
            for chunk in chunks:
                yield cv.batch_to_wire(first, chunk)
                first = None

        return iter(self._batch_stream(messages(), timeout=timeout))

    def get_decision(self, event_id: str) -> pb.Decision:
        return self.stub.GetDecision(pb.GetDecisionRequest(event_id=event_id), timeout=self.timeout)

    def record_outcome(
        self,
        outcome_id: str,
        *,
        event_id: str = "",
        customer_id: str = "",
        type: str = "purchase",
        revenue: float = 0.0,
        occurred_at: float | None = None,
    ) -> pb.RecordOutcomeResponse:
        o = OutcomeInput(outcome_id, event_id, customer_id, type, revenue, occurred_at)
        return self.stub.RecordOutcome(cv.outcome_to_pb(o), timeout=self.timeout)

    def record_outcomes(
        self, outcomes: Iterable[OutcomeInput], timeout: float | None = None
    ) -> pb.RecordOutcomesResponse:
        stream = (cv.outcome_to_pb(o) for o in outcomes)
        return self.stub.RecordOutcomes(stream, timeout=timeout or max(self.timeout, 300.0))

    def stream_outcomes(
        self, outcomes: Iterable[OutcomeInput], timeout: float | None = None
    ) -> Iterator[pb.OutcomeResult]:
        """Each outcome's result, in order, as the server makes it durable (any length)."""
        stream = (cv.outcome_to_pb(o) for o in outcomes)
        return iter(self.stub.StreamOutcomes(stream, timeout=timeout))

    def activate(self, event_id: str, at: float | None = None) -> pb.ActivateResponse:
        req = cv.activation_to_pb(ActivationInput(event_id, at))
        return self.stub.Activate(req, timeout=self.timeout)

    def activate_stream(
        self, activations: Iterable[ActivationInput], timeout: float | None = None
    ) -> Iterator[pb.ActivateResult]:
        """Each activation's result, in order, as the server makes it durable (any length;
        a refused one carries its status and reason, and the others go on)."""
        stream = (cv.activation_to_pb(a) for a in activations)
        return iter(self.stub.ActivateStream(stream, timeout=timeout))

    def stats(self, recent_seconds: int = 3600) -> pb.Stats:
        return self.stub.GetStats(
            pb.GetStatsRequest(recent_seconds=recent_seconds), timeout=self.timeout
        )

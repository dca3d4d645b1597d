"""The server's interceptors: a cross-cutting rule (here a toy key check, as authentication
would be) is one more element of the list, and runs around every call over real gRPC."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from server.app import RunningServer, start_server
from server.client import OfferBanditClient
from server.interceptors import Interceptor, for_settings
from server.settings import Settings
from tests.conftest import CHANNELS, OFFERS, customer, trigger

KEY = "test-key"


class RequireKey(Interceptor):
    """Refuses every call without the metadata ``x-key: test-key`` (UNAUTHENTICATED)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        self.seen.append(details.method)
        if (("x-key", KEY)) in tuple(details.invocation_metadata or ()):
            return await continuation(details)

        async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "x-key is missing or wrong")

        return grpc.unary_unary_rpc_method_handler(refuse)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[RunningServer, RequireKey]]:
    interceptor = RequireKey()
    settings = Settings.load(host="127.0.0.1", port=0, data_dir=tmp_path / "data")
    running = start_server(settings, interceptors=[interceptor])
    yield running, interceptor
    running.stop(grace=1.0)


def test_no_interceptor_unless_asked() -> None:
    assert for_settings(Settings.load(host="127.0.0.1", port=0)) == []


def test_an_interceptor_runs_around_every_call(guarded: tuple[RunningServer, RequireKey]) -> None:
    running, interceptor = guarded
    with OfferBanditClient(running.address) as c:
        with pytest.raises(grpc.RpcError) as refused:
            c.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert refused.value.details() == "x-key is missing or wrong"
        ok = c.health.Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5, metadata=(("x-key", KEY),)
        )
        assert ok.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as choose:
            c.choose(customer(), trigger(), OFFERS, CHANNELS)
        assert choose.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert running.service.stats().log.decisions == 0  # refused before the service
    assert interceptor.seen == [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Check",
        "/offerbandit.v1.DecisionService/Choose",
    ]

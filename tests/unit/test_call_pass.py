"""The one interceptor pass (server.interceptors.CallPass): tokens, metrics and the access
log ask for one interceptor, and with metrics alone the wrapped handler is made once per
method (no sockets: the interceptor is called directly)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from server.auth import add_token
from server.interceptors import CallPass, for_settings
from server.metrics import CallMetrics
from server.settings import Settings


class _Details:
    def __init__(self, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.method = method
        self.invocation_metadata = metadata


async def _answer(request: Any, context: Any) -> str:
    return "ok"


HANDLER = grpc.unary_unary_rpc_method_handler(_answer)


async def _continuation(details: Any) -> Any:
    return HANDLER


def test_tokens_metrics_and_access_log_are_one_interceptor(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    add_token(tokens, "d", ["decide"])
    settings = Settings.load(host="127.0.0.1", port=0, tokens_file=tokens, access_log=True)
    chain = for_settings(settings, metrics=CallMetrics(CollectorRegistry()))
    assert len(chain) == 1
    assert isinstance(chain[0], CallPass)
    assert for_settings(Settings.load(host="127.0.0.1", port=0)) == []


def test_with_metrics_the_wrapped_handler_is_made_once_per_method() -> None:
    registry = CollectorRegistry()
    calls = CallPass(None, CallMetrics(registry), None)
    choose = _Details("/offerbandit.v1.DecisionService/Choose")
    stats = _Details("/offerbandit.v1.DecisionService/GetStats")

    async def intercept(d: _Details) -> Any:
        return await calls.intercept_service(_continuation, d)  # type: ignore[arg-type]

    first, again, other = (asyncio.run(intercept(d)) for d in (choose, choose, stats))
    assert first is again
    assert first is not other
    assert first is not HANDLER
    assert asyncio.run(first.unary_unary(None, None)) == "ok"
    count = registry.get_sample_value("offerbandit_rpc_total", {"method": "Choose", "code": "OK"})
    assert count == 1

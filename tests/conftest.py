"""Shared fixtures: a real server on 127.0.0.1:0 and clients talking real gRPC to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from bandit.types import Channel, Customer, Offer, Trigger
from server.app import RunningServer, start_server
from server.client import OfferBanditClient
from server.settings import Settings
from tests.pg import fresh_schema

# Property tests explore the same examples on every run: CI never flakes on a new draw.
hypothesis_settings.register_profile("offerbandit", derandomize=True, deadline=None)
hypothesis_settings.load_profile("offerbandit")

ServerFactory = Callable[..., RunningServer]


@pytest.fixture(params=["sqlite", "postgres"])
def log_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The decision log a test runs on, once per backend: ``""`` (the embedded SQLite log in
    the test's data folder) and a fresh PostgreSQL schema (tests/pg.py: skipped when no
    server answers, failed instead when ``OFFERBANDIT_REQUIRE_POSTGRES=1``)."""
    if request.param == "sqlite":
        yield ""
        return
    with fresh_schema() as dsn:
        yield dsn


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start real servers with setting overrides; all are stopped at the end of the test."""
    started: list[RunningServer] = []

    def make(**overrides: Any) -> RunningServer:
        overrides.setdefault("data_dir", tmp_path / f"data{len(started)}")
        settings = Settings.load(host="127.0.0.1", port=0, **overrides)
        running = start_server(settings)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop(grace=1.0)


@pytest.fixture
def server(make_server: ServerFactory) -> RunningServer:
    return make_server()


@pytest.fixture
def client(server: RunningServer) -> Iterator[OfferBanditClient]:
    with OfferBanditClient(server.address) as c:
        yield c


OFFERS = [
    Offer("discount_10", {"kind": "discount"}, discount_rate=0.1),
    Offer("free_shipping", {"kind": "shipping"}, fixed_cost=4.0),
    Offer("content", {"kind": "content"}),
]
CHANNELS = [
    Channel("email", {"instant": False}, contact_cost=0.01),
    Channel("sms", {"instant": True}, contact_cost=0.05),
]


def customer(cid: str = "c1", **features: Any) -> Customer:
    return Customer(cid, {"stage": "active", "ltv": 120.0, **features})


def trigger(kind: str = "cart_abandoned") -> Trigger:
    return Trigger(kind, {"cart_value": 80.0})

"""Go-live security over real gRPC: TLS and mutual TLS, bearer tokens with roles, reflection
off with authentication, and refusing to listen beyond the machine unprotected."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import ValidationError

from bandit.records import OutcomeInput
from server.app import RunningServer, start_server
from server.auth import ROLES, SERVICE_PREFIX, add_token
from server.client import OfferBanditClient, choose_request, open_channel
from server.converters import batch_template_to_pb, customer_to_pb, outcome_to_pb
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.pb.offerbandit.v1 import decision_service_pb2_grpc as pb_grpc
from server.settings import Settings
from tests.conftest import CHANNELS, OFFERS, customer, trigger
from tests.tls import Pki, make_pki

UNAUTH, DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, dict[str, str], Path]]:
    folder = tmp_path_factory.mktemp("secured")
    tokens_file = folder / "tokens.toml"
    tokens = {role: add_token(tokens_file, f"{role}-holder", [role]) for role in ROLES}
    settings = Settings.load(
        host="127.0.0.1",
        port=0,
        data_dir=folder / "data",
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        tokens_file=tokens_file,
    )
    running = start_server(settings)
    yield running, tokens, tokens_file
    running.stop(grace=1.0)


def _calls(stub: pb_grpc.DecisionServiceStub) -> dict[str, Callable[[], Any]]:
    outcome = outcome_to_pb(OutcomeInput("o-sec", "", "c-sec", "click", 0.0, None))
    return {
        "Choose": lambda: stub.Choose(
            choose_request(customer(), trigger(), OFFERS, CHANNELS), timeout=10
        ),
        "ChooseStream": lambda: list(
            stub.ChooseStream(
                iter([choose_request(customer(), trigger(), OFFERS, CHANNELS)]), timeout=10
            )
        ),
        "ChooseBatchStream": lambda: list(
            stub.ChooseBatchStream(
                iter(
                    [
                        pb.ChooseBatch(
                            template=batch_template_to_pb(trigger(), OFFERS, CHANNELS),
                            customers=[pb.BatchCustomer(customer=customer_to_pb(customer()))],
                        )
                    ]
                ),
                timeout=10,
            )
        ),
        "GetDecision": lambda: stub.GetDecision(pb.GetDecisionRequest(event_id="nope"), timeout=10),
        "RecordOutcome": lambda: stub.RecordOutcome(outcome, timeout=10),
        "RecordOutcomes": lambda: stub.RecordOutcomes(iter([outcome]), timeout=10),
        "StreamOutcomes": lambda: list(stub.StreamOutcomes(iter([outcome]), timeout=10)),
        "Activate": lambda: stub.Activate(pb.ActivateRequest(event_id="nope"), timeout=10),
        "ActivateStream": lambda: list(
            stub.ActivateStream(iter([pb.ActivateRequest(event_id="nope")]), timeout=10)
        ),
        "GetStats": lambda: stub.GetStats(pb.GetStatsRequest(), timeout=10),
    }


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_every_rpc_has_a_role() -> None:
    methods = set(pb.DESCRIPTOR.services_by_name["DecisionService"].methods_by_name)
    assert set().union(*ROLES.values()) == methods
    assert set(_calls(pb_grpc.DecisionServiceStub(grpc.insecure_channel("127.0.0.1:1")))) == methods


# (method → the roles that may call it); admin may call everything
MAY = {
    m: {r for r, ms in ROLES.items() if m in ms} | {"admin"} for m in set().union(*ROLES.values())
}


@pytest.mark.parametrize("holder", [None, "unknown", *ROLES])
def test_each_method_needs_a_token_with_its_role(
    secured: tuple[RunningServer, dict[str, str], Path], pki: Pki, holder: str | None
) -> None:
    running, tokens, _ = secured
    token = {None: None, "unknown": "not-a-token"}.get(holder, tokens.get(holder or ""))
    channel = open_channel(running.address, token=token, ca_file=pki.ca)
    with channel:
        for method, call in _calls(pb_grpc.DecisionServiceStub(channel)).items():
            code = _code(call)
            if holder in (None, "unknown"):
                assert code == UNAUTH, (method, holder, code)
            elif holder in MAY[method]:
                assert code not in (UNAUTH, DENIED), (method, holder, code)
            else:
                assert code == DENIED, (method, holder, code)
        health = health_pb2_grpc.HealthStub(channel)  # open to everyone (load balancers)
        reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_refusals_say_why_and_reach_no_service(
    secured: tuple[RunningServer, dict[str, str], Path], pki: Pki
) -> None:
    running, tokens, _ = secured
    before = running.service.stats().log.decisions
    with (
        OfferBanditClient(running.address, token="", ca_file=pki.ca) as c,
        pytest.raises(grpc.RpcError) as missing,
    ):
        c.choose(customer(), trigger(), OFFERS, CHANNELS)
    assert missing.value.code() == UNAUTH
    assert "bearer token is required" in missing.value.details()
    with (
        OfferBanditClient(running.address, token=tokens["read"], ca_file=pki.ca) as c,
        pytest.raises(grpc.RpcError) as denied,
    ):
        c.choose(customer(), trigger(), OFFERS, CHANNELS)
    assert denied.value.code() == DENIED
    assert denied.value.details() == "token 'read-holder' has no role that may call Choose"
    assert running.service.stats().log.decisions == before
    with OfferBanditClient(running.address, token=tokens["decide"], ca_file=pki.ca) as c:
        answer = c.choose(customer(), trigger(), OFFERS, CHANNELS)
    assert answer.event_id
    assert running.service.stats().log.decisions == before + 1


def test_reflection_is_off_with_authentication(
    secured: tuple[RunningServer, dict[str, str], Path], pki: Pki
) -> None:
    running, tokens, _ = secured
    with open_channel(running.address, token=tokens["admin"], ca_file=pki.ca) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        assert _code(lambda: list(stub.ServerReflectionInfo(iter([request]), timeout=10))) == (
            grpc.StatusCode.UNIMPLEMENTED
        )


def test_plaintext_cannot_talk_to_a_tls_server(
    secured: tuple[RunningServer, dict[str, str], Path],
) -> None:
    running, tokens, _ = secured
    with OfferBanditClient(running.address, token=tokens["admin"], timeout=3) as c:
        assert _code(c.stats) == grpc.StatusCode.UNAVAILABLE


def test_a_changed_tokens_file_is_read_again_and_a_bad_one_is_refused(
    secured: tuple[RunningServer, dict[str, str], Path], pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    running, _, tokens_file = secured
    new = add_token(tokens_file, "late-reader", ["read"])
    with OfferBanditClient(running.address, token=new, ca_file=pki.ca) as c:
        # the server looks at the file at most once a second: wait (bounded) until it has
        assert _eventually(lambda: _code(c.stats) == grpc.StatusCode.OK)
        good = tokens_file.read_text()
        tokens_file.write_text(good + "\n[[token]]\nname = 'broken'\n")
        try:
            with caplog.at_level(logging.ERROR, logger="server.auth"):
                assert _eventually(
                    lambda: (
                        _code(c.stats) == grpc.StatusCode.OK
                        and any(
                            "not reloaded, the previous tokens stay" in r.getMessage()
                            for r in caplog.records
                        )
                    )
                )
            assert _code(c.stats) == grpc.StatusCode.OK  # the tokens before the bad edit stay
        finally:
            tokens_file.write_text(good)


def _eventually(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def mutual(pki: Pki, tmp_path: Path) -> Iterator[RunningServer]:
    settings = Settings.load(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        tls_client_ca_file=pki.ca,
    )
    running = start_server(settings)
    yield running
    running.stop(grace=1.0)


def test_mutual_tls_needs_a_client_certificate_the_server_trusts(
    mutual: RunningServer, pki: Pki
) -> None:
    with OfferBanditClient(
        mutual.address, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key
    ) as c:
        assert c.serving()
        assert c.choose(customer(), trigger(), OFFERS, CHANNELS).event_id
    with OfferBanditClient(mutual.address, ca_file=pki.ca, timeout=3) as c:
        assert _code(c.stats) == grpc.StatusCode.UNAVAILABLE
    with OfferBanditClient(
        mutual.address, ca_file=pki.ca, cert_file=pki.rogue_cert, key_file=pki.rogue_key, timeout=3
    ) as c:
        assert _code(c.stats) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"host": "0.0.0.0"}, r"without TLS \(tls_cert_file, tls_key_file\) and authentication"),
        (
            {"host": "0.0.0.0", "tokens_file": "t.toml"},
            r"without TLS \(tls_cert_file, tls_key_file\) is refused",
        ),
        ({"tls_cert_file": "c.pem"}, "tls_cert_file and tls_key_file: give both"),
        ({"tls_client_ca_file": "ca.pem"}, "tls_client_ca_file: mutual TLS needs"),
    ],
)
def test_unsafe_settings_are_refused(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        Settings.load(**overrides)


def test_an_explicit_allow_insecure_binds_beyond_loopback_and_loopback_stays_plain() -> None:
    assert Settings.load(host="0.0.0.0", allow_insecure=True).host == "0.0.0.0"
    plain = Settings.load(host="127.0.0.1")
    assert not plain.tls
    assert plain.reflection_on
    assert not Settings.load(tokens_file="t.toml").reflection_on


def test_method_names_are_the_services() -> None:
    assert f"/{pb.DESCRIPTOR.services_by_name['DecisionService'].full_name}/" == SERVICE_PREFIX


def test_walking_event_ids_finds_no_neighbour(client: OfferBanditClient) -> None:
    # Before, an id was a per-start prefix and a counter: one id minus one was the previous
    # customer's decision, readable with GetDecision.
    ids = [
        client.choose(customer(f"walk-{i}"), trigger(), OFFERS, CHANNELS).event_id
        for i in range(20)
    ]
    assert len(set(ids)) == 20
    assert all(len(e) == 32 and int(e, 16) >= 0 for e in ids)
    codes = {
        _code(lambda e=e, step=step: client.get_decision(f"{(int(e, 16) + step) % 16**32:032x}"))
        for e in ids
        for step in (-2, -1, 1, 2)
    }
    assert codes == {grpc.StatusCode.NOT_FOUND}


def test_a_new_token_never_looks_like_a_command_line_option() -> None:
    """Random tokens once started with "-" about one time in 64, and ``offerbandit call
    --token -x…`` then failed (a test's flicker found it): every token now starts "ob_"."""
    from server.auth import new_token_entry

    tokens = [new_token_entry("t", ["read"])["token"] for _ in range(500)]
    assert all(t.startswith("ob_") for t in tokens)
    assert len(set(tokens)) == 500
    assert min(len(t) for t in tokens) >= 3 + 43  # 256 random bits, base64url

"""The operator's service (offerbandit.v1.AdminService) over real gRPC with TLS and tokens:
only an ``admin`` token may call it; erasure leaves no bytes of the customer, a contact-policy
reload answers the new digest or refuses a bad file naming what is wrong (the running policy
stays), voiding flags what it names."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from bandit.contact import ContactPolicy
from server.app import RunningServer, start_server
from server.auth import ADMIN_METHODS, ROLES, add_token
from server.client import OfferBanditClient, open_channel
from server.pb.offerbandit.v1 import admin_service_pb2 as apb
from server.pb.offerbandit.v1 import admin_service_pb2_grpc as apb_grpc
from server.settings import Settings
from tests.conftest import CHANNELS, OFFERS, customer, trigger
from tests.tls import Pki, make_pki

WHO = "cust-admin-erase-4471"
SECRET = "zz-admin-feature-8812"
CAP = "version = 'one a week'\n[[cap]]\nname = 'weekly'\nmax = 1\ndays = 7\n"
DAILY = "[[cap]]\nname = 'daily'\nmax = 1\ndays = 1\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, dict[str, str], Path]]:
    folder = tmp_path_factory.mktemp("admin")
    tokens_file = folder / "tokens.toml"
    tokens = {role: add_token(tokens_file, f"{role}-holder", [role]) for role in ROLES}
    policy = folder / "policy.toml"
    policy.write_text(CAP)
    settings = Settings.load(
        host="127.0.0.1",
        port=0,
        data_dir=folder / "data",
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        tokens_file=tokens_file,
        contact_policy=policy,
    )
    running = start_server(settings)
    yield running, tokens, policy
    running.stop(grace=1.0)


def _calls(stub: apb_grpc.AdminServiceStub) -> dict[str, Callable[[], Any]]:
    return {
        "EraseCustomer": lambda: stub.EraseCustomer(
            apb.EraseCustomerRequest(customer_id="nobody-at-all"), timeout=30
        ),
        "ReloadContactPolicy": lambda: stub.ReloadContactPolicy(
            apb.ReloadContactPolicyRequest(), timeout=30
        ),
        "Void": lambda: stub.Void(apb.VoidRequest(event_ids=["no-such-event"]), timeout=30),
    }


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_every_admin_rpc_is_listed() -> None:
    methods = set(apb.DESCRIPTOR.services_by_name["AdminService"].methods_by_name)
    assert methods == ADMIN_METHODS
    stub = apb_grpc.AdminServiceStub(grpc.insecure_channel("127.0.0.1:1"))
    assert set(_calls(stub)) == methods


@pytest.mark.parametrize("holder", [None, "unknown", *ROLES])
def test_only_an_admin_token_may_call_the_admin_service(
    secured: tuple[RunningServer, dict[str, str], Path], pki: Pki, holder: str | None
) -> None:
    running, tokens, _ = secured
    token = {None: None, "unknown": "not-a-token"}.get(holder, tokens.get(holder or ""))
    with open_channel(running.address, token=token, ca_file=pki.ca) as channel:
        for method, call in _calls(apb_grpc.AdminServiceStub(channel)).items():
            code = _code(call)
            if holder in (None, "unknown"):
                assert code == grpc.StatusCode.UNAUTHENTICATED, (method, holder, code)
            elif holder == "admin":
                assert code == grpc.StatusCode.OK, (method, holder, code)
            else:
                assert code == grpc.StatusCode.PERMISSION_DENIED, (method, holder, code)


def _files(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in data.glob("decisions.sqlite*") if p.is_file()}


def test_erasure_over_grpc_leaves_no_bytes(
    secured: tuple[RunningServer, dict[str, str], Path], pki: Pki
) -> None:
    running, tokens, _ = secured
    data = running.service.config.data_dir
    with OfferBanditClient(running.address, token=tokens["admin"], ca_file=pki.ca) as c:
        mine = [
            c.choose(customer(WHO, email_hash=SECRET), trigger(), OFFERS, CHANNELS)
            for _ in range(3)
        ]
        c.record_outcome("admin-o1", customer_id=WHO, type="unsubscribe")
        assert any(WHO.encode() in b for b in _files(data).values())
        with open_channel(running.address, token=tokens["admin"], ca_file=pki.ca) as channel:
            stub = apb_grpc.AdminServiceStub(channel)
            done = stub.EraseCustomer(apb.EraseCustomerRequest(customer_id=WHO), timeout=60)
            assert (done.decisions, done.outcomes, done.wal_truncated) == (3, 1, True)
            with pytest.raises(grpc.RpcError) as empty:
                stub.EraseCustomer(apb.EraseCustomerRequest(customer_id=""), timeout=30)
            assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert empty.value.details() == "customer_id: is required"
        assert c.get_decision(mine[1].event_id).customer.id.startswith("erased:")
    for name, content in _files(data).items():
        assert WHO.encode() not in content, name
        assert SECRET.encode() not in content, name


def test_reload_answers_the_new_policy_and_refuses_a_bad_one(
    secured: tuple[RunningServer, dict[str, str], Path], pki: Pki
) -> None:
    running, tokens, policy = secured
    with open_channel(running.address, token=tokens["admin"], ca_file=pki.ca) as channel:
        stub = apb_grpc.AdminServiceStub(channel)
        policy.write_text(DAILY)
        reply = stub.ReloadContactPolicy(apb.ReloadContactPolicyRequest(), timeout=30)
        assert reply.digest == ContactPolicy.parse(DAILY).digest
        assert reply.previous_digest in {ContactPolicy.parse(t).digest for t in (CAP, DAILY)}
        assert running.service.contact is not None
        assert running.service.contact.policy.digest == reply.digest
        policy.write_text("[[cap]]\nmax = 1\ndays = 7\nchanel = 'email'\n")
        with pytest.raises(grpc.RpcError) as bad:
            stub.ReloadContactPolicy(apb.ReloadContactPolicyRequest(), timeout=30)
        assert bad.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert bad.value.details() == "contact_policy: cap[0]: unknown key(s) ['chanel']"
        assert running.service.contact.policy.digest == reply.digest  # the running one stays
        policy.write_text(CAP)
        again = stub.ReloadContactPolicy(apb.ReloadContactPolicyRequest(), timeout=30)
        assert (again.digest, again.version) == (ContactPolicy.parse(CAP).digest, "one a week")


def test_reload_without_a_policy_is_refused(tmp_path: Path) -> None:
    running = start_server(Settings.load(host="127.0.0.1", port=0, data_dir=tmp_path / "d"))
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = apb_grpc.AdminServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ReloadContactPolicy(apb.ReloadContactPolicyRequest(), timeout=30)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no contact_policy file is configured" in refused.value.details()
    finally:
        running.stop(grace=1.0)


def test_void_flags_what_it_names(
    secured: tuple[RunningServer, dict[str, str], Path], pki: Pki
) -> None:
    running, tokens, _ = secured
    with OfferBanditClient(running.address, token=tokens["admin"], ca_file=pki.ca) as c:
        d = c.choose(customer("void-me"), trigger(), OFFERS, CHANNELS)
        c.record_outcome("void-o1", event_id=d.event_id, revenue=10.0)
    with open_channel(running.address, token=tokens["admin"], ca_file=pki.ca) as channel:
        stub = apb_grpc.AdminServiceStub(channel)
        reply = stub.Void(
            apb.VoidRequest(event_ids=[d.event_id], outcome_ids=["void-o1"]), timeout=30
        )
        assert (reply.decisions, reply.outcomes) == (1, 1)
        assert reply.learned_position == running.service.position
        again = stub.Void(apb.VoidRequest(event_ids=[d.event_id]), timeout=30)
        assert (again.decisions, again.outcomes) == (0, 0)  # voided once
        with pytest.raises(grpc.RpcError) as empty:
            stub.Void(apb.VoidRequest(), timeout=30)
        assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "event_ids" in empty.value.details()
    with sqlite3.connect(running.service.config.log_path) as conn:
        (voided,) = conn.execute(
            "SELECT voided_at FROM decisions WHERE event_id = ?", (d.event_id,)
        ).fetchone()
    assert voided is not None

"""The operator's gRPC service, ``offerbandit.v1.AdminService``: erasure of a customer,
contact-policy reload and voiding, over the same connection (TLS, tokens) as the decision
service. Every method needs the ``admin`` role (:mod:`server.auth`).

:class:`Admin` does the work with the decision service's parts and the server's settings;
:class:`AdminServicer` converts around it (errors mapped once by :func:`server.errors.mapped`).
Erasure and voiding wait on the database, so they run on the servicer's thread pool, never
on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

from bandit.contact import ContactPolicy, PolicyError
from bandit.errors import InvalidRequest, InvalidState
from bandit.log.sqlite import SqliteDecisionLog
from bandit.log.sqlite.erasure import Erasure, erase_customer
from bandit.service import DecisionService
from server.errors import mapped
from server.pb.offerbandit.v1 import admin_service_pb2 as apb
from server.pb.offerbandit.v1 import admin_service_pb2_grpc as apb_grpc
from server.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]

MAX_VOID_IDS = 10_000
"""Most ids one Void call may name."""

ADMIN_SERVICE = apb.DESCRIPTOR.services_by_name["AdminService"]


def reload_contact_policy(service: DecisionService, settings: Settings) -> ContactPolicy:
    """Read the contact-policy file ``settings`` name again and put it in force; raises
    :class:`~bandit.errors.InvalidState` naming what is wrong (the running policy stays)."""
    try:
        policy = settings.load_contact_policy()
    except PolicyError as exc:
        raise InvalidState("contact_policy", str(exc)) from None
    if policy is None:
        raise InvalidState("contact_policy", "no contact_policy file is configured")
    service.reload_contact_policy(policy)  # InvalidState when started without one
    return policy


class Admin:
    """What the admin calls do on one running service."""

    def __init__(self, service: DecisionService, settings: Settings) -> None:
        self.service = service
        self.settings = settings

    def _check_id(self, field: str, value: str) -> None:
        if not value:
            raise InvalidRequest(field, "is required")
        limit = self.service.config.limits.max_id_length
        if len(value) > limit:
            raise InvalidRequest(field, f"is longer than {limit} characters")

    def erase(self, customer_id: str) -> Erasure:
        """Pseudonymise the customer in the log (:mod:`bandit.log.sqlite.erasure`)."""
        self._check_id("customer_id", customer_id)
        if not isinstance(self.service.log, SqliteDecisionLog):
            raise InvalidState("customer_id", "this decision log has no erasure")
        done = erase_customer(self.service.config.log_path, customer_id)
        if self.service.contact is not None:  # nor in the contact gate's memory
            self.service.contact.forget(customer_id)
        log.info(  # the pseudonym and the id are never logged: nothing links them
            "a customer was erased: %d decisions, %d outcomes", done.decisions, done.outcomes
        )
        return done

    def reload(self) -> tuple[ContactPolicy, str]:
        """The contact policy now in force, and the digest of the one before."""
        current = self.service.contact
        before = "" if current is None else current.policy.digest
        policy = reload_contact_policy(self.service, self.settings)
        log.info("contact policy %s replaced by %s (admin call)", before, policy.digest)
        return policy, before

    def void(self, event_ids: Sequence[str], outcome_ids: Sequence[str]) -> tuple[int, int, int]:
        """Void decisions and outcomes; (decisions, outcomes, the learner's position)."""
        if not event_ids and not outcome_ids:
            raise InvalidRequest("event_ids", "name at least one event id or outcome id")
        if len(event_ids) + len(outcome_ids) > MAX_VOID_IDS:
            raise InvalidRequest("event_ids", f"at most {MAX_VOID_IDS} ids per call")
        for i, e in enumerate(event_ids):
            self._check_id(f"event_ids[{i}]", e)
        for i, o in enumerate(outcome_ids):
            self._check_id(f"outcome_ids[{i}]", o)
        log_ = self.service.log
        if not isinstance(log_, SqliteDecisionLog):
            raise InvalidState("event_ids", "this decision log has no voiding")
        now = self.service.clock.now()
        outcomes = log_.void_outcomes(now, list(outcome_ids))
        decisions = log_.void_decisions(now, list(event_ids))
        log.info("voided %d decisions and %d outcomes (admin call)", decisions, outcomes)
        return decisions, outcomes, self.service.position


class AdminServicer(apb_grpc.AdminServiceServicer):
    """``offerbandit.v1.AdminService`` over :class:`Admin`."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="rpc-admin")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @mapped
    async def EraseCustomer(
        self, request: apb.EraseCustomerRequest, context: Context
    ) -> apb.EraseCustomerResponse:
        done = await self._blocking(self.admin.erase, request.customer_id)
        return apb.EraseCustomerResponse(
            decisions=done.decisions, outcomes=done.outcomes, wal_truncated=done.wal_truncated
        )

    @mapped
    async def ReloadContactPolicy(
        self, request: apb.ReloadContactPolicyRequest, context: Context
    ) -> apb.ReloadContactPolicyResponse:
        policy, before = await self._blocking(self.admin.reload)
        return apb.ReloadContactPolicyResponse(
            digest=policy.digest, version=policy.version, previous_digest=before
        )

    @mapped
    async def Void(self, request: apb.VoidRequest, context: Context) -> apb.VoidResponse:
        decisions, outcomes, position = await self._blocking(
            self.admin.void, list(request.event_ids), list(request.outcome_ids)
        )
        return apb.VoidResponse(decisions=decisions, outcomes=outcomes, learned_position=position)


def add_admin_to_server(
    service: DecisionService, settings: Settings, server: grpc.aio.Server
) -> AdminServicer:
    """Register ``offerbandit.v1.AdminService`` on ``server`` (one thread of its own: admin
    calls are rare, and never hold up the decision service's pool)."""
    servicer = AdminServicer(Admin(service, settings))
    apb_grpc.add_AdminServiceServicer_to_server(servicer, server)
    return servicer


__all__ = [
    "ADMIN_SERVICE",
    "Admin",
    "AdminServicer",
    "add_admin_to_server",
    "reload_contact_policy",
]

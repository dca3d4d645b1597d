"""Assembling the gRPC server: the decision service, health checking and reflection, and the
interceptors around every call (:mod:`server.interceptors`)."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import _async as health_aio  # public name: health.aio (not in the stubs)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from bandit.checkpoint import Checkpoint, read_checkpoint
from bandit.contact import PolicyError
from bandit.errors import InvalidState
from bandit.service import Clock, DecisionService
from server.admin import ADMIN_SERVICE, AdminServicer, add_admin_to_server, reload_contact_policy
from server.interceptors import Interceptor, for_settings
from server.metrics import Metrics
from server.servicer import SERVICE, DecisionServicer, add_to_server
from server.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE_NAME = SERVICE.full_name


class _Loop:
    """The one asyncio loop (on its own daemon thread) that every server in this process uses.

    gRPC's asyncio stack wants one loop per process; ``offerbandit serve`` runs one server, and
    tests start several, all on this loop.
    """

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="grpc-loop", daemon=True).start()
                cls._loop = loop
            return cls._loop

    @classmethod
    def run(cls, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, cls.get()).result()


@dataclass
class RunningServer:
    """A started server: its port, the service object, and how to stop both."""

    server: grpc.aio.Server
    service: DecisionService
    servicer: DecisionServicer
    health: health_aio.HealthServicer
    port: int
    watcher: asyncio.Task[None] | None = None
    metrics: Metrics | None = None
    """The Prometheus endpoint, with ``metrics_port`` set (its port: ``metrics.port``)."""
    admin: AdminServicer | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def enter_graceful_shutdown(self) -> None:
        """Health turns NOT_SERVING (load balancers stop sending); calls are still answered."""
        _Loop.run(self._shutting_down())

    async def _shutting_down(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
        await self.health.enter_graceful_shutdown()

    def reload_contact_policy(self, settings: Settings) -> bool:
        """Re-read the contact-policy file ``settings`` name and apply it from the next Choose
        on. A file that cannot be used is refused with a log message naming what is wrong,
        and the running policy stays; returns whether the new one is in force."""
        try:
            policy = reload_contact_policy(self.service, settings)
        except InvalidState as exc:
            current = self.service.contact
            log.error(
                "contact policy reload refused, policy %s stays: %s",
                "none" if current is None else current.policy.digest,
                exc,
            )
            return False
        log.info("contact policy %s (%s) in force", policy.digest, settings.contact_policy)
        return True

    def stop(self, grace: float = 10.0) -> None:
        """Stop taking calls, let in-flight calls finish, then flush the log and save the model."""
        self.enter_graceful_shutdown()
        _Loop.run(self.server.stop(grace))
        self.servicer.close()
        if self.admin is not None:
            self.admin.close()
        self.service.stop()
        if self.metrics is not None:
            self.metrics.stop()


ModelRegistry = Callable[[str], Checkpoint]
"""Loads the checkpoint behind a model registry URI (``models:/name@alias``, ``runs:/…``);
the ``offerbandit`` command passes :func:`offline_eval.registry.load_checkpoint` (MLflow)."""


def is_registry_uri(spec: str) -> bool:
    """Whether ``settings.model`` names a registered model rather than a checkpoint file.

    >>> is_registry_uri("models:/offerbandit@champion"), is_registry_uri("data/v3.ckpt")
    (True, False)
    """
    return "://" in spec or spec.startswith(("models:/", "runs:/"))


def load_initial_model(spec: str, registry: ModelRegistry | None = None) -> Checkpoint | None:
    """A checkpoint file, or a model registry URI loaded by ``registry``."""
    if not spec:
        return None
    if is_registry_uri(spec):
        if registry is None:
            raise ValueError(f"the model {spec!r} is a registry URI, and no registry was given")
        return registry(spec)
    return read_checkpoint(Path(spec))


def start_server(
    settings: Settings,
    clock: Clock | None = None,
    registry: ModelRegistry | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> RunningServer:
    """Build the service and serve it on ``settings.host:settings.port`` (0 = any free port).

    The server runs on the process's gRPC loop thread; this returns once it is SERVING.
    ``registry`` loads ``settings.model`` when it names a registered model;
    ``interceptors`` run around every call, after those the settings ask for
    (:mod:`server.interceptors`).
    """
    initial = load_initial_model(settings.model, registry)
    service = DecisionService(settings.service_config(initial), clock)
    metrics = Metrics() if settings.metrics_port is not None else None
    try:
        # metrics, access log and tokens in one pass; refused calls are counted too
        chain = for_settings(
            settings, interceptors, None if metrics is None else metrics.interceptor
        )
        running = _Loop.run(_start(settings, service, chain))
    except BaseException:
        service.stop()
        raise
    if metrics is not None and settings.metrics_port is not None:
        try:
            metrics.serve(service, settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            running.stop(grace=0)
            raise OSError(
                f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: {exc}"
            ) from exc
        running.metrics = metrics
    return running


async def _start(
    settings: Settings, service: DecisionService, interceptors: Sequence[Interceptor]
) -> RunningServer:
    credentials = server_credentials(settings)  # unreadable files fail before anything starts
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", max(settings.max_message_bytes, 64 * 1024 * 1024)),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(
        options=options,
        maximum_concurrent_rpcs=settings.max_concurrent_calls,
        interceptors=interceptors or None,
    )
    servicer = DecisionServicer(service, asyncio.get_running_loop(), settings.workers)
    add_to_server(servicer, server)
    admin = add_admin_to_server(service, settings, server)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if settings.reflection_on:
        reflection.enable_server_reflection(
            (SERVICE_NAME, ADMIN_SERVICE.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME),
            server,
        )
    try:
        address = f"{settings.host}:{settings.port}"
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        servicer.close()
        admin.close()
        raise OSError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from exc
    if port == 0:
        servicer.close()
        admin.close()
        raise OSError(f"cannot listen on {settings.host}:{settings.port}")
    await server.start()
    service.start()  # model loaded and log open: now we serve
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    watcher = asyncio.get_running_loop().create_task(_watch_health(service, health_servicer))
    return RunningServer(server, service, servicer, health_servicer, port, watcher, admin=admin)


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from the settings' PEM files (client certificates required when a
    client CA is given), or None for plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    try:
        chain = settings.tls_cert_file.read_bytes()
        key = settings.tls_key_file.read_bytes()
        ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    except OSError as exc:
        raise OSError(f"cannot read the TLS files: {exc}") from exc
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=ca, require_client_auth=ca is not None
    )


HEALTH_POLL_SECONDS = 0.2


async def _watch_health(
    service: DecisionService, health_servicer: health_aio.HealthServicer
) -> None:
    """Health follows the service: NOT_SERVING while the decision log cannot be written
    (disk full, I/O error), SERVING again once it can."""
    serving = True
    while True:
        await asyncio.sleep(HEALTH_POLL_SECONDS)
        healthy = service.healthy
        if healthy != serving:
            serving = healthy
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if healthy
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in ("", SERVICE_NAME):
                await health_servicer.set(name, status)


def serve(settings: Settings, registry: ModelRegistry | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully; SIGHUP re-reads the contact
    policy. A contact policy that cannot be used refuses the start (exit status 2)."""
    try:
        running = start_server(settings, registry=registry)
    except PolicyError as exc:
        log.error("refusing to start: %s (contact_policy = %s)", exc, settings.contact_policy)
        raise SystemExit(2) from None
    log.info(
        "offerbandit serving on %s:%d (data in %s, model %s)",
        settings.host,
        running.port,
        settings.data_dir.resolve(),
        running.service.model_version,
    )
    print(f"offerbandit listening on {settings.host}:{running.port}", flush=True)
    if running.metrics is not None:
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, running.metrics.port)
    done = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        done.set()

    def _on_hup(_signum: int, _frame: object) -> None:
        log.info("SIGHUP: re-reading the contact policy")
        try:
            running.reload_contact_policy(settings)
        except Exception:  # a signal handler must not end the server
            log.exception("contact policy reload failed; the running policy stays")

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_hup)
    done.wait()
    running.stop()
    log.info("offerbandit stopped cleanly")

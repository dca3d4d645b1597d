"""Assembling the gRPC server: the decision service, health checking and reflection."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from bandit.checkpoint import Checkpoint, read_checkpoint
from bandit.service import Clock, DecisionService
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.pb.offerbandit.v1 import decision_service_pb2_grpc as pb_grpc
from server.servicer import DecisionServicer
from server.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DecisionService"].full_name


@dataclass
class RunningServer:
    """A started server: its port, the service object, and how to stop both."""

    server: grpc.Server
    service: DecisionService
    health: health.HealthServicer
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float = 10.0) -> None:
        """Stop taking calls, let in-flight calls finish, then flush the log and save the model."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.service.stop()


def load_initial_model(spec: str) -> Checkpoint | None:
    """A checkpoint file, or an MLflow model URI (``models:/name@alias``, ``runs:/…``)."""
    if not spec:
        return None
    if "://" in spec or spec.startswith(("models:/", "runs:/")):
        from offline_eval.registry import load_checkpoint  # MLflow lives in offline_eval

        return load_checkpoint(spec)
    return read_checkpoint(Path(spec))


def start_server(settings: Settings, clock: Clock | None = None) -> RunningServer:
    """Build the service and serve it on ``settings.host:settings.port`` (0 = any free port)."""
    initial = load_initial_model(settings.model)
    service = DecisionService(settings.service_config(initial), clock)
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", max(settings.max_message_bytes, 64 * 1024 * 1024)),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="rpc"),
        options=options,
    )
    pb_grpc.add_DecisionServiceServicer_to_server(DecisionServicer(service), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        service.stop()
        raise OSError(f"cannot listen on {settings.host}:{settings.port}")
    server.start()
    service.start()  # model loaded and log open: now we serve
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, service, health_servicer, port)


def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    running = start_server(settings)
    log.info(
        "offerbandit serving on %s:%d (data in %s, model %s)",
        settings.host,
        running.port,
        settings.data_dir.resolve(),
        running.service.model_version,
    )
    print(f"offerbandit listening on {settings.host}:{running.port}", flush=True)
    done = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    done.wait()
    running.stop()
    log.info("offerbandit stopped cleanly")

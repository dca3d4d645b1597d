"""``offerbandit health``: ask a server's gRPC health service whether it is SERVING.

Exit status 0 when it is, 1 when it answers anything else (NOT_SERVING while the decision
log cannot be written, or while it shuts down), 2 when it cannot be reached in time: what a
container's HEALTHCHECK or a process supervisor needs, with no other tool installed. The
health service needs no token (server/auth.py), so none is sent.

Examples::

    offerbandit health                                   # 127.0.0.1:50051, plaintext
    offerbandit health --address 127.0.0.1:50051 --ca-file /etc/offerbandit/ca.crt \\
        --server-name decisions.example.com              # TLS, the certificate's name
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.client import open_channel


def check(
    address: str,
    *,
    service: str = "",
    timeout: float = 3.0,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    server_name: str | None = None,
) -> str:
    """The health status's name (``SERVING``, ``NOT_SERVING`` …); raises
    :class:`grpc.RpcError` when the server does not answer."""
    with open_channel(
        address, ca_file=ca_file, cert_file=cert_file, key_file=key_file, server_name=server_name
    ) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def main(argv: Sequence[str] | None = None) -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="offerbandit health", description=__doc__.split("\n")[0])
    p.add_argument(
        "--address",
        default=env("OFFERBANDIT_HEALTH_ADDRESS", "127.0.0.1:50051"),
        help="host:port (default $OFFERBANDIT_HEALTH_ADDRESS or 127.0.0.1:50051)",
    )
    p.add_argument("--service", default="", help='the service to ask about ("": the server)')
    p.add_argument("--timeout", type=float, default=3.0, help="seconds")
    p.add_argument("--ca-file", type=Path, default=env("OFFERBANDIT_HEALTH_CA_FILE") or None)
    p.add_argument("--cert-file", type=Path, help="client certificate (mutual TLS)")
    p.add_argument("--key-file", type=Path, help="its key")
    p.add_argument(
        "--server-name",
        default=env("OFFERBANDIT_HEALTH_SERVER_NAME") or None,
        help="the name on the server's certificate, when --address does not carry it",
    )
    ns = p.parse_args(argv)
    try:
        status = check(
            ns.address,
            service=ns.service,
            timeout=ns.timeout,
            ca_file=ns.ca_file,
            cert_file=ns.cert_file,
            key_file=ns.key_file,
            server_name=ns.server_name,
        )
    except grpc.RpcError as exc:
        print(f"{ns.address}: no answer ({exc.code().name})", file=sys.stderr)
        return 2
    print(f"{ns.address}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())

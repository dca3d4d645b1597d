"""Imports flow one way: bandit and offline_eval never import grpc, protobuf, mlflow or server."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = ("grpc", "google.protobuf", "mlflow", "server")


@pytest.mark.parametrize(
    "module",
    [
        "bandit.service",
        "bandit.sim",
        "offline_eval.estimators",
        "offline_eval.logs",
    ],
)
def test_core_packages_do_not_import_transport_or_tracking(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {{'grpc', 'mlflow', 'server'}}"
        f" or m.startswith('google.protobuf')]\n"
        f"print(','.join(sorted(bad)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"{module} pulls in {out}"

"""Imports flow one way (docs/architecture.md): ``offerbandit → server → bandit`` and
``offerbandit → offline_eval → bandit``.

Every module of ``bandit`` and ``offline_eval`` is read for what it imports — at the top or
inside a function — and checked against the rules; a few entry modules are also imported in
a fresh interpreter, which catches what a static read cannot (an import under another name).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT_AND_TRACKING = ("grpc", "grpc_health", "grpc_reflection", "grpc_status", "google")


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _is(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


BANDIT = _modules("bandit")
OFFLINE = _modules("offline_eval")
SERVER = [p for p in _modules("server") if "pb" not in p.parts]
SIMULATOR = ("bandit.sim",)


def test_every_module_is_read() -> None:
    assert len(BANDIT) > 20
    assert len(OFFLINE) > 15
    assert ROOT / "bandit" / "service.py" in BANDIT
    assert ROOT / "server" / "servicer.py" in SERVER


@pytest.mark.parametrize("path", BANDIT, ids=_id)
def test_bandit_imports_no_transport_tracking_or_adapter(path: Path) -> None:
    bad = {
        m
        for m in _imports(path)
        if _is(m, *TRANSPORT_AND_TRACKING, "mlflow", "server", "offline_eval", "offerbandit")
    }
    assert not bad, f"{_id(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", [p for p in BANDIT if "sim" not in p.parts], ids=_id)
def test_the_core_never_imports_the_simulator(path: Path) -> None:
    bad = {m for m in _imports(path) if _is(m, *SIMULATOR)}
    assert not bad, f"{_id(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", OFFLINE, ids=_id)
def test_offline_eval_never_imports_the_adapter_or_transport(path: Path) -> None:
    bad = {m for m in _imports(path) if _is(m, "server", "offerbandit", *TRANSPORT_AND_TRACKING)}
    assert not bad, f"{_id(path)} imports {sorted(bad)}"


TRACKING = ROOT / "offline_eval" / "tracking"


def test_the_tracking_package_is_where_mlflow_is() -> None:
    inside = [p for p in OFFLINE if TRACKING in p.parents]
    assert any("mlflow" in _imports(p) or "mlflow.MlflowClient" in _imports(p) for p in inside)


@pytest.mark.parametrize("path", [p for p in OFFLINE if TRACKING not in p.parents], ids=_id)
def test_only_the_tracking_package_imports_mlflow(path: Path) -> None:
    """Every MLflow call sits in ``offline_eval/tracking/``; the rest reaches it through that
    package (lazily, so that loading, estimating and replaying never pull mlflow in)."""
    bad = {m for m in _imports(path) if _is(m, "mlflow")}
    assert not bad, f"{_id(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", OFFLINE, ids=_id)
def test_offline_eval_reads_the_log_through_its_reader(path: Path) -> None:
    """No SQL of its own: the log is read through ``bandit.log.reader`` (the port)."""
    bad = {m for m in _imports(path) if _is(m, "sqlite3", "bandit.log.sqlite.store")}
    assert not bad, f"{_id(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", SERVER, ids=_id)
def test_the_adapter_imports_neither_the_tools_nor_offline_eval(path: Path) -> None:
    bad = {m for m in _imports(path) if _is(m, "offerbandit", "offline_eval", "mlflow", *SIMULATOR)}
    assert not bad, f"{_id(path)} imports {sorted(bad)}"


def _in(path: Path, package: str) -> bool:
    return path.is_relative_to(ROOT / package.replace(".", "/"))


LOG = [p for p in BANDIT if _in(p, "bandit.log")]
LEARN = [p for p in BANDIT if _in(p, "bandit.learn")]


def test_the_inner_packages_are_read() -> None:
    assert ROOT / "bandit" / "log" / "sqlite" / "groupcommit.py" in LOG
    assert ROOT / "bandit" / "learn" / "learning.py" in LEARN


@pytest.mark.parametrize("path", LOG, ids=_id)
def test_the_log_knows_no_policy_pipeline_or_learner(path: Path) -> None:
    """The decision log stores and attributes; it never reaches up to what decides."""
    upward = ("bandit.service", "bandit.choose", "bandit.learn", "bandit.learner")
    bad = {m for m in _imports(path) if _is(m, *upward, "bandit.uplift", "bandit.vwformat")}
    assert not bad, f"{_id(path)} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path", [p for p in BANDIT if not _in(p, "bandit.log") and p.name != "service.py"], ids=_id
)
def test_the_core_talks_to_the_log_through_its_port(path: Path) -> None:
    """Only the service (which builds the default log) names the SQLite implementation."""
    bad = {m for m in _imports(path) if _is(m, "bandit.log.sqlite")}
    assert not bad, f"{_id(path)} imports {sorted(bad)}"


def test_the_group_commit_engine_knows_no_schema() -> None:
    path = ROOT / "bandit" / "log" / "sqlite" / "groupcommit.py"
    core = {m for m in _imports(path) if _is(m, "bandit")}
    assert core <= {"bandit.errors", "bandit.errors.NotReady"}, sorted(core)


@pytest.mark.parametrize("path", LEARN, ids=_id)
def test_the_learning_path_does_not_reach_into_the_choose_path(path: Path) -> None:
    bad = {
        m for m in _imports(path) if _is(m, "bandit.choose", "bandit.service", "bandit.eligibility")
    }
    assert not bad, f"{_id(path)} imports {sorted(bad)}"


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a lazy, a relative and an aliased import are all seen."""
    pkg = tmp_path / "bandit" / "inner"
    pkg.mkdir(parents=True)
    mod = pkg / "m.py"
    mod.write_text(
        "import os\n"
        "def f():\n"
        "    import grpc as g\n"
        "    from ..sim import world\n"
        "    from server.pb import x\n",
        encoding="utf-8",
    )
    found = _imports(mod, root=tmp_path)
    assert {"grpc", "bandit.sim", "bandit.sim.world", "server.pb"} <= found


@pytest.mark.parametrize(
    "module",
    [
        "bandit.service",
        "bandit.sim",
        "offline_eval.estimators",
        "offline_eval.io.logs",
        "offline_eval.io.export",
        "offline_eval.study.study",
        "offline_eval.uplift.analysis",
        "offline_eval.replay.policies",
        "server.app",
    ],
)
def test_core_packages_do_not_import_transport_or_tracking(module: str) -> None:
    """At run time: the core pulls in no transport, tracking or adapter; the adapter no
    tracking, offline package or tool."""
    adapter = module.startswith("server.")
    banned = {"mlflow", "offline_eval", "offerbandit"} | (set() if adapter else {"grpc", "server"})
    banned.discard(module.split(".")[0])
    protobuf = "" if adapter else " or m.startswith('google.protobuf')"
    code = (
        f"import sys, {module}\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {sorted(banned)}{protobuf}]\n"
        f"print(','.join(sorted(bad)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"{module} pulls in {out}"

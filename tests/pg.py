"""The PostgreSQL server the tests use, and a fresh schema per test.

The server is named by ``OFFERBANDIT_TEST_POSTGRES_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/test``). When no server answers, the PostgreSQL tests
are skipped, saying why — unless ``OFFERBANDIT_REQUIRE_POSTGRES=1`` (CI sets it in
``.ci/run``), which makes that a failure: a CI run never passes by skipping them.

Each test gets its own schema (``search_path`` set through the DSN's ``options``), dropped
after the test, so tests never see each other's rows and advisory locks (keyed by schema)
never collide.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

DSN_ENV = "OFFERBANDIT_TEST_POSTGRES_DSN"
REQUIRE_ENV = "OFFERBANDIT_REQUIRE_POSTGRES"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"

_names = itertools.count()
_unreachable: str | None = None


def server_dsn() -> str:
    return os.environ.get(DSN_ENV, DEFAULT_DSN)


def require_server() -> str:
    """The server's DSN; skips (or fails, when required) when it does not answer."""
    global _unreachable
    dsn = server_dsn()
    if _unreachable is None:
        try:
            import psycopg

            with psycopg.connect(dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _unreachable = ""
        except Exception as exc:  # the driver missing or no server: both say why
            _unreachable = f"{type(exc).__name__}: {exc}".strip()
    if _unreachable:
        reason = f"no PostgreSQL server answers at {DSN_ENV}={dsn!r} ({_unreachable})"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 makes these tests mandatory")
        pytest.skip(reason)
    return dsn


def with_schema(dsn: str, schema: str) -> str:
    """``dsn`` with its ``search_path`` set to ``schema``.

    >>> with_schema("postgresql://u@h/db", "t1")
    'postgresql://u@h/db?options=-csearch_path%3Dt1'
    """
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options={quote(f'-csearch_path={schema}', safe='')}"


@contextmanager
def fresh_schema(prefix: str = "t") -> Iterator[str]:
    """A DSN whose ``search_path`` is a new empty schema, dropped afterwards."""
    import psycopg

    dsn = require_server()
    schema = f"ob_{prefix}_{os.getpid()}_{next(_names)}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(dsn, schema)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

"""Fixtures of the pool's tests: one real PostgreSQL server per test session (per xdist worker),
a fresh database per test, and machines as separate acct homes with their own ACCT_HOST_ID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import clean_env
from tests.pool.helpers import init_machine
from tests.pool.machines import Machine
from tests.pool_server import PgServer, running_server, why_not


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    reason = why_not()
    if reason:
        pytest.skip(reason)
    with running_server() as server:
        yield server


@pytest.fixture
def pool_conninfo(pg: PgServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database. libpq reads the password from this process's PGPASSWORD (as it would
    from ~/.pgpass), never from acct."""
    monkeypatch.setenv("PGPASSWORD", pg.password)
    return pg.conninfo(pg.create_database())


@pytest.fixture
def machine_env(tmp_path: Path, pg: PgServer, pool_conninfo: str):  # type: ignore[no-untyped-def]
    """``machine_env("laptop")``: the environment of one machine of the pool (its own HOME)."""

    def make(host: str) -> dict[str, str]:
        home = tmp_path / host
        home.mkdir(mode=0o700, exist_ok=True)
        return clean_env(
            home,
            {
                **pg.env(),
                "ACCT_HOME": str(home / "acct"),
                "ACCT_POOL": pool_conninfo,
                "ACCT_HOST_ID": host,
            },
        )

    return make


@pytest.fixture
def two_machines(machine_env) -> Iterator[tuple[Machine, Machine]]:  # type: ignore[no-untyped-def]
    laptop = machine_env("laptop")
    made = init_machine(laptop)
    desk = {**machine_env("desk"), "ACCT_POOL_KEY": made.key_path}
    machines = (Machine(laptop), Machine(desk))
    try:
        yield machines
    finally:
        for m in machines:
            m.stop()

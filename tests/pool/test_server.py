"""The harness itself: the server runs as an unprivileged user and needs a password."""

from __future__ import annotations

import os
import pwd

import psycopg
import pytest

from tests.pool_server import PG_USER, PgServer


def test_server_runs_as_an_unprivileged_user(pg: PgServer) -> None:
    pid = int((pg.datadir / "postmaster.pid").read_text().split()[0])
    owner = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
    assert owner != "root"
    if os.geteuid() == 0:
        assert owner == PG_USER


def test_server_refuses_a_login_without_the_password(
    pg: PgServer, pool_conninfo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(pool_conninfo, connect_timeout=5, passfile="/nonexistent")
    with psycopg.connect(pool_conninfo, password=pg.password) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
        assert row is not None and row[0] >= 150000

"""Setting the pool up: versioned migrations, the key, the connection and its failures."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from acct.base.errors import EXIT_POOL_UNREACHABLE, ConfigError, PoolError, PoolUnreachable
from acct.base.paths import Paths
from acct.services.pool import connect, core, schema, settings
from tests.pool.helpers import init_machine, open_machine


def test_init_creates_the_schema_and_a_0600_key(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    result = init_machine(env)
    assert (result.schema_before, result.schema_now) == (0, schema.LATEST)
    assert result.key_created
    key = Path(result.key_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    with open_machine(env) as pool:
        assert schema.version(pool.conn) == schema.LATEST
        hosts = pool.conn.execute(b"SELECT host_id FROM machines").fetchall()
        assert hosts == [("laptop",)]


def test_init_again_changes_nothing_and_keeps_the_key(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    first = init_machine(env)
    before = Path(first.key_path).read_bytes()
    again = init_machine(env)
    assert (again.schema_before, again.schema_now, again.key_created) == (
        schema.LATEST,
        schema.LATEST,
        False,
    )
    assert again.key_id == first.key_id
    assert Path(first.key_path).read_bytes() == before


def test_older_acct_refuses_a_newer_schema_naming_both_versions(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    newer = schema.LATEST + 1
    with psycopg.connect(env["ACCT_POOL"], autocommit=True) as conn:
        conn.execute(b"INSERT INTO acct_schema (version, by_acct) VALUES (%s, '9.9')", (newer,))
    with pytest.raises(schema.SchemaTooNew) as e:
        open_machine(env)
    assert f"version {newer}" in e.value.message and f"(version {schema.LATEST})" in e.value.message
    with pytest.raises(schema.SchemaTooNew):
        init_machine(env)


def test_newer_acct_upgrades_an_older_schema(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    later = (*schema.MIGRATIONS, (schema.LATEST + 1, "CREATE TABLE later_table (x integer);"))
    with connect.connect(env["ACCT_POOL"]) as conn:
        assert schema.require(conn, later) == schema.LATEST + 1
        assert schema.version(conn) == schema.LATEST + 1
        assert conn.execute(b"SELECT count(*) FROM later_table").fetchone() == (0,)
        assert schema.migrate(conn, later) == (schema.LATEST + 1, schema.LATEST + 1)


def test_a_pool_never_set_up_says_to_run_init(machine_env) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PoolError, match="no acct schema") as e:
        open_machine(machine_env("laptop"))
    assert e.value.hint and "acct pool init" in e.value.hint


def test_pool_from_the_config_file(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("desk")
    conninfo = env.pop("ACCT_POOL")
    paths = Paths.from_env(env)
    paths.config_dir.mkdir(parents=True)
    paths.config_file.write_text(f"pool = {conninfo!r}\n".replace("'", '"'))
    found = settings.configured(env, paths)
    assert found is not None and found.conninfo == conninfo
    assert init_machine(env).schema_now == schema.LATEST


def test_no_pool_configured_means_none(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "ACCT_HOME": str(tmp_path / "acct")}
    assert settings.configured(env, Paths.from_env(env)) is None


def test_a_password_in_the_connection_string_is_refused_and_not_repeated(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    env["ACCT_POOL"] = "postgresql://acct:hunter2-secret@127.0.0.1:5/db"
    with pytest.raises(ConfigError) as e:
        init_machine(env)
    assert "hunter2" not in e.value.message + (e.value.hint or "")
    assert "pgpass" in (e.value.hint or "")


def test_connection_refused_is_pool_unreachable_with_exit_7(machine_env) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    env = machine_env("laptop")
    env["ACCT_POOL"] = f"host=127.0.0.1 port={port} dbname=acct user=acct"
    with pytest.raises(PoolUnreachable) as e:
        init_machine(env)
    assert e.value.exit_code == EXIT_POOL_UNREACHABLE == 7
    assert f"pool 127.0.0.1:{port}/acct is unreachable" in e.value.message
    assert "\n" not in e.value.message


def test_a_server_that_never_answers_times_out_as_unreachable(machine_env) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)  # accepts the connection, never speaks
        env = machine_env("laptop")
        env["ACCT_POOL"] = f"host=127.0.0.1 port={s.getsockname()[1]} dbname=acct connect_timeout=1"
        with pytest.raises(PoolUnreachable, match="unreachable"):
            init_machine(env)


def test_a_wrong_password_is_unreachable_and_not_repeated(machine_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    monkeypatch.setenv("PGPASSWORD", "not-the-password-xyz")  # libpq reads the process environment
    with pytest.raises(PoolUnreachable, match="password authentication failed") as e:
        init_machine(env)
    assert "not-the-password-xyz" not in e.value.message


def test_host_id_is_made_once_and_kept(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "ACCT_HOME": str(tmp_path / "acct")}
    paths = Paths.from_env(env)
    first = settings.host_id(env, paths)
    assert settings.host_id(env, paths) == first
    assert stat.S_IMODE((paths.state_dir / settings.HOST_ID_FILE).stat().st_mode) == 0o600
    assert settings.host_id({**env, "ACCT_HOST_ID": "ci-runner-7"}, paths) == "ci-runner-7"
    with pytest.raises(ConfigError):
        settings.host_id({**env, "ACCT_HOST_ID": "bad id/with space"}, paths)


def test_startup_without_a_pool_imports_neither_psycopg_nor_cryptography(tmp_path: Path) -> None:
    code = (
        "import runpy, sys\n"
        "sys.argv = ['acct', 'prompt']\n"
        "try:\n    runpy.run_module('acct', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "import acct.services.pool.settings, acct.services.pool.core\n"
        "print(sorted(m for m in ('psycopg', 'cryptography') if m in sys.modules))\n"
    )
    env = {"HOME": str(tmp_path), "ACCT_HOME": str(tmp_path / "acct"), "PATH": os.environ["PATH"]}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert core  # the pool's core module itself is importable without them


def test_two_machines_initialising_one_pool_at_once_apply_each_migration_once(machine_env) -> None:  # type: ignore[no-untyped-def]
    import threading

    laptop = machine_env("laptop")
    desk = {
        **machine_env("desk"),
        "ACCT_POOL_KEY": settings.key_path(laptop, Paths.from_env(laptop)).as_posix(),
    }
    results: dict[str, object] = {}
    start = threading.Barrier(2)

    def run(env: dict[str, str]) -> None:
        start.wait()
        try:
            results[env["ACCT_HOST_ID"]] = init_machine(env)
        except Exception as e:  # noqa: BLE001 - the assertion below shows it
            results[env["ACCT_HOST_ID"]] = e

    threads = [threading.Thread(target=run, args=(e,)) for e in (laptop, desk)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    made = [r for r in results.values() if isinstance(r, core.InitResult)]
    assert len(made) == 2, results
    assert sorted(r.schema_before for r in made) == [0, schema.LATEST]
    assert [r.key_created for r in made].count(True) == 1
    assert made[0].key_id == made[1].key_id
    with psycopg.connect(laptop["ACCT_POOL"]) as conn:
        applied = conn.execute(b"SELECT version FROM acct_schema ORDER BY version").fetchall()
        assert applied == [(n,) for n, _ in schema.MIGRATIONS]

"""``acct pool init`` and ``acct pool status`` as a user runs them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from tests.conftest import REPO
from tests.pool.helpers import add_account, made_up_tokens, open_machine
from tests.pool_server import PgServer


def acct(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acct", *args], env=env, capture_output=True, text=True,
        timeout=60, cwd=REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_pool_init_then_status_lists_machines_and_what_they_hold(machine_env, pg: PgServer) -> None:  # type: ignore[no-untyped-def]
    laptop = {**machine_env("laptop"), **pg.env()}
    made = acct(laptop, "pool", "init")
    assert made.returncode == 0, made.stderr
    assert "schema version 0 -> 4" in made.stdout and "created" in made.stdout
    again = json.loads(acct(laptop, "pool", "init", "--json").stdout)
    assert again["kind"] == "pool-init"
    assert again["schema"] == {"before": 4, "now": 4} and again["key"]["created"] is False
    desk = {**machine_env("desk"), **pg.env(), "ACCT_POOL_KEY": again["key"]["path"]}
    with open_machine(desk) as pool:
        from acct.services.pool import custody

        acc = add_account(pool, "work", made_up_tokens())
        custody.claim(pool, acc.id, target="claude-code", path="/home/d/.claude/.credentials.json")
    st = acct(laptop, "pool", "status", "--json")
    assert st.returncode == 0, st.stderr
    doc = json.loads(st.stdout)
    assert doc["kind"] == "pool-status" and doc["accounts"] == 1 and doc["host_id"] == "laptop"
    machines = {m["host_id"]: m for m in doc["machines"]}
    assert set(machines) == {"laptop", "desk"}
    assert machines["laptop"]["this"] and not machines["desk"]["this"]
    assert [h["account"] for h in machines["desk"]["holds"]] == ["work"]
    # Times as every document gives them: ISO-8601 and epoch seconds.
    (held,) = machines["desk"]["holds"]
    assert isinstance(held["lent_at_epoch"], int) and held["lent_at"].startswith("20")
    assert abs(machines["laptop"]["last_contact_at_epoch"] - time.time()) < 3600
    assert machines["laptop"]["holds"] == []
    text = acct(laptop, "pool", "status").stdout
    assert "desk: ok" in text and "work: lineage" in text
    for run in (made, st):
        assert "sk-ant-" not in run.stdout + run.stderr


def test_pool_unreachable_is_one_line_and_exit_7(machine_env) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**machine_env("laptop"), "ACCT_POOL": f"host=127.0.0.1 port={port} dbname=acct"}
    r = acct(env, "pool", "status")
    assert r.returncode == 7
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"acct: pool 127.0.0.1:{port}/acct is unreachable"
    )


def test_pool_status_without_a_pool_configured_says_how(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    del env["ACCT_POOL"]
    r = acct(env, "pool", "status")
    assert r.returncode == 1
    assert "no pool is configured" in r.stderr and "ACCT_POOL" in r.stderr


def test_a_machine_silent_past_the_lease_shows_as_silent_and_keeps_its_lineage(
    machine_env,
) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    from acct.app import pool as use
    from acct.base.paths import Paths
    from acct.services.pool import custody
    from tests.pool.helpers import init_machine

    laptop = machine_env("laptop")
    made = init_machine(laptop)
    desk = {**machine_env("desk"), "ACCT_POOL_KEY": made.key_path}
    with open_machine(desk) as pool:
        acc = add_account(pool, "work", made_up_tokens())
        custody.claim(pool, acc.id, target="claude-code", path="/home/d/.claude/.credentials.json")
    with psycopg.connect(laptop["ACCT_POOL"], autocommit=True) as conn:
        conn.execute(
            "UPDATE machines SET last_contact = now() - interval '16 minutes' "
            "WHERE host_id = 'desk'"
        )
    st = use.status(laptop, Paths.from_env(laptop))
    machines = {m.host_id: m for m in st.machines}
    assert machines["desk"].silent and not machines["laptop"].silent
    assert [h.account for h in machines["desk"].holds] == ["work"]


def test_shell_completion_names_the_pools_accounts_on_every_machine(
    machine_env, pg: PgServer
) -> None:  # type: ignore[no-untyped-def]
    """Completion reads no pool (it runs on every <Tab>): each machine keeps the names it last
    read from the pool, so they complete there too, and a removal shows at the next read."""
    laptop = {**machine_env("laptop"), **pg.env()}
    init = acct(laptop, "pool", "init", "--json")
    assert init.returncode == 0, init.stderr
    key = json.loads(init.stdout)["key"]["path"]
    desk = {**machine_env("desk"), **pg.env(), "ACCT_POOL_KEY": key}
    with open_machine(desk) as pool:
        add_account(pool, "work", made_up_tokens())
        add_account(pool, "side-2", made_up_tokens())
    assert acct(desk, "__complete", "accounts").stdout == ""  # nothing read from the pool yet
    for env in (laptop, desk):
        assert acct(env, "list").returncode == 0
        assert acct(env, "__complete", "accounts").stdout.split() == ["side-2", "work"]
        assert acct(env, "__complete", "accounts", "wo").stdout == "work\n"
    assert acct(laptop, "remove", "side-2", "--yes").returncode == 0
    assert acct(desk, "list").returncode == 0
    assert acct(desk, "__complete", "accounts").stdout.split() == ["work"]

"""A machine killed mid-lend and a database restarted mid-run leave no torn state."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from acct.base.errors import PoolUnreachable
from acct.services.pool import accounts, custody
from tests.pool.helpers import add_account, made_up_tokens, open_machine, waits_at_lock
from tests.pool.machines import Machine
from tests.pool_server import PgServer

PATH = "/home/x/.claude/.credentials.json"
_HOLD = 4242


def _wait_for_waiter(control: psycopg.Connection[tuple[object, ...]], objid: int) -> None:
    deadline = time.monotonic() + 30
    while not waits_at_lock(control, objid):
        assert time.monotonic() < deadline, "the machine never reached the point"
        time.sleep(0.005)


def test_a_machine_killed_after_recording_custody_but_before_commit_leaves_the_account_free(
    machine_env, two_machines: tuple[Machine, Machine]
) -> None:  # type: ignore[no-untyped-def]
    laptop, desk = two_machines
    env = machine_env("laptop")
    with open_machine(env) as pool:
        acc = add_account(pool, "work", made_up_tokens())
    with psycopg.connect(env["ACCT_POOL"], autocommit=True) as control:
        # Stop the lend inside its transaction, right after its custody row went in.
        control.execute(
            "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_advisory_xact_lock_shared({_HOLD}); RETURN NEW; END $$"
        )
        control.execute(
            "CREATE TRIGGER hold AFTER INSERT ON custody FOR EACH ROW EXECUTE FUNCTION hold()"
        )
        control.execute("SELECT pg_advisory_lock(%s)", (_HOLD,))
        control.execute("SELECT pg_advisory_lock(1)")  # the worker's gate: let it through at once
        control.execute("SELECT pg_advisory_unlock(1)")
        laptop.send(f"claim 1 {acc.id}")
        _wait_for_waiter(control, _HOLD)
        os.kill(laptop.proc.pid, signal.SIGKILL)
        laptop.proc.wait(timeout=10)
        control.execute("DROP TRIGGER hold ON custody")
        control.execute("SELECT pg_advisory_unlock(%s)", (_HOLD,))
        # The server rolls the dead machine's transaction back: no custody, and desk can lend.
        deadline = time.monotonic() + 30
        while control.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'acct' "
            "AND state LIKE 'idle in transaction%%'"
        ).fetchone() != (0,):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert control.execute("SELECT count(*) FROM custody").fetchone() == (0,)
    desk.send(f"claim 2 {acc.id}")
    assert desk.ask_line() == "won"


def test_the_database_restarted_mid_run_is_unreachable_then_fine_again(
    machine_env, pg: PgServer
) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    from tests.pool.helpers import init_machine

    init_machine(env)
    with open_machine(env) as pool:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)
        custody.claim(pool, acc.id, target="claude-code", path=PATH)
        pg.restart_immediate()
        with pytest.raises(PoolUnreachable) as e:
            custody.release(pool, acc.id, lineage=tokens.lineage_fingerprint)
        assert e.value.exit_code == 7
    with open_machine(env) as pool:
        back = accounts.get(pool.conn, pool.key, acc.id)
        assert back.custody is not None and back.custody.host_id == "laptop"
        assert back.account.tokens == tokens
        released = custody.release(pool, acc.id, lineage=tokens.lineage_fingerprint)
        assert released.custody is None

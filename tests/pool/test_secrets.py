"""Secrets at rest: the database, and a dump of it, hold only ciphertext bound to its row."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from acct.base.paths import Paths
from acct.services.pool import accounts, crypto, settings
from tests.fake_anthropic.client import FakeAnthropic
from tests.pool.helpers import (
    add_account,
    init_machine,
    made_up_tokens,
    minted_tokens,
    open_machine,
)
from tests.pool_server import PgServer


def test_pg_dump_of_a_pool_with_accounts_holds_none_of_the_tokens(
    machine_env, pg: PgServer, fake: FakeAnthropic
) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    secrets: list[str] = []
    with open_machine(env) as pool:
        for name in ("work", "personal", "team"):
            who = fake.add_account(email=f"{name}@example.com", plan="claude_max")
            tokens = minted_tokens(fake.mint(who["uuid"]))
            add_account(pool, name, tokens)
            secrets += [tokens.access, tokens.refresh or ""]
        key_text = pool.key.path.read_text()
    dump = pg.client("pg_dump", "--no-owner", env["ACCT_POOL"]).stdout
    assert "CREATE TABLE public.accounts" in dump and "work@example.com" in dump
    leaked = [s[:12] for s in secrets if s and s in dump]
    assert leaked == []
    # Nor any recognisable piece of one, nor the key.
    assert "sk-ant-" not in dump
    assert key_text.split(":", 1)[1].strip() not in dump


def test_tokens_read_back_as_they_were_stored(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    with open_machine(env) as pool:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)
        back = accounts.get(pool.conn, pool.key, acc.id).account
    assert back.tokens == tokens
    assert back.name == "work" and back.email == "work@example.com"


def test_a_ciphertext_moved_to_another_row_does_not_open(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    with open_machine(env) as pool:
        a = add_account(pool, "work", made_up_tokens())
        b = add_account(pool, "personal", made_up_tokens())
        with pool.conn.transaction():
            pool.conn.execute(
                b"UPDATE accounts SET refresh_sealed = (SELECT refresh_sealed FROM accounts "
                b"WHERE id = %s) WHERE id = %s",
                (a.id, b.id),
            )
        with pytest.raises(crypto.PoolKeyError, match="moved from"):
            accounts.get(pool.conn, pool.key, b.id)
        # Moved to another column of its own row: refused too.
        with pool.conn.transaction():
            pool.conn.execute(
                b"UPDATE accounts SET access_sealed = refresh_sealed WHERE id = %s", (a.id,)
            )
        with pytest.raises(crypto.PoolKeyError):
            accounts.get(pool.conn, pool.key, a.id)


def test_a_machine_with_another_key_is_refused_clearly(machine_env) -> None:  # type: ignore[no-untyped-def]
    laptop, desk = machine_env("laptop"), machine_env("desk")
    init_machine(laptop)
    own = crypto.create_key(settings.key_path(desk, Paths.from_env(desk)))
    with pytest.raises(crypto.PoolKeyError, match="is not this pool's key") as e:
        open_machine(desk)
    raw = own.path.read_text().split(":", 1)[1].strip()
    assert raw not in e.value.message + (e.value.hint or "")
    assert own.key_id in e.value.message


def test_a_machine_without_the_key_is_told_to_copy_it(machine_env) -> None:  # type: ignore[no-untyped-def]
    laptop, desk = machine_env("laptop"), machine_env("desk")
    init_machine(laptop)
    with pytest.raises(crypto.PoolKeyError, match="no pool key at") as e:
        open_machine(desk)
    assert e.value.hint and "copy the pool key" in e.value.hint


def test_a_copied_key_named_by_acct_pool_key_opens_the_pool(machine_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    laptop, desk = machine_env("laptop"), machine_env("desk")
    made = init_machine(laptop)
    with open_machine(laptop) as pool:
        tokens = made_up_tokens()
        acc = add_account(pool, "work", tokens)
    copy = tmp_path / "elsewhere" / "pool.key"
    copy.parent.mkdir()
    shutil.copy(made.key_path, copy)
    with open_machine({**desk, "ACCT_POOL_KEY": str(copy)}) as pool:
        assert accounts.get(pool.conn, pool.key, acc.id).account.tokens == tokens


def test_key_never_shows_in_repr(tmp_path: Path) -> None:
    key = crypto.create_key(tmp_path / "k")
    raw = (tmp_path / "k").read_text().split(":", 1)[1].strip()
    assert raw not in repr(key) and raw not in str(key) and key.key_id in repr(key)
    with pytest.raises(crypto.PoolKeyError, match="exists already"):
        crypto.create_key(tmp_path / "k")


def test_a_damaged_key_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("acct-pool-key-v1:@@@not base64@@@\n")
    with pytest.raises(crypto.PoolKeyError, match="damaged"):
        crypto.load_key(tmp_path / "k")


def test_plaintext_is_not_in_the_table(machine_env) -> None:  # type: ignore[no-untyped-def]
    env = machine_env("laptop")
    init_machine(env)
    with open_machine(env) as pool:
        tokens = made_up_tokens()
        add_account(pool, "work", tokens)
    with psycopg.connect(env["ACCT_POOL"]) as conn:
        row = conn.execute(b"SELECT access_sealed, refresh_sealed FROM accounts").fetchone()
    assert row is not None
    assert tokens.access.encode() not in bytes(row[0])
    assert tokens.refresh is not None and tokens.refresh.encode() not in bytes(row[1])

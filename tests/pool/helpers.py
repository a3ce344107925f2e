"""Small helpers of the pool's tests: machines, accounts and their tokens."""

from __future__ import annotations

import secrets
import time
from typing import Any

from acct.base.models import Account, Tokens
from acct.base.paths import Paths
from acct.services.pool import accounts, core


def open_machine(env: dict[str, str]) -> core.Pool:
    return core.open_pool(env, Paths.from_env(env))


def init_machine(env: dict[str, str]) -> core.InitResult:
    return core.init_pool(env, Paths.from_env(env))


def made_up_tokens() -> Tokens:
    """Tokens shaped like Claude's, made here (no server needed where none is spent)."""
    return Tokens(
        access="sk-ant-oat01-" + secrets.token_urlsafe(40),
        refresh="sk-ant-ort01-" + secrets.token_urlsafe(40),
        expires_at=int(time.time()) + 8 * 3600,
        scopes=("user:inference", "user:profile"),
        obtained_at=int(time.time()),
    )


def minted_tokens(answer: dict[str, Any]) -> Tokens:
    """The fake's mint answer as Tokens."""
    return Tokens(
        access=answer["access_token"],
        refresh=answer["refresh_token"],
        expires_at=int(time.time()) + int(answer.get("expires_in", 28800)),
        scopes=tuple(str(answer.get("scope", "user:inference")).split()),
        obtained_at=int(time.time()),
    )


def add_account(pool: core.Pool, name: str, tokens: Tokens, **fields: Any) -> Account:
    acc = Account(name=name, email=f"{name}@example.com", uuid=secrets.token_hex(8), tokens=tokens,
                  **fields)  # fmt: skip
    with pool.conn.transaction():
        accounts.put(pool.conn, pool.key, acc)
    return acc


def waits_at_lock(control: Any, objid: int) -> bool:
    """Whether a session waits for the advisory lock ``objid`` (a machine stopped at a point)."""
    row = control.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s",
        (objid,),
    ).fetchone()
    return row is not None and int(str(row[0])) >= 1

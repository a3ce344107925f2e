"""Accounts in and out of the pool's rows, their secrets sealed per row and column."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from acct.base.errors import NotFound
from acct.base.models import Account, Holder, Tokens
from acct.services.pool.crypto import PoolKey

if TYPE_CHECKING:
    from acct.services.pool.connect import Conn

_COLUMNS = (
    "id, name, kind, uuid, org_uuid, email, display_name, org_name, plan, tier, enabled, "
    "needs_login, added_at, last_used_at, access_sealed, refresh_sealed, api_key_sealed, "
    "extra_sealed, expires_at, scopes, obtained_at, lineage, generation"
)
_CUSTODY = "c.host_id, c.target, c.path, c.lineage, extract(epoch FROM c.since)::bigint"
SELECT = (
    f"SELECT {', '.join('a.' + c.strip() for c in _COLUMNS.split(','))}, {_CUSTODY} "
    "FROM accounts a LEFT JOIN custody c ON c.account_id = a.id"
)


@dataclass(frozen=True)
class Custody:
    """Which machine's file holds the account's lineage (pool-wide custody)."""

    host_id: str
    target: str
    path: str
    lineage: str
    since: int


@dataclass(frozen=True)
class Pooled:
    """An account as the pool has it: ``generation`` bumps on every change of its tokens or
    custody; ``custody`` is None while the pool itself holds the lineage."""

    account: Account
    generation: int
    custody: Custody | None

    @property
    def lineage(self) -> str | None:
        tokens = self.account.tokens
        return tokens.lineage_fingerprint if tokens else None


def _seal(key: PoolKey, value: str | None, column: str, account_id: str) -> bytes | None:
    if value is None:
        return None
    return key.seal(value, table="accounts", column=column, row=account_id)


def _open(key: PoolKey, value: Any, column: str, account_id: str) -> str | None:
    if value is None:
        return None
    return key.open(bytes(value), table="accounts", column=column, row=account_id)


def sealed_tokens(key: PoolKey, account_id: str, tokens: Tokens | None) -> dict[str, Any]:
    """The token columns of an account row (all None without tokens)."""
    if tokens is None:
        return dict.fromkeys(
            ("access_sealed", "refresh_sealed", "expires_at", "scopes", "obtained_at", "lineage")
        ) | {"scopes": []}
    return {
        "access_sealed": _seal(key, tokens.access, "access", account_id),
        "refresh_sealed": _seal(key, tokens.refresh, "refresh", account_id),
        "expires_at": tokens.expires_at,
        "scopes": list(tokens.scopes),
        "obtained_at": tokens.obtained_at,
        "lineage": tokens.lineage_fingerprint,
    }


def _row_values(key: PoolKey, a: Account) -> dict[str, Any]:
    extra = {
        "account": dict(a.extra),
        "tokens": dict(a.tokens.extra) if a.tokens else {},
        "provider": a.provider,
    }
    return {
        "id": a.id,
        "name": a.name,
        "kind": a.kind,
        "uuid": a.uuid,
        "org_uuid": a.org_uuid,
        "email": a.email,
        "display_name": a.display_name,
        "org_name": a.org_name,
        "plan": a.plan,
        "tier": a.tier,
        "enabled": a.enabled,
        "needs_login": a.needs_login,
        "added_at": a.added_at,
        "last_used_at": a.last_used_at,
        "api_key_sealed": _seal(key, a.api_key, "api_key", a.id),
        "extra_sealed": _seal(key, json.dumps(extra), "extra", a.id),
        **sealed_tokens(key, a.id, a.tokens),
    }


def put(conn: Conn, key: PoolKey, a: Account) -> None:
    """Insert the account, or replace its row (not its custody: see ``custody``)."""
    values = _row_values(key, a)
    cols = ", ".join(values)
    marks = ", ".join(f"%({c})s" for c in values)
    updates = ", ".join(f"{c} = excluded.{c}" for c in values if c != "id")
    sql = (
        f"INSERT INTO accounts ({cols}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET "
        f"{updates}, generation = accounts.generation + 1, updated_at = now()"
    )
    conn.execute(sql.encode(), values)


def _tokens(key: PoolKey, r: tuple[Any, ...], extra: dict[str, Any]) -> Tokens | None:
    account_id = r[0]
    access = _open(key, r[14], "access", account_id)
    if access is None:
        return None
    return Tokens(
        access=access,
        refresh=_open(key, r[15], "refresh", account_id),
        expires_at=int(r[18] or 0),
        scopes=tuple(r[19] or ()),
        obtained_at=None if r[20] is None else int(r[20]),
        extra=extra.get("tokens", {}),
    )


def from_row(key: PoolKey, r: tuple[Any, ...]) -> Pooled:
    account_id = r[0]
    extra_text = _open(key, r[17], "extra", account_id)
    extra: dict[str, Any] = json.loads(extra_text) if extra_text else {}
    custody = Custody(r[23], r[24], r[25], r[26], int(r[27])) if r[23] is not None else None
    holder = (
        Holder(custody.target, custody.path, custody.lineage, custody.since,
               extra={"host_id": custody.host_id})
        if custody else None
    )  # fmt: skip
    acc = Account(
        id=account_id,
        name=r[1],
        kind=r[2],
        provider="chatgpt" if extra.get("provider") == "chatgpt" else "anthropic",
        uuid=r[3],
        org_uuid=r[4],
        email=r[5],
        display_name=r[6],
        org_name=r[7],
        plan=r[8],
        tier=r[9],
        enabled=bool(r[10]),
        needs_login=bool(r[11]),
        added_at=int(r[12]),
        last_used_at=int(r[13]),
        tokens=_tokens(key, r, extra),
        api_key=_open(key, r[16], "api_key", account_id),
        holder=holder,
        extra=extra.get("account", {}),
    )
    return Pooled(acc, int(r[22]), custody)


def get(conn: Conn, key: PoolKey, account_id: str, *, lock: bool = False) -> Pooled:
    """The account's row and custody. ``lock`` first takes the account's row lock (inside a
    transaction, until it ends), then reads in a statement of its own.

    The separate statement matters: a ``SELECT ... FOR UPDATE`` that waited for another
    transaction re-checks the locked row only, and would hand back the custody it saw *before*
    the wait (PostgreSQL's EvalPlanQual does not re-read the outer-joined table). Read after the
    lock, in READ COMMITTED, the custody the other transaction committed is seen.
    """
    if lock:
        found = conn.execute(b"SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (account_id,))
        if found.fetchone() is None:
            raise NotFound(f"the pool has no account {account_id}")
    row = conn.execute((SELECT + " WHERE a.id = %s").encode(), (account_id,)).fetchone()
    if row is None:
        raise NotFound(f"the pool has no account {account_id}")
    return from_row(key, row)


def all_accounts(conn: Conn, key: PoolKey) -> list[Pooled]:
    rows = conn.execute((SELECT + " ORDER BY a.name").encode()).fetchall()
    return [from_row(key, r) for r in rows]

"""A machine's accounts into the pool (``acct pool init`` on the first machine, ``acct pool join``
on the others), deduplicated by (account uuid, organization).

For each local account, in its own transaction:
- unknown to the pool: added, with its custody when a file on this machine holds its lineage;
- known with the same lineage: nothing to do (the pool's id is the one to use from now on);
- known with another lineage: the pool keeps its own, and the outcome says so: two lineages of
  one account are never kept as two live ones. The local one stays where it is, unused by the
  pool, for the caller to report (its tokens may still work in the file that holds them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from acct.base.models import Account
from acct.services.pool import accounts
from acct.services.pool import connect as pg
from acct.services.pool.custody import STORE_LOCK

if TYPE_CHECKING:
    from acct.services.pool.core import Pool

Outcome = Literal["added", "same", "other_lineage"]


@dataclass(frozen=True)
class Merged:
    local_id: str
    pool_id: str  # the account's id in the pool (the local one maps to it)
    name: str  # its name in the pool
    outcome: Outcome


def _free_name(pool: Pool, wanted: str) -> str:
    taken = {
        str(r[0])
        for r in pool.conn.execute(
            b"SELECT name FROM accounts WHERE name = %s OR name LIKE %s", (wanted, wanted + "-%")
        ).fetchall()
    }
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"


def _same_identity(pool: Pool, uuid: str, org_uuid: str | None) -> tuple[object, ...] | None:
    """The pool's account of this identity, by the rule ``Account.same_identity`` follows: the
    same account uuid, and the same organization where both name one (an unknown organization
    matches any)."""
    return pool.conn.execute(
        b"SELECT id FROM accounts WHERE uuid = %s "
        b"AND (org_uuid IS NULL OR %s::text IS NULL OR org_uuid = %s) ORDER BY name LIMIT 1",
        (uuid, org_uuid, org_uuid),
    ).fetchone()


def _one(pool: Pool, acc: Account) -> Merged:
    with pool.conn.transaction():
        # One identity at a time, pool-wide: two machines joining with the same account agree.
        # The store's lock too: the merge changes accounts and custody like any store write.
        pool.conn.execute(b"SELECT pg_advisory_xact_lock(hashtext(%s))", (STORE_LOCK,))
        row = None if not acc.uuid else _same_identity(pool, acc.uuid, acc.org_uuid)
        if row is not None:
            known = accounts.get(pool.conn, pool.key, str(row[0]), lock=True)
            mine = acc.tokens.lineage_fingerprint if acc.tokens else None
            outcome: Outcome = "same" if mine == known.lineage else "other_lineage"
            return Merged(acc.id, known.account.id, known.account.name, outcome)
        name = _free_name(pool, acc.name)
        added = acc.copy(name=name, holder=None)
        accounts.put(pool.conn, pool.key, added)
        if acc.holder is not None and acc.tokens is not None:
            pool.conn.execute(
                b"INSERT INTO custody (account_id, host_id, target, path, lineage) "
                b"VALUES (%s, %s, %s, %s, %s)",
                (acc.id, pool.host_id, acc.holder.target, acc.holder.path, acc.holder.fingerprint),
            )
        return Merged(acc.id, acc.id, name, "added")


def merge(pool: Pool, local: Iterable[Account]) -> list[Merged]:
    """Every local account into the pool (see the module docstring)."""
    with pg.errors(pool.where):
        return [_one(pool, acc) for acc in local]

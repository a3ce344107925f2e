"""Live ``acct exec`` sessions in the pool, and their heartbeats.

A heartbeat says this machine is alive (``machines.last_contact``) and asks which of the
lineages it lent are still its own: a machine the pool reclaimed while it was silent finds out
here, at its next contact, and must stop using those lineages.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from acct.services.pool import connect as pg
from acct.services.state import SessionRow

if TYPE_CHECKING:
    from acct.services.pool.core import Pool


@dataclass(frozen=True)
class PoolSession:
    id: str
    host_id: str
    pid: int
    target: str
    path: str
    account_id: str | None
    started_at: float
    heartbeat_at: float


def start(
    pool: Pool, session_id: str, *, pid: int, target: str, path: str, account_id: str | None
) -> None:
    now = time.time()
    with pg.errors(pool.where), pool.conn.transaction():
        pool.conn.execute(
            b"INSERT INTO sessions (id, host_id, pid, target, path, account_id, started_at, "
            b"heartbeat_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (session_id, pool.host_id, pid, target, path, account_id, now, now),
        )
        pool.conn.execute(
            b"UPDATE machines SET last_contact = now() WHERE host_id = %s", (pool.host_id,)
        )


def ensure(pool: Pool, row: SessionRow) -> None:
    """The session's row, added again if the pool does not have it (it was started while the
    pool was unreachable, or the pool was restored from an older backup)."""
    now = time.time()
    with pg.errors(pool.where), pool.conn.transaction():
        known = pool.conn.execute(
            b"SELECT 1 FROM accounts WHERE id = %s", (row.account_id,)
        ).fetchone()
        pool.conn.execute(
            b"INSERT INTO sessions (id, host_id, pid, target, path, account_id, started_at, "
            b"heartbeat_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
            b"SET account_id = coalesce(excluded.account_id, sessions.account_id), "
            b"heartbeat_at = excluded.heartbeat_at",
            (row.id, pool.host_id, row.pid, row.target, row.path,
             row.account_id if known else None, row.started_at, now),
        )  # fmt: skip


def heartbeat(pool: Pool, session_id: str | None, lent: Mapping[str, str]) -> set[str]:
    """Alive; returns the accounts of ``lent`` (account id -> lineage this machine lent) whose
    custody this machine lost."""
    with pg.errors(pool.where), pool.conn.transaction():
        pool.conn.execute(
            b"UPDATE machines SET last_contact = now() WHERE host_id = %s", (pool.host_id,)
        )
        if session_id is not None:
            pool.conn.execute(
                b"UPDATE sessions SET heartbeat_at = %s WHERE id = %s", (time.time(), session_id)
            )
        rows = pool.conn.execute(
            b"SELECT account_id, lineage FROM custody WHERE host_id = %s", (pool.host_id,)
        ).fetchall()
    still = {(str(r[0]), str(r[1])) for r in rows}
    return {aid for aid, lineage in lent.items() if (aid, lineage) not in still}


def end(pool: Pool, session_id: str) -> None:
    with pg.errors(pool.where):
        pool.conn.execute(b"DELETE FROM sessions WHERE id = %s", (session_id,))


def live(pool: Pool) -> list[PoolSession]:
    with pg.errors(pool.where):
        rows = pool.conn.execute(
            b"SELECT id, host_id, pid, target, path, account_id, started_at, heartbeat_at "
            b"FROM sessions ORDER BY started_at"
        ).fetchall()
    return [PoolSession(*r) for r in rows]

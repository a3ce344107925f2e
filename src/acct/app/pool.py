"""Use cases of the pool: set it up (``acct pool init``) and see it (``acct pool status``).

Accounts stay in the local store until the commands are switched over to the pool: ``init``
creates the schema and the key, and does not copy any account (a copy would be a second live
holder of its lineage while this machine's acct still spends it locally).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from acct.base.paths import Paths
from acct.services.pool import accounts, core, schema
from acct.services.pool import connect as pg

LEASE_TIMEOUT_S = 15 * 60  # a machine silent for longer shows as silent (it keeps its lineages)


@dataclass(frozen=True)
class Held:
    account: str
    target: str
    path: str
    lineage: str
    since: int


@dataclass(frozen=True)
class MachineStatus:
    host_id: str
    hostname: str | None
    last_contact: float
    silent: bool
    this: bool
    sessions: int
    holds: tuple[Held, ...]


@dataclass(frozen=True)
class PoolStatus:
    where: str
    schema_version: int
    key_id: str
    host_id: str
    accounts: int
    machines: tuple[MachineStatus, ...]


def init(env: Mapping[str, str], paths: Paths) -> core.InitResult:
    return core.init_pool(env, paths)


def _machines(pool: core.Pool) -> list[tuple[str, str | None, float]]:
    rows = pool.conn.execute(
        b"SELECT host_id, hostname, extract(epoch FROM last_contact)::float8 FROM machines "
        b"WHERE left_at IS NULL ORDER BY host_id"
    ).fetchall()
    return [(str(r[0]), r[1], float(r[2])) for r in rows]


def _sessions(pool: core.Pool) -> dict[str, int]:
    rows = pool.conn.execute(b"SELECT host_id, count(*) FROM sessions GROUP BY host_id").fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def status(
    env: Mapping[str, str], paths: Paths, *, lease_timeout: float = LEASE_TIMEOUT_S
) -> PoolStatus:
    now = time.time()
    with core.open_pool(env, paths) as pool, pg.errors(pool.where):
        pooled = accounts.all_accounts(pool.conn, pool.key)
        holds: dict[str, list[Held]] = {}
        for p in pooled:
            if p.custody is not None:
                c = p.custody
                held = Held(p.account.name, c.target, c.path, c.lineage, c.since)
                holds.setdefault(c.host_id, []).append(held)
        sessions = _sessions(pool)
        machines = tuple(
            MachineStatus(
                host,
                hostname,
                contact,
                now - contact > lease_timeout,
                host == pool.host_id,
                sessions.get(host, 0),
                tuple(holds.get(host, ())),
            )  # fmt: skip
            for host, hostname, contact in _machines(pool)
        )
        return PoolStatus(
            pool.where, schema.version(pool.conn), pool.key.key_id, pool.host_id, len(pooled),
            machines,
        )  # fmt: skip

"""Use cases of the pool: set it up and move this machine's accounts in (``acct pool init``,
``acct pool join``), see it (``status``), take a machine out (``leave``) or declare one gone
(``reclaim``).

Moving accounts in: the local store stays locked while each account goes into the pool with its
custody (one transaction each; an account already there with the same identity is not added
twice), and only when all are in does the local store give them up (it keeps a note that they
live in the pool). A failure midway leaves the local store as it was, and running the command
again finishes the move: nothing is lost and no lineage is left with two live holders.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from acct.base.errors import AcctError, HeldByTarget, NotFound, PoolError, UsageError
from acct.base.models import Account
from acct.base.paths import Paths
from acct.services import custody
from acct.services.context import Ctx
from acct.services.pool import accounts, core, merge, schema
from acct.services.pool import connect as pg
from acct.services.pool import custody as pool_custody
from acct.services.store import Store

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
    live: tuple[LiveSession, ...] = ()


@dataclass(frozen=True)
class PoolStatus:
    where: str
    schema_version: int
    key_id: str
    host_id: str
    accounts: int
    machines: tuple[MachineStatus, ...]


@dataclass(frozen=True)
class Moved:
    """One local account, and what became of it in the pool."""

    name: str  # its local name
    pool_name: str
    outcome: merge.Outcome  # added | same | other_lineage
    held: str | None  # the local file that holds its lineage, if one does


@dataclass(frozen=True)
class JoinResult:
    where: str
    host_id: str
    moved: tuple[Moved, ...]
    init: core.InitResult | None = None


def init(env: Mapping[str, str], paths: Paths) -> JoinResult:
    """Create (or upgrade) the pool and its key, then move this machine's accounts in."""
    made = core.init_pool(env, paths)
    joined = join(env, paths)
    return JoinResult(joined.where, joined.host_id, joined.moved, made)


def join(env: Mapping[str, str], paths: Paths) -> JoinResult:
    """Move this machine's accounts into an existing pool (see the module docstring)."""
    local = Store(paths)
    with core.open_pool(env, paths, rejoin=True) as pool, local.transaction() as accounts:
        mine = [a for a in accounts]
        done = merge.merge(pool, mine)
        by_id = {a.id: a for a in mine}
        moved = tuple(_moved(by_id[m.local_id], m) for m in done)
        if mine:
            note = dict(accounts.extra.get(MOVED_KEY) or {})
            names = list(note.get("accounts", [])) + [a.name for a in mine]
            accounts.extra[MOVED_KEY] = {"pool": pool.where, "at": int(time.time()),
                                         "accounts": names}  # fmt: skip
            for a in mine:
                accounts.remove(a.name)
        return JoinResult(pool.where, pool.host_id, moved)


def _moved(acc: Account, m: merge.Merged) -> Moved:
    return Moved(acc.name, m.name, m.outcome, acc.holder.path if acc.holder else None)


# The local store's note that its accounts moved into a pool (a top-level table of the file).
MOVED_KEY = "moved_to_pool"


@dataclass(frozen=True)
class LeaveResult:
    where: str
    host_id: str
    returned: tuple[str, ...]  # accounts whose lineage came back from this machine's files


def leave(ctx: Ctx) -> LeaveResult:
    """Take this machine out of the pool: every lineage lent to a file here goes back to the
    pool first; refused, naming the account and why, when one cannot (a running session's tool
    holds it, or the tool rotated it: leaving would strand it)."""
    host = ctx.host_id
    if host is None:
        raise PoolError(
            "no pool is configured", hint='set ACCT_POOL or pool = "..." in config.toml'
        )
    held = [
        a for a in ctx.store.read() if a.holder and custody.other_machine(ctx, a.holder) is None
    ]
    returned: list[str] = []
    for acc in held:
        try:
            custody.reclaim(ctx, acc.id)
        except AcctError as e:
            raise HeldByTarget(
                f"this machine cannot leave the pool yet: {e.message}",
                hint=e.hint or "end the sessions that use it, then try again",
            ) from None
        returned.append(acc.name)
    with core.open_pool(ctx.env, ctx.paths) as pool, pg.errors(pool.where):
        left = pool.conn.execute(
            b"SELECT count(*) FROM custody WHERE host_id = %s", (pool.host_id,)
        ).fetchone()
        if left and int(left[0]):
            raise HeldByTarget(
                f"this machine still holds {left[0]} lineage(s) of the pool", hint="try again"
            )
        with pool.conn.transaction():
            pool.conn.execute(b"DELETE FROM sessions WHERE host_id = %s", (pool.host_id,))
            pool.conn.execute(
                b"UPDATE machines SET left_at = now() WHERE host_id = %s", (pool.host_id,)
            )
        return LeaveResult(pool.where, pool.host_id, tuple(returned))


def reclaim(
    ctx: Ctx, host: str, *, account: str | None = None, force: bool = False
) -> list[pool_custody.Reclaimed]:
    """Declare machine ``host`` gone (``acct pool reclaim``): see ``custody.reclaim`` in the
    pool's services. Refused for this machine, and for one that is not silent unless forced."""
    if host == ctx.host_id:
        raise UsageError(f"{host} is this machine", hint="`acct pool leave` takes this machine out")
    lease = ctx.config.lease_timeout
    with core.open_pool(ctx.env, ctx.paths) as pool, pg.errors(pool.where):
        row = pool.conn.execute(
            b"SELECT extract(epoch FROM now() - last_contact)::float8 FROM machines "
            b"WHERE host_id = %s",
            (host,),
        ).fetchone()
        if row is None:
            raise NotFound(f"the pool has no machine {host!r}", hint="see `acct pool status`")
        if float(row[0]) < lease and not force:
            raise UsageError(
                f"machine {host} was in contact {int(row[0])}s ago (the lease is {int(lease)}s): "
                "its tools may be running",
                hint="wait until it is silent, or pass --force if you know it is gone",
            )
        account_id = None
        if account is not None:
            found = pool.conn.execute(
                b"SELECT id FROM accounts WHERE name = %s", (account,)
            ).fetchone()
            if found is None:
                raise NotFound(f"the pool has no account named {account!r}")
            account_id = str(found[0])
    with core.open_pool(ctx.env, ctx.paths) as pool:
        return pool_custody.reclaim(pool, host, account_id=account_id)


def _machines(pool: core.Pool) -> list[tuple[str, str | None, float]]:
    rows = pool.conn.execute(
        b"SELECT host_id, hostname, extract(epoch FROM last_contact)::float8 FROM machines "
        b"WHERE left_at IS NULL ORDER BY host_id"
    ).fetchall()
    return [(str(r[0]), r[1], float(r[2])) for r in rows]


@dataclass(frozen=True)
class LiveSession:
    pid: int
    target: str
    account: str | None
    started_at: float
    heartbeat_at: float


def _sessions(pool: core.Pool) -> dict[str, list[LiveSession]]:
    rows = pool.conn.execute(
        b"SELECT s.host_id, s.pid, s.target, a.name, s.started_at, s.heartbeat_at FROM sessions s "
        b"LEFT JOIN accounts a ON a.id = s.account_id ORDER BY s.started_at"
    ).fetchall()
    out: dict[str, list[LiveSession]] = {}
    for r in rows:
        out.setdefault(str(r[0]), []).append(
            LiveSession(int(r[1]), str(r[2]), r[3], float(r[4]), float(r[5]))
        )
    return out


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
                len(sessions.get(host, ())),
                tuple(holds.get(host, ())),
                tuple(sessions.get(host, ())),
            )  # fmt: skip
            for host, hostname, contact in _machines(pool)
        )
        return PoolStatus(
            pool.where, schema.version(pool.conn), pool.key.key_id, pool.host_id, len(pooled),
            machines,
        )  # fmt: skip

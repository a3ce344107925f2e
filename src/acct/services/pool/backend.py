"""The pool behind acct's own interfaces: a ``Store`` and a ``State`` whose data live in
PostgreSQL, so every command works on the pool without knowing it (``Ctx`` picks the backend).

- ``PoolStore.transaction`` takes the pool-wide store lock (an advisory lock of the transaction),
  re-reads every account, yields the same ``Accounts`` object the local store does, and writes
  back the rows that changed: a row's generation must still be the one read (compare-and-swap),
  and another machine's custody is never touched.
- custody: the pool's custody rows become ``Account.holder``. A lineage held on *this* machine
  shows as the local file it is in; one held on another machine shows with a path that names
  that machine (``host:path``), which no local file has, so local custody never reads, harvests
  or clears it.
- ``PoolStore.account_lock`` is the account's lock pool-wide (an advisory lock on a connection of
  its own): one refresher per account at a time across every machine.
- ``PoolState`` keeps the usage cache, poll claims, benches, sessions and history in the pool, and
  the rest (metrics counters, answers, alert memos) in the local database. History written while
  the pool is unreachable waits in the local database and is sent at the next contact.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from acct.base.config import load_config
from acct.base.errors import AcctError, Busy, HeldByTarget, PoolError, PoolUnreachable
from acct.base.fsio import atomic_write, ensure_dir
from acct.base.models import Account, Holder, Usage
from acct.base.paths import Paths
from acct.services.pool import accounts as rows
from acct.services.pool import connect as pg
from acct.services.pool import core, custody, reclaims, sessions, settings
from acct.services.pool.custody import REFRESH_LOCK, STORE_LOCK
from acct.services.pool.usage import PoolUsage
from acct.services.state import LOGIN_ERRORS, SessionRow, State, usage_to_json
from acct.services.store import Accounts, RefreshMark, account_to_toml


def holder_of(c: rows.Custody, here: str, silent: frozenset[str] = frozenset()) -> Holder:
    """The custody row as the holder local custody sees: this machine's file as it is, another
    machine's under a path no local file has (naming the machine, and whether it is silent)."""
    host = f"{c.host_id} (silent)" if c.host_id in silent else c.host_id
    path = c.path if c.host_id == here else f"{host}:{c.path}"
    return Holder(c.target, path, c.lineage, c.since, extra={"host_id": c.host_id})


def is_foreign(holder: Holder | None, here: str) -> bool:
    return holder is not None and holder.extra.get("host_id", here) != here


class Link:
    """The pool's connections of one context: one per thread (a connection is used by one
    thread at a time), opened on first use and again after the server dropped it."""

    def __init__(self, env: Mapping[str, str], paths: Paths, cfg: settings.PoolSettings) -> None:
        self.env = env
        self.paths = paths
        self.cfg = cfg
        self.host_id = settings.host_id(env, paths)
        self.where = pg.describe(cfg.conninfo, cfg.source)
        self.lease_timeout = load_config(paths.config_file).lease_timeout
        self._local = threading.local()

    def pool(self) -> core.Pool:
        p: core.Pool | None = getattr(self._local, "pool", None)
        if p is not None and not (p.conn.closed or p.conn.broken):
            return p
        if p is not None:
            with contextlib.suppress(Exception):
                p.close()
        p = core.open_pool(self.env, self.paths)
        self._local.pool = p
        return p

    def close(self) -> None:
        p: core.Pool | None = getattr(self._local, "pool", None)
        self._local.pool = None
        if p is not None:
            with contextlib.suppress(Exception):
                p.close()

    @contextlib.contextmanager
    def run(self) -> Iterator[core.Pool]:
        """The pool, with psycopg's errors as acct's; a connection that broke is dropped."""
        p = self.pool()
        try:
            with pg.errors(self.where):
                yield p
        except PoolUnreachable:
            self.close()
            raise


def _lock_ms(timeout: float) -> str:
    return f"{max(1, int(timeout * 1000))}ms"


class PoolStore:
    """The accounts of the pool, behind the local store's interface (``services.store.Store``)."""

    def __init__(self, link: Link, *, lock_timeout: float = 10.0) -> None:
        self.link = link
        self.paths = link.paths
        self.path = link.paths.accounts_file
        self.lock_timeout = lock_timeout

    @property
    def host_id(self) -> str:
        return self.link.host_id

    def _silent(self, p: core.Pool) -> frozenset[str]:
        """Machines without contact for ``lease_timeout``: their lineages stay theirs."""
        found = p.conn.execute(
            b"SELECT host_id FROM machines WHERE last_contact < now() - make_interval(secs => %s)",
            (self.link.lease_timeout,),
        ).fetchall()
        return frozenset(str(r[0]) for r in found)

    def _accounts(self, p: core.Pool) -> tuple[Accounts, dict[str, int]]:
        found = rows.all_accounts(p.conn, p.key)
        silent = self._silent(p) if any(r.custody for r in found) else frozenset()
        items: list[Account] = []
        generations: dict[str, int] = {}
        for r in found:
            holder = holder_of(r.custody, p.host_id, silent) if r.custody else None
            items.append(r.account.copy(holder=holder))
            generations[r.account.id] = r.generation
        self._note_names([a.name for a in items])
        return Accounts(items), generations

    def _note_names(self, names: list[str]) -> None:
        """Keep the names this machine last read for shell completion (``acct.fast.names``),
        which reads no pool; written only when they change, never failing the caller."""
        text = "".join(f"{n}\n" for n in sorted(names))
        path = self.paths.pool_names_file
        with contextlib.suppress(OSError, AcctError):
            if path.exists() and path.read_text(encoding="utf-8") == text:
                return
            ensure_dir(path.parent)
            atomic_write(path, text)

    def read(self) -> Accounts:
        with self.link.run() as p:
            return self._accounts(p)[0]

    def write(self, accounts: Accounts) -> None:
        raise PoolError("the pool's accounts change only inside a transaction")

    @contextlib.contextmanager
    def transaction(self, *, timeout: float | None = None) -> Iterator[Accounts]:
        """Lock the store pool-wide, re-read, yield the accounts, write back what changed."""
        wait = self.lock_timeout if timeout is None else timeout
        with self.link.run() as p, p.conn.transaction():
            p.conn.execute(b"SELECT set_config('lock_timeout', %s, true)", (_lock_ms(wait),))
            p.conn.execute(b"SELECT pg_advisory_xact_lock(hashtext(%s))", (STORE_LOCK,))
            accounts, generations = self._accounts(p)
            before = {a.id: a for a in accounts}
            yield accounts
            _write_back(p, before, generations, accounts)

    def reclaimed(self, account_id: str, lineage: str) -> bool:
        with self.link.run() as p:
            return reclaims.was_reclaimed(p, account_id, lineage)

    @contextlib.contextmanager
    def refresh_mark(self, account_id: str, lineage: str, nonce: str = "") -> Iterator[RefreshMark]:
        """The "refresh in flight" mark in the pool (``custody.mark_refresh``), committed right
        before the request goes out (:meth:`RefreshMark.sending`: a process killed earlier
        leaves no mark, its token unspent) and cleared once its answer is stored; it stays when
        the refresh ended spent but unstored, so no machine presents that token again."""

        def commit() -> None:
            with self.link.run() as p:
                custody.mark_refresh(p, account_id, lineage, self.lock_timeout, nonce)

        mark = RefreshMark(commit)
        try:
            yield mark
        finally:
            if mark.sent and (mark.stored or not mark.spent):
                with contextlib.suppress(PoolError), self.link.run() as p:
                    custody.unmark_refresh(p, account_id, lineage)

    def unsent_refresh(self, account_id: str, lineage: str, nonce: str) -> bool:
        """This machine's refresh of ``lineage`` never sent its request: its mark goes, or the
        "needs login" another machine made of it (``custody.unsent_refresh``)."""
        with self.link.run() as p:
            return custody.unsent_refresh(p, account_id, lineage, nonce, self.lock_timeout)

    @contextlib.contextmanager
    def account_lock(self, account_id: str, *, timeout: float, what: str) -> Iterator[None]:
        """The account's lock, pool-wide: a session advisory lock on a connection of its own
        (the server lets it go when this process dies)."""
        conn = pg.connect(self.link.cfg.conninfo, self.link.cfg.source)
        try:
            with pg.errors(self.link.where):
                conn.execute(b"SELECT set_config('lock_timeout', %s, false)", (_lock_ms(timeout),))
                try:
                    conn.execute(
                        b"SELECT pg_advisory_lock(hashtext(%s))",
                        (REFRESH_LOCK.format(account_id),),
                    )
                except Exception as e:
                    if type(e).__name__ == "LockNotAvailable":
                        raise Busy(
                            f"{what} is locked by another process of the pool (waited {timeout:g}s)",
                            hint="try again in a moment",
                        ) from None
                    raise
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.close()


def _write_back(
    p: core.Pool, before: dict[str, Account], generations: dict[str, int], after: Accounts
) -> None:
    seen: set[str] = set()
    for acc in after:
        seen.add(acc.id)
        old = before.get(acc.id)
        if old is not None and account_to_toml(old) == account_to_toml(acc):
            continue
        _check_custody(p, old, acc)
        if old is None or account_to_toml(old.copy(holder=None)) != account_to_toml(
            acc.copy(holder=None)
        ):
            _put(p, acc, generations.get(acc.id))
            custody.clear_stale_flight(p, acc.id)
        if old is None or old.holder != acc.holder:
            _custody(p, acc)
    for gone in set(before) - seen:
        if is_foreign(before[gone].holder, p.host_id):
            raise _held_elsewhere(before[gone])
        p.conn.execute(b"DELETE FROM accounts WHERE id = %s", (gone,))


def _held_elsewhere(acc: Account) -> HeldByTarget:
    h = acc.holder
    assert h is not None
    return HeldByTarget(
        f"account {acc.name!r} is lent to {h.target} on machine {h.extra.get('host_id')}",
        hint="take it back on that machine first, or `acct pool reclaim` a machine that is gone",
    )


def _check_custody(p: core.Pool, old: Account | None, new: Account) -> None:
    """Another machine's custody is never changed here, and nothing is lent to a file of
    another machine from this one."""
    if old is not None and is_foreign(old.holder, p.host_id) and old.holder != new.holder:
        raise _held_elsewhere(old)
    if (old is None or old.holder != new.holder) and is_foreign(new.holder, p.host_id):
        raise _held_elsewhere(new)
    if old is not None and is_foreign(old.holder, p.host_id) and old.tokens != new.tokens:
        raise _held_elsewhere(old)


def _put(p: core.Pool, acc: Account, generation: int | None) -> None:
    if generation is not None:
        row = p.conn.execute(
            b"SELECT generation FROM accounts WHERE id = %s FOR UPDATE", (acc.id,)
        ).fetchone()
        if row is None or int(row[0]) != generation:
            raise Busy(f"account {acc.name!r} changed in the pool meanwhile", hint="try again")
    rows.put(p.conn, p.key, acc.copy(holder=None))


def _custody(p: core.Pool, acc: Account) -> None:
    p.conn.execute(b"DELETE FROM custody WHERE account_id = %s", (acc.id,))
    h = acc.holder
    if h is None:
        return
    custody.refuse_in_flight(p, acc.name, acc.id, h.fingerprint)
    p.conn.execute(
        b"INSERT INTO custody (account_id, host_id, target, path, lineage, since) "
        b"VALUES (%s, %s, %s, %s, %s, to_timestamp(%s))",
        (acc.id, p.host_id, h.target, h.path, h.fingerprint, h.since or time.time()),
    )


# --- state ---------------------------------------------------------------------------------------


_OUTBOX = """CREATE TABLE IF NOT EXISTS pool_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, t REAL NOT NULL, event TEXT NOT NULL,
    account_id TEXT, target TEXT, detail TEXT)"""


class PoolState(State):
    """The usage cache, poll claims, benches, sessions and history in the pool; metrics,
    answers and memos of this machine in the local database (``services.state.State``)."""

    def __init__(self, paths: Paths, link: Link, *, timeout: float = 10.0) -> None:
        super().__init__(paths, timeout=timeout)
        self.link = link

    def close(self) -> None:
        super().close()
        self.link.close()

    @contextlib.contextmanager
    def _usage(self) -> Iterator[PoolUsage]:
        with self.link.run() as p:
            yield PoolUsage(p)

    # --- usage cache, poll claims, benches: pool-wide --------------------------------------

    def usage(self, account_id: str) -> Any:
        with self._usage() as u:
            return u.usage(account_id)

    def all_usage(self) -> Any:
        with self._usage() as u:
            return u.all_usage()

    def claim_poll(
        self, account_id: str, *, min_age: float, lease: float, now: float | None = None
    ) -> bool:
        with self._usage() as u:
            return u.claim_poll(account_id, min_age=min_age, lease=lease)

    def put_usage(self, account_id: str, usage: Usage, *, now: float | None = None) -> None:
        with self._usage() as u:
            u.put_usage(account_id, usage)

    def put_observed_usage(
        self, account_id: str, usage: Usage, *, now: float | None = None
    ) -> None:
        with self.link.run() as p:
            p.conn.execute(
                b"INSERT INTO usage (account_id, usage_json, fetched_at, failures) "
                b"SELECT %s, %s::jsonb, extract(epoch FROM clock_timestamp()), 0 "
                b"WHERE EXISTS (SELECT 1 FROM accounts WHERE id = %s) "
                b"ON CONFLICT (account_id) DO UPDATE SET usage_json = excluded.usage_json, "
                b"fetched_at = excluded.fetched_at "
                b"WHERE usage.fetched_at IS NULL OR usage.fetched_at <= excluded.fetched_at",
                (account_id, usage_to_json(usage), account_id),
            )

    def put_usage_error(
        self,
        account_id: str,
        error: str,
        message: str,
        *,
        backoff_until: float | None,
        now: float | None = None,
    ) -> Any:
        with self._usage() as u:
            return u.put_usage_error(account_id, error, message, backoff_until=backoff_until)

    def fresh_login(self, account_id: str) -> None:
        with self.link.run() as p, p.conn.transaction():
            p.conn.execute(
                b"UPDATE usage SET error = NULL, error_message = NULL, backoff_until = NULL, "
                b"failures = 0 WHERE account_id = %s AND error = ANY(%s)",
                (account_id, list(LOGIN_ERRORS)),
            )
            p.conn.execute(
                b"DELETE FROM benches WHERE account_id = %s AND kind = 'auth'", (account_id,)
            )

    def release_poll(self, account_id: str) -> None:
        with self._usage() as u:
            u.release_poll(account_id)

    def forget(self, account_id: str) -> None:
        with self.link.run() as p, p.conn.transaction():
            p.conn.execute(b"DELETE FROM usage WHERE account_id = %s", (account_id,))
            p.conn.execute(b"DELETE FROM benches WHERE account_id = %s", (account_id,))

    def bench(
        self, account_id: str, until: float, *, kind: str, reason: str, now: float | None = None
    ) -> None:
        with self.link.run() as p:
            if p.conn.execute(b"SELECT 1 FROM accounts WHERE id = %s", (account_id,)).fetchone():
                PoolUsage(p).bench(account_id, until, kind=kind, reason=reason)

    def unbench(self, account_id: str) -> None:
        with self._usage() as u:
            u.unbench(account_id)

    def benches(self, now: float | None = None) -> Any:
        with self._usage() as u:
            return u.benches(now)

    # --- sessions: here (their pids are this machine's) and in the pool ---------------------

    def add_session(self, make: Callable[[list[SessionRow]], SessionRow]) -> SessionRow:
        row = super().add_session(make)
        with contextlib.suppress(PoolError), self.link.run() as p:
            sessions.start(
                p, row.id, pid=row.pid, target=row.target, path=row.path,
                account_id=_known(p, row.account_id),
            )  # fmt: skip
        return row

    def update_session(self, session_id: str, **fields: int | str | None) -> None:
        super().update_session(session_id, **fields)
        if "account_id" in fields:
            with contextlib.suppress(PoolError), self.link.run() as p:
                p.conn.execute(
                    b"UPDATE sessions SET account_id = %s WHERE id = %s",
                    (_known(p, fields["account_id"]), session_id),
                )

    def remove_session(self, session_id: str) -> None:
        super().remove_session(session_id)
        with contextlib.suppress(PoolError), self.link.run() as p:
            sessions.end(p, session_id)

    # --- history: in the pool, kept here while it is unreachable ----------------------------

    def record(
        self, event: str, *, account_id: str | None = None, target: str | None = None, **detail: Any
    ) -> None:
        try:
            self.flush()
            with self.link.run() as p:
                _history(p, time.time(), event, account_id, target, detail)
        except PoolUnreachable:
            with self._tx() as c:
                c.execute(_OUTBOX)
                c.execute(
                    "INSERT INTO pool_outbox (t, event, account_id, target, detail) "
                    "VALUES (?,?,?,?,?)",
                    (time.time(), event, account_id, target, json.dumps(detail)),
                )

    def flush(self) -> int:
        """Send the history kept while the pool was unreachable; how many rows went."""
        with self._tx() as c:
            c.execute(_OUTBOX)
            waiting = c.execute(
                "SELECT id, t, event, account_id, target, detail FROM pool_outbox ORDER BY id"
            ).fetchall()
        if not waiting:
            return 0
        with self.link.run() as p:
            for _id, t, event, account_id, target, detail in waiting:
                _history(p, t, event, account_id, target, json.loads(detail) if detail else {})
        with self._tx() as c:
            c.execute("DELETE FROM pool_outbox WHERE id <= ?", (waiting[-1][0],))
        return len(waiting)

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.link.run() as p:
            found = p.conn.execute(
                b"SELECT t, event, account_id, target, detail, host_id FROM history "
                b"ORDER BY id DESC LIMIT %s",
                (limit,),
            ).fetchall()
        return [
            {"t": t, "event": e, "account_id": a, "target": tg, "host": h, **(d or {})}
            for t, e, a, tg, d, h in found
        ]

    def last_used(self) -> dict[str, float]:
        with self.link.run() as p:
            found = p.conn.execute(
                b"SELECT account_id, max(t) FROM history WHERE event = 'lend' "
                b"AND account_id IS NOT NULL GROUP BY account_id"
            ).fetchall()
        return {str(a): float(t) for a, t in found}

    def events(self, *names: str, since: float | None = None) -> list[dict[str, Any]]:
        with self.link.run() as p:
            found = p.conn.execute(
                b"SELECT id, t, event, account_id, target, detail, host_id FROM history "
                b"WHERE event = ANY(%s) AND t >= %s ORDER BY id",
                (list(names), since if since is not None else 0.0),
            ).fetchall()
        return [
            {"id": i, "t": t, "event": e, "account_id": a, "target": tg, "host": h, **(d or {})}
            for i, t, e, a, tg, d, h in found
        ]


def _known(p: core.Pool, account_id: Any) -> str | None:
    """The account id when the pool has that account (a session's row names only those)."""
    if not isinstance(account_id, str):
        return None
    found = p.conn.execute(b"SELECT 1 FROM accounts WHERE id = %s", (account_id,)).fetchone()
    return account_id if found else None


def _history(
    p: core.Pool, t: float, event: str, account_id: str | None, target: str | None,
    detail: Mapping[str, Any],
) -> None:  # fmt: skip
    from psycopg.types.json import Jsonb

    p.conn.execute(
        b"INSERT INTO history (t, host_id, event, account_id, target, detail) "
        b"VALUES (%s, %s, %s, %s, %s, %s)",
        (t, p.host_id, event, account_id, target, Jsonb(dict(detail))),
    )


def backends(
    env: Mapping[str, str], paths: Paths, cfg: settings.PoolSettings
) -> tuple[PoolStore, PoolState]:
    link = Link(env, paths, cfg)
    return PoolStore(link), PoolState(paths, link)


__all__ = ["Link", "PoolState", "PoolStore", "backends", "holder_of", "is_foreign"]

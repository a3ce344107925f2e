"""Custody of lineages, pool-wide: one live holder per lineage (the pool, or one file on one
machine), and one refresher per account at a time.

Every change takes the account's row lock (``SELECT ... FOR UPDATE``) in a transaction, re-reads
the row after taking it, and writes with compare-and-swap on the lineage fingerprint:

- ``claim`` records this machine's file as the holder *before* the file is written (the same
  order as the local custody rules): of two machines lending one account at the same instant,
  the second waits for the first's row lock, then sees its custody and is refused;
- ``release`` takes the lineage back (with the tokens harvested from the file), only while this
  machine is still the holder of the lineage it lent;
- ``refresh`` commits a "refresh in flight" mark before it spends the refresh token, and clears
  it in the commit that stores the answer, holding the account's refresh lock throughout: a
  second refresher waits, then finds a new lineage and sends nothing; one that finds a mark
  whose refresher is gone (killed between sending and storing) sends nothing either, and the
  account needs a new login (the spent token is never presented again, on any machine);
- ``claim`` does not lend a lineage whose refresh is in flight, nor one whose refresh was cut off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from acct.base.errors import AcctError, Busy, HeldByTarget, LineageMoved, NeedsLogin
from acct.base.models import Tokens
from acct.services.pool import accounts
from acct.services.pool import connect as pg
from acct.services.pool.accounts import Pooled
from acct.services.pool.reclaims import was_reclaimed

if TYPE_CHECKING:
    from acct.services.pool.core import Pool

LOCK_TIMEOUT_S = 30.0


class CustodyLost(AcctError):
    """This machine no longer holds the lineage it lent (the pool reclaimed it)."""

    code = "custody_lost"


# Every change of accounts or custody holds this advisory lock of its transaction: the pool's
# store (``backend.PoolStore``) and the row-locked operations here never interleave.
STORE_LOCK = "acct store"


def _begin(pool: Pool, lock_timeout: float) -> None:
    pool.conn.execute(
        b"SELECT set_config('lock_timeout', %s, true)", (f"{int(lock_timeout * 1000)}ms",)
    )
    pool.conn.execute(b"SELECT pg_advisory_xact_lock(hashtext(%s))", (STORE_LOCK,))


def _history(pool: Pool, event: str, account_id: str, target: str | None, **detail: Any) -> None:
    from psycopg.types.json import Jsonb

    pool.conn.execute(
        b"INSERT INTO history (t, host_id, event, account_id, target, detail) "
        b"VALUES (%s, %s, %s, %s, %s, %s)",
        (time.time(), pool.host_id, event, account_id, target, Jsonb(detail)),
    )


def _held(p: Pooled) -> HeldByTarget:
    c = p.custody
    assert c is not None
    return HeldByTarget(
        f"account {p.account.name!r} is lent to {c.target} on machine {c.host_id} "
        f"(lineage {c.lineage})",
        hint="pick another account, or take it back on that machine first",
    )


def _usable(p: Pooled) -> Tokens:
    acc = p.account
    if acc.needs_login or acc.tokens is None or acc.tokens.is_blank:
        raise NeedsLogin(f"account {acc.name!r} needs a new login", hint=f"acct login {acc.name}")
    return acc.tokens


def _bump(
    pool: Pool, account_id: str, lineage: str, sets: str = "", values: tuple[Any, ...] = ()
) -> None:
    """Compare-and-swap: the row changes only while it still holds ``lineage``."""
    sql = (
        f"UPDATE accounts SET generation = generation + 1, updated_at = now(){sets} "
        "WHERE id = %s AND lineage = %s"
    )
    cur = pool.conn.execute(sql.encode(), (*values, account_id, lineage))
    if cur.rowcount != 1:
        raise LineageMoved(f"account {account_id}'s lineage changed under its row lock")


def claim(
    pool: Pool,
    account_id: str,
    *,
    target: str,
    path: str,
    expect: str | None = None,
    lock_timeout: float = LOCK_TIMEOUT_S,
) -> Pooled:
    """Record this machine's ``target`` file at ``path`` as the lineage's holder, before the file
    is written. ``expect``: the lineage fingerprint the caller chose the account with (a pick
    made on stale data is refused). Returns the account with the tokens to write."""
    with pg.errors(pool.where), pool.conn.transaction():
        _begin(pool, lock_timeout)
        p = accounts.get(pool.conn, pool.key, account_id, lock=True)
        if p.custody is not None:
            raise _held(p)
        tokens = _usable(p)
        lineage = tokens.lineage_fingerprint
        if expect is not None and lineage != expect:
            raise LineageMoved(
                f"account {p.account.name!r} changed since acct looked (lineage {expect} is now "
                f"{lineage})",
                hint="try again",
            )
        cut = _check_flight(pool, p, lineage)
        if cut is None:
            _lend(pool, account_id, target, path, lineage)
            return accounts.get(pool.conn, pool.key, account_id)
    raise cut


def _lend(pool: Pool, account_id: str, target: str, path: str, lineage: str) -> None:
    pool.conn.execute(
        b"INSERT INTO custody (account_id, host_id, target, path, lineage) "
        b"VALUES (%s, %s, %s, %s, %s)",
        (account_id, pool.host_id, target, path, lineage),
    )
    _bump(pool, account_id, lineage, ", last_used_at = %s", (int(time.time()),))
    _history(pool, "lend", account_id, target, lineage=lineage, path=path)


def _held_here(pool: Pool, account_id: str, lineage: str, then: str) -> Pooled:
    """The account under its row lock, while this machine's custody of ``lineage`` stands;
    CustodyLost otherwise, saying what happened to it (``then`` ends the message)."""
    p = accounts.get(pool.conn, pool.key, account_id, lock=True)
    c = p.custody
    if c is not None and c.host_id == pool.host_id and c.lineage == lineage:
        return p
    if was_reclaimed(pool, account_id, lineage):
        raise CustodyLost(
            f"this machine ({pool.host_id}) no longer holds account {p.account.name!r}'s "
            f"lineage {lineage}: the pool reclaimed it{then}",
            hint="leave the tool's file alone; acct will not use that lineage again",
        )
    raise CustodyLost(
        f"this machine ({pool.host_id}) no longer holds account {p.account.name!r}'s "
        f"lineage {lineage} as acct lent it (lent again or taken back since){then}"
    )


def release(
    pool: Pool,
    account_id: str,
    *,
    lineage: str,
    harvested: Tokens | None = None,
    lock_timeout: float = LOCK_TIMEOUT_S,
) -> Pooled:
    """Take the lineage back from this machine's file: the pool holds it again, with the tokens
    the file held (``harvested``, when the tool rotated them). ``lineage``: what this machine
    wrote there. Refused (CustodyLost) when this machine is no longer the holder."""
    with pg.errors(pool.where), pool.conn.transaction():
        _begin(pool, lock_timeout)
        p = _held_here(pool, account_id, lineage, "")
        c = p.custody
        assert c is not None
        current = p.lineage or ""
        if harvested is not None and harvested.lineage_fingerprint != current:
            cols = accounts.sealed_tokens(pool.key, account_id, harvested)
            sets = "".join(f", {k} = %s" for k in cols)
            _bump(pool, account_id, current, sets, tuple(cols.values()))
        pool.conn.execute(b"DELETE FROM custody WHERE account_id = %s", (account_id,))
        _history(pool, "release", account_id, c.target, lineage=lineage)
        return accounts.get(pool.conn, pool.key, account_id)


# The account's lock pool-wide (an advisory lock of a session), which a refresher holds from its
# "refresh in flight" mark until the answer is stored (the pool's store's ``account_lock``): a
# mark whose lock is free was left by a process that is gone.
REFRESH_LOCK = "acct account {}"


@dataclass(frozen=True)
class Flight:
    """A "refresh in flight" mark: ``by`` (a machine) sent ``lineage``'s refresh token."""

    by: str
    pid: int
    since: float
    lineage: str
    nonce: str = ""


def _flight(pool: Pool, account_id: str) -> Flight | None:
    row = pool.conn.execute(
        b"SELECT refreshing_by, refreshing_pid, extract(epoch FROM refreshing_since), "
        b"refreshing_lineage, refreshing_nonce FROM accounts WHERE id = %s",
        (account_id,),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return Flight(
        str(row[0]), int(row[1] or 0), float(row[2] or 0), str(row[3] or ""), str(row[4] or "")
    )


def _refresher_alive(pool: Pool, account_id: str, flight: Flight) -> bool:
    """Whether the refresher that left ``flight`` still runs: its session holds the account's
    refresh lock (free once its backend is gone, whatever killed it). A refresher holds it
    before it reads the mark, so a mark it finds is never its own."""
    got = pool.conn.execute(
        b"SELECT pg_try_advisory_xact_lock(hashtext(%s))", (REFRESH_LOCK.format(account_id),)
    ).fetchone()
    return not (got and got[0])


def _clear_flight(pool: Pool, account_id: str, only: bytes = b"", *args: object) -> None:
    """Clear the account's "refresh in flight" mark; ``only`` narrows which (more of the
    WHERE clause, with its ``args``)."""
    pool.conn.execute(
        b"UPDATE accounts SET refreshing_by = NULL, refreshing_pid = NULL, "
        b"refreshing_since = NULL, refreshing_lineage = NULL, refreshing_nonce = NULL "
        b"WHERE id = %s" + only,
        (account_id, *args),
    )


def clear_stale_flight(pool: Pool, account_id: str) -> None:
    """A mark of a lineage the row no longer holds says nothing (the row moved on: a stored
    answer, a new login): it goes, in the caller's transaction."""
    _clear_flight(
        pool,
        account_id,
        b" AND refreshing_lineage IS NOT NULL AND refreshing_lineage IS DISTINCT FROM lineage",
    )


def _in_flight_elsewhere(name: str, flight: Flight) -> Busy:
    return Busy(
        f"account {name!r} is being refreshed by machine {flight.by} (lineage {flight.lineage})",
        hint="try again in a moment",
    )


def _cut_off(pool: Pool, p: Pooled, flight: Flight, lineage: str) -> NeedsLogin:
    """The refresher that left ``flight`` is gone: its refresh token may be spent. Presenting
    it again would revoke the whole chain, so the account needs a new login instead."""
    _bump(pool, p.account.id, lineage, ", needs_login = true")
    _clear_flight(pool, p.account.id)
    _history(
        pool,
        "refresh_cut_off",
        p.account.id,
        None,
        by=flight.by,
        spent=flight.lineage,
        nonce=flight.nonce,
    )
    return NeedsLogin(
        f"account {p.account.name!r} needs a new login: a refresh on machine {flight.by} was "
        f"cut off (its process is gone) after sending lineage {flight.lineage}; the refresh may "
        "have gone through, and then its new tokens are lost, so acct sends nothing rather than "
        "present a refresh token that may be spent (which would revoke the whole chain)",
        hint=f"acct login {p.account.name}",
    )


def _check_flight(pool: Pool, p: Pooled, lineage: str) -> NeedsLogin | None:
    """Refuse to spend or lend a lineage while a refresh of it is in flight (Busy); turn the
    mark of a refresher that is gone into "needs login" and return that error, to raise once
    the transaction has committed it. A mark of another lineage is stale (the account was
    logged in again since): it goes."""
    flight = _flight(pool, p.account.id)
    if flight is None:
        return None
    if flight.lineage != lineage:
        _clear_flight(pool, p.account.id)
        return None
    if _refresher_alive(pool, p.account.id, flight):
        raise _in_flight_elsewhere(p.account.name, flight)
    return _cut_off(pool, p, flight, lineage)


def mark_refresh(
    pool: Pool, account_id: str, lineage: str, lock_timeout: float, nonce: str = ""
) -> None:
    """Commit the "refresh in flight" mark of ``lineage``, for a refresher that already holds
    the account's lock (the pool's store's ``account_lock``). A mark it finds on ``lineage`` is
    then one of a refresher that is gone: NeedsLogin (committed), and nothing is to be sent."""
    cut: NeedsLogin | None = None
    with pg.errors(pool.where), pool.conn.transaction():
        _begin(pool, lock_timeout)
        p = accounts.get(pool.conn, pool.key, account_id, lock=True)
        flight = _flight(pool, account_id)
        if flight is not None and flight.lineage == lineage:
            cut = _cut_off(pool, p, flight, lineage)
        elif p.account.needs_login:
            raise NeedsLogin(
                f"account {p.account.name!r} needs a new login (it was marked so while its "
                "refresh was about to be sent); nothing was sent",
                hint=f"acct login {p.account.name}",
            )
        elif p.lineage != lineage or p.custody is not None:
            now = "lent to a file" if p.custody is not None else "no longer the pool's"
            raise LineageMoved(
                f"account {p.account.name!r} changed while its refresh was about to be sent "
                f"(lineage {lineage} is {now}); nothing was sent",
                hint="try again",
            )
        else:
            pool.conn.execute(
                b"UPDATE accounts SET refreshing_by = %s, refreshing_pid = pg_backend_pid(), "
                b"refreshing_since = now(), refreshing_lineage = %s, refreshing_nonce = %s "
                b"WHERE id = %s",
                (pool.host_id, lineage, nonce or None, account_id),
            )
    if cut is not None:
        raise cut


def unmark_refresh(pool: Pool, account_id: str, lineage: str) -> None:
    """The refresh of ``lineage`` is stored, or ended without spending it: its mark goes."""
    with pg.errors(pool.where), pool.conn.transaction():
        _clear_flight(pool, account_id, b" AND refreshing_lineage = %s", lineage)


def unsent_refresh(
    pool: Pool, account_id: str, lineage: str, nonce: str, lock_timeout: float
) -> bool:
    """A refresh of ``lineage`` on this machine was killed before its request left (its
    courier's journal says so; the caller holds the account's lock, so no refresher of it runs
    anywhere): its mark goes, or, when a machine already cut it off, the "needs login" that
    made. Only that refresh's (``nonce``: an earlier refresh of the lineage may have spent it),
    and only while the row still holds ``lineage`` in the pool. True when anything changed."""
    if not nonce:
        return False
    with pg.errors(pool.where), pool.conn.transaction():
        _begin(pool, lock_timeout)
        p = accounts.get(pool.conn, pool.key, account_id, lock=True)
        if p.lineage != lineage or p.custody is not None:
            return False
        flight = _flight(pool, account_id)
        if flight is not None:
            if flight.nonce != nonce or flight.by != pool.host_id or flight.lineage != lineage:
                return False
            _clear_flight(pool, account_id)
        else:
            last = pool.conn.execute(
                b"SELECT event, detail FROM history WHERE account_id = %s "
                b"ORDER BY t DESC, id DESC LIMIT 1",
                (account_id,),
            ).fetchone()
            detail = last[1] if last is not None and last[0] == "refresh_cut_off" else None
            if not (
                p.account.needs_login
                and isinstance(detail, dict)
                and detail.get("by") == pool.host_id
                and detail.get("spent") == lineage
                and detail.get("nonce") == nonce
            ):
                return False
            _bump(pool, account_id, lineage, ", needs_login = false")
        _history(pool, "refresh_unsent", account_id, None, lineage=lineage)
    return True


def refuse_in_flight(pool: Pool, account: str, account_id: str, lineage: str) -> None:
    """For a lend of ``lineage`` in a transaction of the pool's store: Busy while a refresh of
    it is in flight, NeedsLogin when one was cut off (its refresh token may be spent)."""
    flight = _flight(pool, account_id)
    if flight is None or flight.lineage != lineage:
        return
    if _refresher_alive(pool, account_id, flight):
        raise _in_flight_elsewhere(account, flight)
    raise NeedsLogin(
        f"account {account!r} needs a new login: a refresh on machine {flight.by} was cut off "
        f"(its process is gone) after sending lineage {flight.lineage}; the refresh may have "
        "gone through, so acct does not lend a refresh token that may be spent",
        hint=f"acct login {account}",
    )


def _custody_seal(pool: Pool, value: str | None, column: str, account_id: str) -> bytes | None:
    if value is None:
        return None
    return pool.key.seal(value, table="custody", column=column, row=account_id)


def push(pool: Pool, account_id: str, tokens: Tokens, *, lineage: str) -> None:
    """A running session's copy of the tokens its tool rotated, kept with the custody record so
    the pool can take them over if this machine dies. Only a copy: the pool never spends it
    while the file holds the lineage. ``lineage``: what this machine lent (CustodyLost when the
    pool reclaimed it since)."""
    with pg.errors(pool.where), pool.conn.transaction():
        _begin(pool, LOCK_TIMEOUT_S)
        _held_here(pool, account_id, lineage, ": no copy pushed")
        pool.conn.execute(
            b"UPDATE custody SET pushed_access_sealed = %s, pushed_refresh_sealed = %s, "
            b"pushed_expires_at = %s, pushed_lineage = %s, pushed_at = now() "
            b"WHERE account_id = %s",
            (
                _custody_seal(pool, tokens.access, "pushed_access", account_id),
                _custody_seal(pool, tokens.refresh, "pushed_refresh", account_id),
                tokens.expires_at,
                tokens.lineage_fingerprint,
                account_id,
            ),
        )
        pool.conn.execute(
            b"UPDATE machines SET last_contact = now() WHERE host_id = %s", (pool.host_id,)
        )


@dataclass(frozen=True)
class Reclaimed:
    account: str
    took_pushed: bool  # False: the account needs a new login


def _pushed(pool: Pool, account_id: str, base: Tokens | None) -> Tokens | None:
    row = pool.conn.execute(
        b"SELECT pushed_access_sealed, pushed_refresh_sealed, pushed_expires_at FROM custody "
        b"WHERE account_id = %s",
        (account_id,),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    seal = {"table": "custody", "row": account_id}
    access = pool.key.open(bytes(row[0]), column="pushed_access", **seal)
    refresh = (
        None if row[1] is None else pool.key.open(bytes(row[1]), column="pushed_refresh", **seal)
    )
    scopes = base.scopes if base else ()
    return Tokens(access, refresh, int(row[2] or 0), scopes)


def _pushed_lineage(pool: Pool, account_id: str) -> str | None:
    row = pool.conn.execute(
        b"SELECT pushed_lineage FROM custody WHERE account_id = %s", (account_id,)
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


# A tool refreshes its access token within a few minutes of its expiry (Claude Code: 5). A
# pushed copy whose access token had longer than this left cannot have been refreshed since.
TOOL_REFRESH_WINDOW_S = 15 * 60


def _nothing_newer(pushed: Tokens | None, now: float) -> bool:
    return pushed is not None and pushed.expires_at - now > TOOL_REFRESH_WINDOW_S


def reclaim(pool: Pool, host_id: str, *, account_id: str | None = None) -> list[Reclaimed]:
    """Declare machine ``host_id`` gone: the pool takes back every lineage it holds (or just
    ``account_id``'s). It takes the tokens the machine last pushed when nothing newer can exist
    (their access token is far from its expiry, so the tool had no reason to refresh since);
    otherwise the account needs a new login (reusing a spent refresh token would revoke the
    whole chain). The machine finds out at its next contact (``release``/``push`` refuse)."""
    out: list[Reclaimed] = []
    with pg.errors(pool.where), pool.conn.transaction():
        _begin(pool, LOCK_TIMEOUT_S)
        rows = pool.conn.execute(
            b"SELECT account_id FROM custody WHERE host_id = %s AND (%s::text IS NULL OR "
            b"account_id = %s) ORDER BY account_id",
            (host_id, account_id, account_id),
        ).fetchall()
        for (aid,) in rows:
            p = accounts.get(pool.conn, pool.key, aid, lock=True)
            if p.custody is None or p.custody.host_id != host_id:
                continue
            pushed = _pushed(pool, aid, p.account.tokens)
            if not _nothing_newer(pushed, time.time()):
                pushed = None
            current = p.lineage or ""
            if pushed is not None:
                cols = accounts.sealed_tokens(pool.key, aid, pushed)
                sets = "".join(f", {k} = %s" for k in cols)
                _bump(pool, aid, current, sets, tuple(cols.values()))
            else:
                _bump(pool, aid, current, ", needs_login = true")
            pool.conn.execute(
                b"INSERT INTO reclaims (account_id, host_id, target, path, lineage, "
                b"pushed_lineage, took_pushed) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (aid, host_id, p.custody.target, p.custody.path, p.custody.lineage,
                 _pushed_lineage(pool, aid), pushed is not None),
            )  # fmt: skip
            pool.conn.execute(b"DELETE FROM custody WHERE account_id = %s", (aid,))
            _history(pool, "reclaim", aid, p.custody.target, host=host_id,
                     took_pushed=pushed is not None)  # fmt: skip
            out.append(Reclaimed(p.account.name, pushed is not None))
        pool.conn.execute(
            b"UPDATE machines SET reclaimed_at = now() WHERE host_id = %s", (host_id,)
        )
    return out

"""Usage of each account's 5-hour and 7-day quota windows, from the throttled usage endpoint.

The endpoint allows about 30 requests per account per hour, so every poll goes through
the shared cache in :class:`acct.services.state.State`: values younger than ``config.usage_min_age`` are
reused, a process claims an account before polling it (no two processes poll the same account at
once), a 429 starts an exponential back-off that nothing overrides, and a failed poll keeps the
last good values. Nothing here prints; one account's failure is data, never an exception.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from acct.base.errors import (
    AcctError,
    AuthError,
    NeedsLogin,
    ProtocolError,
    RateLimited,
)
from acct.base.models import Account, Usage, UsageRecord, Window
from acct.services import events, prompt_state, providers
from acct.services.context import Ctx
from acct.services.custody import access_token_for
from acct.services.oauth import finish_refreshes, refresh_worst_case
from acct.services.providers.anthropic import (
    UsageForbidden,
    UsageServerError,
    UsageTimeout,
    parse_usage,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "UsageForbidden",
    "UsageServerError",
    "UsageTimeout",
    "backoff_for",
    "confirm",
    "observed_usage",
    "parse_usage",
    "poll",
    "pollable",
    "record_observed",
]

# Back-off after a failed poll: (first delay, ceiling) in seconds, doubling per consecutive failure.
BACKOFF_RATE_LIMITED = (300.0, 3600.0)
BACKOFF_NETWORK = (60.0, 900.0)
BACKOFF_AUTH = (300.0, 3600.0)
BACKOFF_FORBIDDEN = 24 * 3600.0
# Cached values this young count as a confirmation (``confirm``): no need to spend a request.
CONFIRM_MAX_AGE = 30.0
# Refresh an access token from the store before polling when it has less than this left.
TOKEN_MARGIN = 60.0
_MAX_WORKERS = 32
_WAIT_SLICE = 0.25  # the wait for results wakes this often, so Ctrl-C is seen at once

Progress = Callable[[int, int], None]  # (polls done, polls started) as they finish


# --- back-off ---------------------------------------------------------------------------------


def _doubling(base_cap: tuple[float, float], failures: int) -> float:
    base, cap = base_cap
    return min(cap, base * 2.0 ** min(failures, 16))


def backoff_for(error: AcctError, failures: int) -> float:
    """Seconds to wait before polling again after ``error``, the ``failures``+1-th in a row."""
    if isinstance(error, RateLimited):
        return max(_doubling(BACKOFF_RATE_LIMITED, failures), error.retry_after or 0.0)
    if isinstance(error, UsageForbidden):
        return BACKOFF_FORBIDDEN
    if isinstance(error, NeedsLogin):
        return 0.0  # not polled until a new login, which may then poll at once
    if isinstance(error, AuthError):
        return _doubling(BACKOFF_AUTH, failures)
    return _doubling(BACKOFF_NETWORK, failures)


# --- which token, which accounts --------------------------------------------------------------


def pollable(account: Account) -> bool:
    """OAuth accounts that are enabled, logged in and not setup tokens (those get 403)."""
    t = account.tokens
    return (
        account.is_oauth
        and account.enabled
        and not account.needs_login
        and t is not None
        and not t.is_blank
        and not t.is_setup_token
    )


def _live_access(ctx: Ctx, account: Account) -> str | None:
    """The account's live access token: the tool's file holds it while the lineage is lent."""
    return access_token_for(ctx, account)


def _access_for_poll(ctx: Ctx, account: Account) -> str:
    """The token to poll with, refreshed first when it is about to expire and acct holds it.

    A lineage lent to a tool is never refreshed here (the tool refreshes its own file).
    """
    t = account.tokens
    if account.holder is None and t is not None and not t.fresh_for(TOKEN_MARGIN):
        account = providers.ensure_fresh(ctx, account.id, TOKEN_MARGIN)
    access = _live_access(ctx, account)
    if not access:
        raise AuthError("no access token", hint=f"run `acct login {account.name}`")
    return access


# --- polling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    account_id: str
    usage: Usage | None = None
    error: AcctError | None = None


def _after_refusal(ctx: Ctx, account: Account, refused: str, error: AuthError) -> str:
    """A new access token after a 401, when acct holds the lineage and may spend it.

    A revoked lineage comes back ``invalid_grant``: the refresh marks the account as needing a
    login and raises :class:`NeedsLogin`. Otherwise ``error`` stands.
    """
    t = account.tokens
    if account.holder is not None or t is None or not t.refresh:
        raise error
    renewed = providers.refresh(ctx, account.id, force=True, seen=t.lineage_fingerprint)
    if renewed.tokens is None or renewed.tokens.access == refused:
        raise error
    return renewed.tokens.access


def _fetch_one(ctx: Ctx, client: httpx.Client, account: Account) -> _Outcome:
    provider = providers.of(account)
    try:
        access = _access_for_poll(ctx, account)
        try:
            usage = provider.fetch_usage(ctx, client, account, access)
        except UsageForbidden:
            raise
        except AuthError as e:
            renewed = _after_refusal(ctx, account, access, e)
            usage = provider.fetch_usage(ctx, client, account, renewed)
        return _Outcome(account.id, usage=usage)
    except AcctError as e:
        return _Outcome(account.id, error=e)
    except Exception as e:  # noqa: BLE001  (one account must not sink the others' polls)
        return _Outcome(account.id, error=ProtocolError(f"usage poll failed ({type(e).__name__})"))


def _fetch_in_worker(ctx: Ctx, client: httpx.Client, account: Account) -> _Outcome:
    """:func:`_fetch_one` on a worker thread, with a context of its own: a token refresh may
    touch the state database, and an SQLite connection belongs to the thread that opened it."""
    local = Ctx(env=ctx.env)
    try:
        return _fetch_one(local, client, account)
    finally:
        if "state" in local.__dict__:
            local.state.close()


def _store(ctx: Ctx, outcome: _Outcome, previous: UsageRecord | None, now: float) -> UsageRecord:
    state = ctx.state
    result = (
        "ok" if outcome.usage is not None else (outcome.error.code if outcome.error else "error")
    )
    events.count(ctx, "usage_polls", account_id=outcome.account_id, result=result)
    if outcome.usage is not None:
        state.put_usage(outcome.account_id, outcome.usage, now=now)
        return state.usage(outcome.account_id) or UsageRecord(
            outcome.account_id, usage=outcome.usage
        )
    error = outcome.error or ProtocolError("usage poll failed")
    failures = previous.failures if previous and previous.error else 0
    until = now + backoff_for(error, failures)
    return state.put_usage_error(
        outcome.account_id, error.code, error.message, backoff_until=until, now=now
    )


def _lease(ctx: Ctx) -> float:
    """How long a claim keeps other processes off an account: the longest one poll can take.

    A poll may refresh the token first, ask, get a 401, refresh again and ask again. The lease
    only matters when a poller dies without releasing it; a finished poll releases it at once.
    """

    return 2 * (ctx.config.usage_timeout + refresh_worst_case()) + 30.0


def poll(
    ctx: Ctx,
    accounts: Iterable[Account],
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, UsageRecord]:
    """Refresh the usage of every stale account, all at once, and return the cache's records.

    Stale means older than ``config.usage_min_age`` (``force`` drops that rule, never a
    back-off). Accounts another process is polling right now are left to it, and its results
    awaited for up to the usage timeout. The answer holds the current record of every given
    account the cache knows, polled or not.
    """
    accounts = [a for a in accounts if pollable(a)]
    state = ctx.state
    min_age = 0.0 if force else ctx.config.usage_min_age
    lease = _lease(ctx)
    before = {a.id: state.usage(a.id) for a in accounts}
    claimed: list[Account] = []
    elsewhere: dict[str, UsageRecord | None] = {}
    try:
        for a in accounts:
            if state.claim_poll(a.id, min_age=min_age, lease=lease):
                claimed.append(a)
            else:
                rec = state.usage(a.id)
                if _polled_elsewhere(rec, min_age, time.time()):
                    elsewhere[a.id] = rec
    except BaseException:
        _abandon(ctx, [a.id for a in claimed])  # Ctrl-C among the claims: give them back
        raise
    if claimed:
        _poll_claimed(ctx, claimed, before, progress)
        prompt_state.refresh_quietly(ctx)
    if elsewhere:
        _await_others(ctx, elsewhere, deadline=time.monotonic() + ctx.config.usage_timeout + 2.0)
    records = {a.id: state.usage(a.id) for a in accounts}
    return {aid: rec for aid, rec in records.items() if rec is not None}


def _polled_elsewhere(rec: UsageRecord | None, min_age: float, now: float) -> bool:
    """A claim refused for an account that is neither fresh nor backing off: another process
    holds its poll lease right now."""
    if rec is None:
        return False
    fresh = rec.fetched_at is not None and now - rec.fetched_at < min_age
    backing_off = rec.backoff_until is not None and now < rec.backoff_until
    return not fresh and not backing_off


def _await_others(ctx: Ctx, polling: dict[str, UsageRecord | None], *, deadline: float) -> None:
    """Wait (briefly) for other processes' polls to land, so this one shows their results."""

    def mark(rec: UsageRecord | None) -> tuple[object, ...]:
        return (None,) if rec is None else (rec.fetched_at, rec.failures, rec.error)

    waiting = {aid: mark(rec) for aid, rec in polling.items()}
    while waiting and time.monotonic() < deadline:
        time.sleep(0.05)
        waiting = {aid: m for aid, m in waiting.items() if mark(ctx.state.usage(aid)) == m}


def _start_workers(
    ctx: Ctx, client: httpx.Client, claimed: list[Account], results: queue.Queue[_Outcome]
) -> None:
    """Daemon threads, so Ctrl-C need not wait for a hanging request to time out."""
    work: queue.SimpleQueue[Account] = queue.SimpleQueue()
    for a in claimed:
        work.put(a)

    def worker() -> None:
        while True:
            try:
                account = work.get_nowait()
            except queue.Empty:
                return
            try:
                outcome = _fetch_in_worker(ctx, client, account)
            except Exception as e:  # noqa: BLE001  (the poll waits for one outcome per account)
                outcome = _Outcome(
                    account.id, error=ProtocolError(f"usage poll failed ({type(e).__name__})")
                )
            results.put(outcome)

    for i in range(min(_MAX_WORKERS, len(claimed))):
        threading.Thread(target=worker, name=f"usage-{i}", daemon=True).start()


def _poll_claimed(
    ctx: Ctx,
    claimed: list[Account],
    before: Mapping[str, UsageRecord | None],
    progress: Progress | None,
) -> None:
    """Fetch in worker threads; the cache (one SQLite connection) is written from this thread.

    On Ctrl-C the workers are abandoned at once, except one that is storing a token refresh it
    has been answered: that one is let finish (the answer is the lineage's only live copy).
    """
    total = len(claimed)
    pending = {a.id for a in claimed}
    results: queue.Queue[_Outcome] = queue.Queue()
    client: httpx.Client | None = None
    finished = False
    try:
        # Everything from here on gives the claims back when interrupted: the HTTP client's
        # import alone takes long enough for a Ctrl-C to land before any request is sent.
        if progress:
            progress(0, total)
        from acct.services.oauth import signals_held

        client = ctx.http(timeout=ctx.config.usage_timeout)
        # A worker may be refreshing a token: SIGTERM or SIGHUP then waits until it is stored.
        with signals_held():
            _start_workers(ctx, client, claimed, results)
            while pending:
                try:
                    outcome = results.get(timeout=_WAIT_SLICE)
                except queue.Empty:
                    continue
                _store(ctx, outcome, before.get(outcome.account_id), time.time())
                pending.discard(outcome.account_id)
                if progress:
                    progress(total - len(pending), total)
            finished = True
    finally:
        if not finished:
            _abandon(ctx, pending)
        elif client is not None:
            client.close()


def _abandon(ctx: Ctx, pending: Iterable[str]) -> None:
    """Interrupted: let the next process poll at once, and refreshes in flight be stored."""
    for aid in pending:
        with contextlib.suppress(Exception):
            ctx.state.release_poll(aid)
    with contextlib.suppress(Exception):
        finish_refreshes(refresh_worst_case())


def confirm(ctx: Ctx, account: Account, *, max_age: float = CONFIRM_MAX_AGE) -> UsageRecord:
    """One fetch to check what a tool reported (is the account really at its limit?).

    Values younger than ``max_age`` count as the answer. While a back-off runs, or another
    process polls the account, the cached record comes back unchanged (maybe with no usage).
    """
    state = ctx.state
    previous = state.usage(account.id)
    if not pollable(account) or not state.claim_poll(
        account.id, min_age=max_age, lease=_lease(ctx)
    ):
        return previous or UsageRecord(account.id)
    try:
        with ctx.http(timeout=ctx.config.usage_timeout) as client:
            outcome = _fetch_one(ctx, client, account)
        record = _store(ctx, outcome, previous, time.time())
    except BaseException:
        with contextlib.suppress(Exception):
            state.release_poll(account.id)
        raise
    prompt_state.refresh_quietly(ctx)
    return record


# --- usage seen in Messages answers -----------------------------------------------------------


def _seen_window(seen: Window | None, previous: Window | None, now: float) -> Window | None:
    """A window from a Messages answer; a missing part keeps the last poll's (a past reset goes)."""
    if seen is None or seen.utilization is None:
        return previous
    if seen.resets_at is not None:
        return seen
    kept = previous.resets_at if previous is not None else None
    return Window(seen.utilization, kept if kept is not None and kept > now else None)


def observed_usage(
    previous: Usage | None, five_hour: Window | None, seven_day: Window | None, now: float
) -> Usage:
    """Usage from the ``anthropic-ratelimit-unified-*`` headers of a Messages answer.

    The headers tell the 5-hour and 7-day windows only: per-model weekly caps and the extra
    usage setting stay as the last poll found them.
    """
    prev = previous or Usage()
    return Usage(
        five_hour=_seen_window(five_hour, prev.five_hour, now),
        seven_day=_seen_window(seven_day, prev.seven_day, now),
        scoped=prev.scoped,
        extra_usage_enabled=prev.extra_usage_enabled,
        labels=prev.labels,
    )


def record_observed(
    ctx: Ctx,
    account_id: str,
    five_hour: Window | None,
    seven_day: Window | None,
    *,
    now: float | None = None,
) -> Usage:
    """Store usage read from a Messages answer as the account's current values (no request)."""
    now = time.time() if now is None else now
    previous = ctx.state.usage(account_id)
    usage = observed_usage(previous.usage if previous else None, five_hour, seven_day, now)
    ctx.state.put_observed_usage(account_id, usage, now=now)
    return usage

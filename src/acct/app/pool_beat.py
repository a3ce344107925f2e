"""A running ``acct exec`` session's side of the pool: heartbeats, pushed copies of the tool's
rotated tokens, and what the pool took back from this machine while it was silent.

- Every ``interval`` seconds (a fifth of ``lease_timeout``, at most 30 s) the session tells the
  pool its machine is alive, re-registers its session row if the pool lost it, sends the
  history kept while the pool was unreachable, and pushes a *copy* of the tokens the tool's file
  holds when they changed since the last push. The pool never spends a pushed copy while the
  file holds the lineage; ``acct pool reclaim`` takes it over if this machine dies.
- The pool being unreachable never stops the session: the tool keeps running on the account it
  has, the next beat tries again, and the session says once that it lost and regained contact.
- ``settle_lost``: the lineages ``acct pool reclaim`` took from this machine while it was
  silent. Once no tool of a running session reads the file, acct takes the reclaimed login out of
  it (the pool's copy is the live one now) and says so; it never takes that lineage back.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from acct.base.errors import AcctError, PoolUnreachable
from acct.base.models import Account, Tokens
from acct.services import procs, providers
from acct.services.context import Ctx
from acct.services.pool import custody as pool_custody
from acct.services.pool import reclaims
from acct.services.pool import sessions as pool_sessions
from acct.services.pool.backend import PoolState, PoolStore
from acct.services.state import SessionRow
from acct.services.targets import JsonTarget, get_target
from acct.services.targets.base import entry_fingerprint


def interval(c: Ctx) -> float:
    return max(0.5, min(30.0, c.config.lease_timeout / 5))


class Beat:
    """The heartbeat of one session, on a thread of its own with a context of its own."""

    def __init__(
        self, c: Ctx, target: JsonTarget, row: SessionRow, env: dict[str, str],
        warn: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.env = c.env
        self.target = target
        self.row = row
        self.tool_env = env
        self.warn = warn
        self.every = interval(c)
        self.pushed: str | None = None  # access fingerprint of the last push
        self.offline = False
        self.told: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="acct-pool-beat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 10)

    def _loop(self) -> None:
        c = Ctx(env=self.env)
        try:
            while not self._stop.wait(self.every):
                self.tick(c)
            self.tick(c)  # the last copy of what the tool holds, before the session ends
        finally:
            with contextlib.suppress(Exception):
                c.state.close()

    def tick(self, c: Ctx) -> None:
        try:
            self._tick(c)
        except PoolUnreachable as e:
            if not self.offline:
                self.warn(f"{e.message}; the session goes on, acct catches up when it is back")
            self.offline = True
            return
        except AcctError as e:
            self.warn(f"pool heartbeat: {e.message}")
            return
        except Exception as e:  # noqa: BLE001  (a heartbeat never ends the session)
            self.warn(f"pool heartbeat failed ({type(e).__name__}); the session goes on")
            return
        if self.offline:
            self.warn("the pool is reachable again; the session caught up")
        self.offline = False

    def _tick(self, c: Ctx) -> None:
        store, state = c.store, c.state
        assert isinstance(store, PoolStore) and isinstance(state, PoolState)
        row = next((r for r in state.sessions() if r.id == self.row.id), self.row)
        with store.link.run() as p:
            pool_sessions.ensure(p, row)
            pool_sessions.heartbeat(p, self.row.id, {})
            for lost in reclaims.pending(p):
                if lost.path == self.row.path and lost.id not in self.told:
                    self.told.add(lost.id)
                    self.warn(_lost_message(lost, running=True))
        state.flush()
        self._push(c, store)

    def _push(self, c: Ctx, store: PoolStore) -> None:
        """A copy of what the file holds, when it changed: only for the account this machine's
        custody records there, and only tokens proven to be that account's."""
        mine = next((a for a in store.read().held_by(self.target.name, self.row.path)), None)
        if mine is None or mine.holder is None:
            return
        entry = self.target.read(self.tool_env, path=Path(self.row.path))
        if entry is None or entry.blank or not entry.tokens.access:
            return
        seen = entry_fingerprint(entry) + ":" + entry.tokens.access[-12:]
        if seen == self.pushed:
            return
        if entry.lineage_fingerprint != mine.holder.fingerprint and not _is_theirs(
            c, mine, entry.tokens
        ):
            return
        with store.link.run() as p:
            pool_custody.push(p, mine.id, entry.tokens, lineage=mine.holder.fingerprint)
        self.pushed = seen


def _is_theirs(c: Ctx, acc: Account, tokens: Tokens) -> bool:
    """Whether the account's provider names ``acc`` for a rotated login (the tool may hold
    someone else's after a ``/login``)."""
    try:
        profile = providers.of(acc).whose(c, tokens)
    except AcctError:
        return False
    return acc.same_identity(profile.uuid, profile.org_uuid)


@contextlib.contextmanager
def beating(
    c: Ctx, target: JsonTarget, row: SessionRow, env: dict[str, str], warn: Callable[[str], None]
) -> Iterator[None]:
    """Heartbeats around a session when a pool is configured; nothing otherwise."""
    if c.pool_settings is None:
        yield
        return
    beat = Beat(c, target, row, env, warn)
    beat.start()
    try:
        yield
    finally:
        beat.stop()


def _lost_message(lost: reclaims.Lost, *, running: bool) -> str:
    took = (
        "took the tokens this machine last pushed"
        if lost.took_pushed
        else f"marked it as needing a new login (`acct login {lost.account}`)"
    )
    tail = (
        "acct will not take that lineage back; it takes the login out of the file once the "
        "tool has exited"
        if running
        else "acct will not use that lineage again"
    )
    return (
        f"this machine lost account {lost.account}: while it was silent the pool reclaimed it "
        f"from {lost.target} ({lost.path}) and {took}; {tail}"
    )


def settle_lost(c: Ctx) -> list[str]:
    """What the pool took back from this machine while it was silent: the reclaimed login is
    taken out of its file (when no running session's tool reads it) and never taken back; one
    message each."""
    store = c.store
    if not isinstance(store, PoolStore):
        return []
    messages: list[str] = []
    with store.link.run() as p:
        pending = reclaims.pending(p)
    for lost in pending:
        if any(r.path == lost.path for r in procs.live(c)):
            continue  # a running tool reads it: its session says so, and settles it at its end
        messages.append(_settle_one(c, lost))
        with store.link.run() as p:
            reclaims.settled(p, lost)
    return messages


def _settle_one(c: Ctx, lost: reclaims.Lost) -> str:
    from acct.services import custody

    base = _lost_message(lost, running=False)
    try:
        target = get_target(lost.target)
        path = Path(lost.path)
        with custody.target_lock(c, path):
            entry = target.read(c.env, path=path)
            if entry is None or entry.lineage_fingerprint not in lost.copies():
                return base + f" ({path} no longer holds it)"
            target.remove(c.env, path=path, expect=entry_fingerprint(entry))
    except (AcctError, OSError) as e:
        return base + f" (its login is still in {lost.path}: {getattr(e, 'message', e)})"
    return base + f"; took its old login out of {path}"

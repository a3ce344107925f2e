"""`acct watch`: what the dashboard shows, gathered from local state (no network).

A :class:`Frame` is one look at the pool: a row per account (its view, its live sessions, when
its login was last refreshed), the capacity verdict, and the recent rotations and limits.
:func:`stamp` is a cheap fingerprint of the files the frame is read from: the dashboard reads
again only when it changes (or now and then, for the clock), so it costs nearly nothing idle.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from acct.app.views import AccountView, current_views
from acct.domain.capacity import Capacity

if TYPE_CHECKING:
    from acct.services.context import Ctx
    from acct.services.state import SessionRow

Sort = Literal["name", "usage", "reset"]
SORTS: tuple[Sort, ...] = ("usage", "reset", "name")
LOG_SPAN = 24 * 3600.0
LOG_LINES = 8


@dataclass(frozen=True)
class SessionInfo:
    tool: str
    directory: str | None  # the tool's working directory, where the system tells
    since: float


@dataclass(frozen=True)
class Row:
    view: AccountView
    sessions: tuple[SessionInfo, ...]
    refreshed_at: float | None  # when acct last got this login's tokens from the token endpoint


@dataclass(frozen=True)
class LogLine:
    at: float
    text: str


@dataclass(frozen=True)
class Frame:
    now: float
    rows: tuple[Row, ...]
    capacity: Capacity
    log: tuple[LogLine, ...]


def _cwd(pid: int | None) -> str | None:
    if not pid:
        return None
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def _sessions(rows: Iterable[SessionRow]) -> dict[str, list[SessionInfo]]:
    out: dict[str, list[SessionInfo]] = {}
    for r in rows:
        if r.account_id:
            info = SessionInfo(r.target, _cwd(r.child_pid) or _cwd(r.pid), r.started_at)
            out.setdefault(r.account_id, []).append(info)
    return out


def _log(ctx: Ctx, names: dict[str, str], now: float) -> tuple[LogLine, ...]:
    lines: list[LogLine] = []
    for ev in ctx.state.events("rotate", "bench", since=now - LOG_SPAN)[-LOG_LINES:]:
        who = names.get(str(ev.get("account_id")), "?")
        if ev["event"] == "rotate":
            to = names.get(str(ev.get("to")), "?")
            reason = ev.get("reason")
            text = f"{who} → {to}" + (f" ({reason})" if reason else "")
        else:
            text = f"{who} benched: {ev.get('reason') or ev.get('kind') or 'limit'}"
        lines.append(LogLine(float(ev["t"]), text))
    return tuple(lines)


def _key(sort: Sort, row: Row) -> tuple[float, str]:
    v = row.view
    if sort == "usage":
        return (-(v.peak or 0.0), v.name)
    if sort == "reset":
        reset = v.relevant_reset
        return (reset if reset is not None else float("inf"), v.name)
    return (0.0, v.name)


def frame(ctx: Ctx, sort: Sort = "usage") -> Frame:
    from acct.app.capacity import pool
    from acct.domain.capacity import assess
    from acct.services import procs

    now = time.time()
    accounts = ctx.store.read()
    views = current_views(ctx, accounts, now=now)
    live = _sessions(procs.live(ctx))
    refreshed = {a.id: (a.tokens.obtained_at if a.tokens else None) for a in accounts}
    rows = [
        Row(v, tuple(live.get(v.id, ())), float(t) if (t := refreshed.get(v.id)) else None)
        for v in views
    ]
    rows.sort(key=lambda r: _key(sort, r))
    cfg = ctx.config
    counts = {aid: len(s) for aid, s in live.items()}
    from collections import Counter

    cap = assess(
        pool(views, Counter(counts)),
        now=now,
        low=cfg.capacity_low,
        min_headroom=cfg.capacity_min_headroom,
    )
    names = {a.id: a.name for a in accounts}
    return Frame(now, tuple(rows), cap, _log(ctx, names, now))


def stamp(ctx: Ctx) -> tuple[float, ...]:
    """Modification times of the store and the state database (and its WAL)."""
    paths = (
        ctx.paths.accounts_file,
        ctx.paths.state_db,
        ctx.paths.state_db.with_name(ctx.paths.state_db.name + "-wal"),
    )
    out: list[float] = []
    for p in paths:
        try:
            st = p.stat()
            out += [st.st_mtime_ns, st.st_size]
        except OSError:
            out += [0, 0]
    return tuple(float(x) for x in out)

"""Keep the prompt files current: ``prompt.json`` for ``acct prompt``, ``prompt`` for shells.

:func:`update` recomputes both from local facts only (the store's custody records, the shared
usage cache and benches, one read of each tool's credential file) and is cheap enough to call
after every lend, harvest and usage poll. The JSON document (version 1)::

    {"version": 1, "default_target": "claude-code",
     "targets": {"claude-code": {"account": "work", "held": true, "path": "/abs/.credentials.json",
                                 "mtime_ns": 123, "size": 456, "five_hour": 37.0,
                                 "seven_day": 12.0, "five_hour_resets_at": 1700000000,
                                 "seven_day_resets_at": 1700500000, "fetched_at": 1699990000,
                                 "benched_until": null}}}

``account`` is named only when the file still holds the lineage acct recorded for it
(``Holder.fingerprint``); ``held`` says whether the file holds an Anthropic entry at all. The
plain-text file has one line per target whose segment is not empty: ``claude-code<TAB>work 37%``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from acct.base.fsio import atomic_write
from acct.base.models import Account
from acct.fast.prompt import DEFAULT_FORMAT, file_stat, segment
from acct.services import events
from acct.services.context import Ctx
from acct.services.store import Accounts
from acct.services.targets import TARGET_NAMES, get_target

VERSION = 1
_WRITING = threading.Lock()


def _same_file(a: str, b: str) -> bool:
    return a == b or os.path.realpath(a) == os.path.realpath(b)


def _holder_of(accounts: Accounts, target: str, path: str) -> Account | None:
    return next(
        (a for a in accounts.held_by(target) if a.holder and _same_file(a.holder.path, path)),
        None,
    )


def _file_entry(target: Any, env: Mapping[str, str]) -> Any:
    """The tool's Anthropic entry, or ``None`` when absent or unreadable (never raises)."""
    try:
        return target.read(env)
    except Exception:  # noqa: BLE001  (an unreadable file shows as "nothing acct can name")
        return None


def target_entry(ctx: Ctx, accounts: Accounts, name: str, now: float) -> dict[str, Any]:
    """The prompt state of one target. The stat is taken before the read, so a write that
    lands in between makes the entry look stale rather than wrongly current."""

    target = get_target(name)
    path = str(target.path(ctx.env))
    stat = file_stat(path)
    entry = _file_entry(target, ctx.env) if stat else None
    holder = _holder_of(accounts, name, path)
    account = None
    if (
        holder
        and holder.holder
        and entry is not None
        and not entry.blank
        and entry.lineage_fingerprint == holder.holder.fingerprint
    ):
        account = holder
    doc: dict[str, Any] = {
        "account": account.name if account else None,
        "held": entry is not None and not entry.blank,
        "path": path,
        "mtime_ns": stat[0] if stat else None,
        "size": stat[1] if stat else None,
        "five_hour": None,
        "seven_day": None,
        "five_hour_resets_at": None,
        "seven_day_resets_at": None,
        "fetched_at": None,
        "benched_until": None,
    }
    if account is not None:
        account = _serving(ctx, accounts, name, path) or account
        doc["account"] = account.name
        doc.update(_usage_fields(ctx, account, now))
    return doc


def _serving(ctx: Ctx, accounts: Accounts, target: str, path: str) -> Account | None:
    """The account a live ``acct exec`` session on this file runs on, when its usage proxy
    switched it in flight (the file still holds the account acct lent). A session whose acct
    is gone no longer counts (its record is swept later)."""
    rows = [
        r
        for r in ctx.state.sessions()
        if r.target == target and r.account_id and _same_file(r.path, path)
    ]
    for row in sorted(rows, key=lambda r: r.started_at, reverse=True):
        if row.account_id and _alive(row.pid):
            return accounts.by_id(row.account_id)
    return None


def _alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, another user's
    return True


def _usage_fields(ctx: Ctx, account: Account, now: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    record = ctx.state.usage(account.id)
    if record and record.usage:
        u = record.usage
        if u.five_hour:
            out["five_hour"], out["five_hour_resets_at"] = (
                u.five_hour.utilization,
                u.five_hour.resets_at,
            )
        if u.seven_day:
            out["seven_day"], out["seven_day_resets_at"] = (
                u.seven_day.utilization,
                u.seven_day.resets_at,
            )
        out["fetched_at"] = record.fetched_at
    bench = ctx.state.benches(now).get(account.id)
    if bench:
        out["benched_until"] = bench.until
    return out


def compute(ctx: Ctx, now: float | None = None) -> dict[str, Any]:
    """The prompt state document for every known target."""

    now = time.time() if now is None else now
    accounts = ctx.store.read()
    targets = {name: target_entry(ctx, accounts, name, now) for name in TARGET_NAMES}
    return {"version": VERSION, "default_target": ctx.config.default_target, "targets": targets}


def prompt_lines(doc: Mapping[str, Any], now: float | None = None) -> str:
    """The plain-text prompt file: ``target<TAB>segment`` for each target with something to show."""
    lines = []
    for name in doc.get("targets", {}):
        text = segment(doc, name, DEFAULT_FORMAT, now=now)
        if text:
            lines.append(f"{name}\t{text}\n")
    return "".join(lines)


def update(ctx: Ctx) -> dict[str, Any]:
    """Rewrite ``prompt.json`` and ``prompt`` atomically from local state. Returns the document."""
    # One rewrite at a time in this process (the usage proxy's threads write too): the last
    # one computed from the latest state is the one that stays.
    with _WRITING:
        doc = compute(ctx)
        atomic_write(ctx.paths.prompt_state_file, json.dumps(doc, indent=1) + "\n")
        atomic_write(ctx.paths.prompt_file, prompt_lines(doc))
    events.emit(ctx, "change")
    return doc


def refresh_quietly(ctx: Ctx) -> None:
    """:func:`update`, for callers whose own work is done: the prompt files are a view, and a
    failure to rewrite them (a full disk, a store being rewritten) must never fail a command."""
    with contextlib.suppress(Exception):
        update(ctx)

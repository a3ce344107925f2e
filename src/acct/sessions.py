"""Running ``acct exec`` sessions, and a credentials file of its own for each parallel Claude Code.

Two sessions on one credentials file would switch it under each other: Claude Code re-reads the
file when it changes, so the first session would silently go on with the second one's account.
So every ``acct exec`` registers itself (state database: pid, target, file, account) for its
lifetime, and a Claude Code session that finds another live session on the default file (or is
asked to with ``--isolate``) runs on a file of its own: ``<state dir>/sessions/<id>/
.credentials.json``, which Claude Code reads through ``CLAUDE_SECURESTORAGE_CONFIG_DIR`` while
its history, projects and settings stay where they are (``--continue`` keeps working). That file
is one more custody holder: the account lent there is not picked by other sessions, rotation
writes that file, and when the session ends its lineage is harvested back (the tool may have
rotated it) and the entry removed, so the login returns to the store and the directory goes.

OpenCode and Pi move their sessions together with their credentials, so they get no file of
their own: a second session on their file shares the account the file holds.

A session whose processes are gone (acct killed hard) is stale: the next ``acct exec`` or
``acct status`` ends it the same way. A session is live while acct's process or the tool's
runs: the tool may outlive a killed acct, and its file must not be taken from it. When the
login cannot be taken back (the profile endpoint could not confirm a rotated lineage, or the
file holds a login acct does not track), the file and the record stay for the next sweep.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from acct.context import Ctx
from acct.errors import AcctError, UsageError
from acct.fsio import ensure_dir, file_lock
from acct.paths import Paths
from acct.state import SessionRow
from acct.targets import JsonTarget, get_target

# Targets that can run on a credentials file of their own without moving anything else.
ISOLATING = ("claude-code",)
STORAGE_VAR = "CLAUDE_SECURESTORAGE_CONFIG_DIR"
# Why the others cannot: their relocation variables move their sessions too (FACTS §3).
NO_ISOLATION = {
    "opencode": "XDG_DATA_HOME moves OpenCode's sessions along with its credentials",
    "pi": "PI_CODING_AGENT_DIR moves Pi's sessions along with its credentials",
}
LOCK_WAIT = 120.0  # another process may be harvesting the session's file (profile endpoint)


@dataclass(frozen=True)
class Opened:
    """A registered session: its record, the tool's environment, the sessions it shares with."""

    row: SessionRow
    env: dict[str, str]
    shared_with: tuple[SessionRow, ...] = ()


def sessions_dir(paths: Paths) -> Path:
    """Where isolated sessions keep their credentials files, one directory each."""
    return paths.state_dir / "sessions"


# --- is it running? ----------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) from ``/proc``; None where there is no ``/proc``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def start_of(pid: int) -> int | None:
    """When the process started, where the system says (tells a reused pid apart)."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def running(pid: int | None, start: int | None) -> bool:
    """Whether ``pid`` is still the process recorded (not gone, not a zombie, not reused)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else: a reused pid unless /proc says otherwise
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    return state != "Z" and (start is None or started == start)


def is_live(row: SessionRow) -> bool:
    return running(row.pid, row.pid_start) or running(row.child_pid, row.child_start)


def live(ctx: Ctx) -> list[SessionRow]:
    return [r for r in ctx.state.sessions() if is_live(r)]


# --- start -------------------------------------------------------------------------------------


def open_session(ctx: Ctx, target: JsonTarget, *, isolate: bool = False) -> Opened:
    """Register this process's session of ``target``, on a file of its own when needed."""
    from acct.custody import holder_path

    if isolate and target.name not in ISOLATING:
        raise UsageError(
            f"--isolate works for claude-code only: {NO_ISOLATION.get(target.name, '')}, so "
            "resuming work (--continue) would not find them",
            hint=f"run it without --isolate; a second {target.name} session shares the account",
        )
    default = holder_path(target.path(ctx.env))
    sid = secrets.token_hex(6)
    own_dir = sessions_dir(ctx.paths) / sid
    if target.name in ISOLATING:
        ensure_dir(own_dir.parent)  # before the real path is taken: it may resolve links
    own_file = holder_path(target.path({**ctx.env, STORAGE_VAR: str(own_dir)}))
    others: list[SessionRow] = []

    def make(rows: list[SessionRow]) -> SessionRow:
        others[:] = [r for r in rows if r.path == default and is_live(r)]
        apart = isolate or (target.name in ISOLATING and bool(others))
        pid = os.getpid()
        return SessionRow(
            id=sid,
            pid=pid,
            pid_start=start_of(pid),
            child_pid=None,
            child_start=None,
            target=target.name,
            path=own_file if apart else default,
            isolated=apart,
            account_id=None,
            started_at=time.time(),
        )

    row = ctx.state.add_session(make)
    env = dict(ctx.env)
    if not row.isolated:
        return Opened(row, env, tuple(others))
    try:
        ensure_dir(own_dir)
    except AcctError:
        ctx.state.remove_session(sid)
        raise
    env[STORAGE_VAR] = str(own_dir)
    return Opened(row, env)


def note_run(ctx: Ctx, row: SessionRow, pid: int, account_id: str) -> None:
    """The tool's process and its account: the session stays live while the tool runs, even
    when acct is gone."""
    with contextlib.suppress(AcctError):
        ctx.state.update_session(
            row.id, child_pid=pid, child_start=start_of(pid), account_id=account_id
        )


# --- end ---------------------------------------------------------------------------------------


def close(ctx: Ctx, row: SessionRow) -> str | None:
    """End this process's session; a message when its file had to stay (see the module doc)."""
    return _end(ctx, row.id, lambda r: True)


def sweep(ctx: Ctx) -> list[str]:
    """End the sessions whose processes are gone; one message for each, saying what happened."""
    messages: list[str] = []
    for row in ctx.state.sessions():
        if is_live(row):
            continue
        kept = _end(ctx, row.id, lambda r: not is_live(r))
        if kept is not None:
            messages.append(kept)
        elif row.isolated:
            messages.append(
                f"an acct exec session of {row.target} (pid {row.pid}) ended without cleaning "
                "up; its login is back in acct's store"
            )
    return messages


def _end(ctx: Ctx, session_id: str, still: Callable[[SessionRow], bool]) -> str | None:
    """End one session under its lock, if ``still`` says so once the lock is held."""
    lock = ctx.paths.locks_dir / f"session-{session_id}"
    with file_lock(lock, timeout=LOCK_WAIT, what="an acct exec session"):
        row = next((r for r in ctx.state.sessions() if r.id == session_id), None)
        if row is None or not still(row):
            return None  # ended by another process meanwhile, or running again
        if row.isolated:
            kept = _give_back(ctx, row)
            if kept is not None:
                return kept
        ctx.state.remove_session(row.id)
    with contextlib.suppress(OSError):
        lock.with_name(lock.name + ".lock").unlink()
    return None


def _give_back(ctx: Ctx, row: SessionRow) -> str | None:
    """Harvest the session's file, take its lineages back into the store, remove the file.

    None when done; otherwise why the file stays (nothing is removed then).
    """
    from acct import custody

    path = Path(row.path)
    own_dir = path.parent
    if own_dir.parent != Path(custody.holder_path(sessions_dir(ctx.paths))):
        return (
            f"session record {row.id} names {path}, outside acct's sessions directory; left alone"
        )
    target = get_target(row.target)
    env: Mapping[str, str] = {**ctx.env, STORAGE_VAR: str(own_dir)}
    where = f"{target.name} session file {path}"
    try:
        if path.exists() or ctx.store.read().held_by(row.target, row.path):
            custody.harvest_at(ctx, target, path, env)
            for acc in ctx.store.read().held_by(row.target, row.path):
                custody.reclaim(ctx, acc.id, env)
        entry = target.read(env, path=path) if path.exists() else None
    except AcctError as e:
        return (
            f"could not take the login back from {where} ({e.message}); acct keeps it and tries "
            "again at the next `acct exec` or `acct status`"
        )
    if entry is not None and not entry.blank:
        return (
            f"{where} holds a login acct does not track; kept (`acct import {target.name} "
            f"--from {path}` keeps it in acct)"
        )
    shutil.rmtree(own_dir, ignore_errors=True)
    # Claude Code's legacy refresh lock sits next to the directory: <dir>.lock
    shutil.rmtree(f"{own_dir}.lock", ignore_errors=True)
    return None

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
rotated it) and the entry removed, so the login returns to the store; the tool's other logins
made during the session (MCP servers, plugins: kept in the same file) are copied into its own
file, and the directory goes.

OpenCode and Pi move their sessions together with their credentials, so they get no file of
their own: a second session on their file shares the account the file holds.

A session whose processes are gone (acct killed hard) is stale: the next ``acct exec`` or
``acct status`` ends it the same way. A session is live while acct's process or the tool's
runs: the tool may outlive a killed acct, and its file must not be taken from it. When the
login cannot be taken back (the profile endpoint could not confirm a rotated lineage, or the
file holds a login acct does not track), or another login there differs from the tool's own
file's, the file and the record stay for the next sweep. A session directory without a record
(the state database was moved aside) is swept the same way, unless a process still runs on it.

While a session runs, no other acct command takes its account out of its file, nor switches
the file under it unless forced (see :func:`acct.services.custody.lend`).
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

from acct.base.errors import AcctError, UsageError
from acct.base.fsio import ensure_dir, file_lock, holder_path, read_json_object
from acct.services import custody, events
from acct.services.context import Ctx
from acct.services.procs import is_live, start_of
from acct.services.state import SessionRow
from acct.services.targets import JsonTarget, get_target

# Targets that can run on a credentials file of their own without moving anything else.
ISOLATING = ("claude-code",)
STORAGE_VAR = "CLAUDE_SECURESTORAGE_CONFIG_DIR"
# Why the others cannot: their relocation variables move their sessions too.
NO_ISOLATION = {
    "opencode": "XDG_DATA_HOME moves OpenCode's sessions along with its credentials",
    "pi": "PI_CODING_AGENT_DIR moves Pi's sessions along with its credentials",
}
LOCK_WAIT = 120.0  # another process may be harvesting the session's file (profile endpoint)
SWEEP_LOCK_WAIT = 10.0  # a sweep leaves a session another process is ending to that process


@dataclass(frozen=True)
class Opened:
    """A registered session: its record, the tool's environment, the sessions it shares with."""

    row: SessionRow
    env: dict[str, str]
    shared_with: tuple[SessionRow, ...] = ()


# --- start -------------------------------------------------------------------------------------


def open_session(ctx: Ctx, target: JsonTarget, *, isolate: bool = False) -> Opened:
    """Register this process's session of ``target``, on a file of its own when needed."""

    if isolate and target.name not in ISOLATING:
        raise UsageError(
            f"--isolate works for claude-code only: {NO_ISOLATION.get(target.name, '')}, so "
            "resuming work (--continue) would not find them",
            hint=f"run it without --isolate; a second {target.name} session shares the account",
        )
    default = holder_path(target.path(ctx.env))
    sid = secrets.token_hex(6)
    own_dir = ctx.paths.sessions_dir / sid
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


@dataclass(frozen=True)
class Ended:
    """What ending a session did: the accounts whose login came back into acct's store, or why
    its file stays (then nothing was removed)."""

    taken: tuple[str, ...] = ()
    kept: str | None = None


def close(ctx: Ctx, row: SessionRow) -> str | None:
    """End this process's session; a message when its file had to stay (see the module doc)."""
    ended = _end(ctx, row.id, lambda r: True, LOCK_WAIT)
    events.emit(ctx, "session_end", session=row.id, target=row.target)
    return ended.kept if ended is not None else None


def sweep(ctx: Ctx, *, wait: float = SWEEP_LOCK_WAIT) -> list[str]:
    """End the sessions whose processes are gone, and take back what a session directory acct
    has no record of holds (the state database was moved aside); one message for each that
    needs saying. A session another process is ending meanwhile is left to it (``wait``)."""
    found = _session_dirs(ctx)  # before the records: a session records itself, then makes it
    rows = ctx.state.sessions()
    messages: list[str] = []
    for row in rows:
        if is_live(row):
            continue
        what = f"an acct exec session of {row.target} (pid {row.pid})"
        try:
            ended = _end(ctx, row.id, lambda r: not is_live(r), wait)
        except AcctError as e:
            messages.append(f"left {what} for later: {e.message}")
            continue
        if ended is not None:
            messages.extend(_said(ended, f"{what} ended without cleaning up"))
    recorded = {r.id for r in rows}
    for own_dir in (d for d in found if d.name not in recorded):
        try:
            ended = _end_unrecorded(ctx, own_dir, wait)
        except AcctError as e:
            messages.append(f"left the session directory {own_dir} for later: {e.message}")
            continue
        if ended is not None:
            messages.extend(_said(ended, f"{own_dir} was left by an acct exec session"))
    return messages


def _said(ended: Ended, what: str) -> list[str]:
    if ended.kept is not None:
        return [ended.kept]
    if not ended.taken:
        return []  # nothing was lent there yet: nothing to tell
    names = ended.taken
    back = f"{names[0]}'s login is" if len(names) == 1 else f"the logins of {', '.join(names)} are"
    return [f"{what}; {back} back in acct's store"]


def _session_dirs(ctx: Ctx) -> list[Path]:
    root = ctx.paths.sessions_dir
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.endswith(".lock"))
    except OSError:
        return []


def _lock(ctx: Ctx, session_id: str) -> Path:
    return ctx.paths.locks_dir / f"session-{session_id}"


def _end(
    ctx: Ctx, session_id: str, still: Callable[[SessionRow], bool], wait: float
) -> Ended | None:
    """End one session under its lock, if ``still`` says so once the lock is held."""
    lock = _lock(ctx, session_id)
    with file_lock(lock, timeout=wait, what="an acct exec session"):
        row = next((r for r in ctx.state.sessions() if r.id == session_id), None)
        if row is None or not still(row):
            return None  # ended by another process meanwhile, or running again
        ended = _give_back(ctx, row) if row.isolated else Ended()
        if ended.kept is not None:
            return ended
        ctx.state.remove_session(row.id)
    with contextlib.suppress(OSError):
        lock.with_name(lock.name + ".lock").unlink()
    return ended


def _end_unrecorded(ctx: Ctx, own_dir: Path, wait: float) -> Ended | None:
    """Take back what a session directory without a record holds, and remove it.

    Left alone while a process runs on it (its tool, when the record went with the state
    database while it ran), and when a record appears meanwhile.
    """
    if _used_by_a_process(own_dir):
        return None
    target = get_target(ISOLATING[0])
    path = holder_path(target.path({**ctx.env, STORAGE_VAR: str(own_dir)}))
    with file_lock(_lock(ctx, own_dir.name), timeout=wait, what="an acct exec session"):
        if not own_dir.is_dir() or any(r.id == own_dir.name for r in ctx.state.sessions()):
            return None
        row = SessionRow(own_dir.name, 0, None, None, None, target.name, path, True, None, 0.0)
        return _give_back(ctx, row)


def _used_by_a_process(own_dir: Path) -> bool:
    """Whether a running process was started on ``own_dir`` as its Claude Code storage; False
    where the system does not tell."""
    wanted = f"{STORAGE_VAR}={own_dir}".encode()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0"):
            return True
    return False


def _give_back(ctx: Ctx, row: SessionRow) -> Ended:
    """Harvest the session's file, take its lineages back into the store, copy the tool's other
    logins made there (MCP servers...) into its own file, remove the session's directory.

    What stays when something cannot be done is said in ``Ended.kept``; nothing is removed then.
    """
    path = Path(row.path)
    own_dir = path.parent
    if own_dir.parent != Path(holder_path(ctx.paths.sessions_dir)):
        return Ended(
            kept=f"session record {row.id} names {path}, outside acct's sessions directory; "
            "left alone"
        )
    target = get_target(row.target)
    env: Mapping[str, str] = {**ctx.env, STORAGE_VAR: str(own_dir)}
    where = f"{target.name} session file {path}"
    taken: list[str] = []
    kept: str | None
    try:
        if path.exists() or ctx.store.read().held_by(row.target, row.path):
            custody.harvest_at(ctx, target, path, env)
            for acc in ctx.store.read().held_by(row.target, row.path):
                custody.reclaim(ctx, acc.id, env)
                taken.append(acc.name)
        entry = target.read(env, path=path) if path.exists() else None
    except AcctError as e:
        kept = (
            f"could not take the login back from {where} ({e.message}); acct keeps it and tries "
            "again at the next `acct exec` or `acct status`"
        )
        return Ended(tuple(taken), kept)
    if entry is not None and not entry.blank:
        kept = (
            f"{where} holds a login acct does not track; kept (`acct import {target.name} "
            f"--from {path}` keeps it in acct)"
        )
        return Ended(tuple(taken), kept)
    kept = _copy_others(ctx, target, path, where)
    if kept is not None:
        return Ended(tuple(taken), kept)
    shutil.rmtree(own_dir, ignore_errors=True)
    # Claude Code's legacy refresh lock sits next to the directory: <dir>.lock
    shutil.rmtree(f"{own_dir}.lock", ignore_errors=True)
    return Ended(tuple(taken))


def _copy_others(  # noqa: C901  (each way the two files can disagree)
    ctx: Ctx, target: JsonTarget, path: Path, where: str
) -> str | None:
    """Copy what the session's file holds besides acct's entry into the tool's own file.

    Logins made during the session (MCP servers, plugins) live there and must not be lost. Key
    by key (one level down in objects such as ``mcpOAuth``, one entry per server): what the own
    file lacks is added; what it holds already with another value stays, and so does the
    session's file, named in the message (which of the two is the newer, nothing tells).
    """
    own = target.path(ctx.env)
    try:
        doc = read_json_object(path, what=f"{target.name} credentials") or {}
    except AcctError as e:
        return f"{where} is kept: {e.message}"
    others = {k: v for k, v in doc.items() if k != target.entry_key}
    if not others:
        return None
    differ: list[str] = []

    def merge(main: dict[str, object]) -> bool:
        differ.clear()
        added = False
        for key, value in others.items():
            mine = main.get(key)
            if key not in main:
                main[key] = value
                added = True
            elif isinstance(mine, dict) and isinstance(value, dict):
                for sub, item in value.items():
                    if sub not in mine:
                        mine[sub] = item
                        added = True
                    elif mine[sub] != item:
                        differ.append(f"{key}[{sub!r}]")
            elif mine != value:
                differ.append(key)
        return added

    try:
        target.edit_others(ctx.env, merge, path=own)
    except AcctError as e:
        return (
            f"could not copy the other logins in {where} into {own} ({e.message}); kept, acct "
            "tries again at the next `acct exec` or `acct status`"
        )
    if differ:
        return (
            f"{where} holds {', '.join(differ)} with other values than {own}; kept, so neither "
            f"is lost: copy what you need from it, then delete {path.parent}"
        )
    return None

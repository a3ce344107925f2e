"""Is a process still the one acct recorded? Liveness of the tools and of ``acct exec`` sessions.

A pid alone is not an identity: pids are reused. Where the system has ``/proc``, a process is
also named by its start time, so a recorded pid that now belongs to another process is gone.
"""

from __future__ import annotations

import os
from pathlib import Path

from acct.services.context import Ctx
from acct.services.state import SessionRow


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

"""Is a process still the one acct recorded? Liveness of the tools and of ``acct exec`` sessions.

A pid alone is not an identity: pids are reused. Where the system has ``/proc``, a process is
also named by its start time, so a recorded pid that now belongs to another process is gone.
"""

from __future__ import annotations

from acct.base.pids import running
from acct.services.context import Ctx
from acct.services.state import SessionRow


def is_live(row: SessionRow) -> bool:
    return running(row.pid, row.pid_start) or running(row.child_pid, row.child_start)


def live(ctx: Ctx) -> list[SessionRow]:
    return [r for r in ctx.state.sessions() if is_live(r)]

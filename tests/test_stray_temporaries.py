"""A write killed with SIGKILL between its temporary and its rename leaves the temporary; it
may hold a live token the file itself no longer does (the next lend puts another login there)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from acct.base.fsio import STRAY_TEMPORARY_AGE_S, atomic_write

# The child writes the file once, then stops between its temporary and the rename (the moment a
# kill -9 leaves the temporary behind) and says so.
_KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from acct.base import fsio

    def stop(src, dst):
        print("between", flush=True)
        time.sleep(600)

    fsio.os.replace = stop
    fsio.atomic_write(Path(sys.argv[1]), '{"refresh": "sk-ant-ort01-other-accounts-live"}')
    """
)


def _killed_mid_write(target: Path) -> Path:
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "between"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    (left,) = [p for p in target.parent.iterdir() if p.name != target.name]
    return left


def test_a_write_killed_before_its_rename_leaves_a_hidden_0600_temporary_the_next_write_removes(
    tmp_path: Path,
) -> None:
    target = tmp_path / "agent" / "auth.json"
    atomic_write(target, '{"refresh": "this-accounts-token"}')
    left = _killed_mid_write(target)
    # No tool reads it: hidden, named after the file with the writer's pid, owner-only.
    assert left.name.startswith(".auth.json.") and left.name.endswith(".tmp"), left.name
    assert stat.S_IMODE(left.stat().st_mode) == 0o600
    assert "other-accounts-live" in left.read_text()
    assert target.read_text() == '{"refresh": "this-accounts-token"}'
    # A write right after leaves it (a write of a live process in another PID namespace could
    # look the same for a moment); once it is older than any write takes, the next write
    # removes it.
    atomic_write(target, "{}")
    assert left.exists()
    old = time.time() - STRAY_TEMPORARY_AGE_S - 1
    os.utime(left, (old, old))
    atomic_write(target, '{"refresh": "next"}')
    assert not left.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["auth.json"]


def test_the_temporary_of_a_live_writer_is_never_removed(tmp_path: Path) -> None:
    target = tmp_path / "auth.json"
    mine = tmp_path / f".auth.json.{os.getppid()}.abcd1234.tmp"  # the parent: alive
    mine.write_text("{}")
    old = time.time() - STRAY_TEMPORARY_AGE_S - 1
    os.utime(mine, (old, old))
    atomic_write(target, "{}")
    assert mine.exists()

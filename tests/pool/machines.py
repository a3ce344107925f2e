"""Machines of a pool as worker processes (tests/pool/machine_worker.py), and a gate that lets
them all start at the same instant."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import psycopg

from tests.conftest import REPO


class Machine:
    """A worker process (tests/pool/machine_worker.py): one machine of the pool."""

    def __init__(self, env: dict[str, str]) -> None:
        self.host = env["ACCT_HOST_ID"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.pool.machine_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        assert self.ask_line() == "ready"

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def ask_line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):  # gone already: a test killed it
                self.proc.stdin.close()
        self.proc.wait(timeout=30)


def released_at_the_gate(
    control: psycopg.Connection[tuple[object, ...]], gate: int, n: int
) -> None:
    """Hold the gate until ``n`` machines wait at it, then let them all through at once."""
    deadline = time.monotonic() + 30
    while True:
        row = control.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND objid = %s",
            (gate,),
        ).fetchone()
        if row is not None and row[0] >= n:
            break
        assert time.monotonic() < deadline, "the machines never reached the gate"
        time.sleep(0.002)
    control.execute("SELECT pg_advisory_unlock(%s)", (gate,))

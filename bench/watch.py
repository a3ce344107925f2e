"""What an idle `acct watch` costs, and how soon it shows a rotation made elsewhere.

Run: .venv/bin/python bench/watch.py [SECONDS]

Starts the fake Anthropic server, three accounts in a temporary HOME, and `acct watch` in a
pseudo-terminal (80x30). After a settling second it reads the process's CPU time (user +
system, from /proc) over SECONDS (default 20) of idling, then records a rotation in the state
database and times how long the dashboard takes to show it. Prints CPU percent while idle and
the rotation's delay; the targets are under 1 % and under 2 s.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pexpect  # noqa: E402

from acct.services.context import Ctx  # noqa: E402
from tests.conftest import clean_env, seed_account  # noqa: E402
from tests.fake_anthropic.client import FakeAnthropic  # noqa: E402

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="acct-bench-watch-")) / "home"
    home.mkdir()
    with FakeAnthropic() as fake:
        env = clean_env(home, fake.env())
        ctx = Ctx(env=env)
        a = seed_account(fake, ctx, "alpha", five_hour=10.0, seven_day=5.0)
        b = seed_account(fake, ctx, "beta", five_hour=40.0, seven_day=20.0)
        seed_account(fake, ctx, "gamma", five_hour=70.0, seven_day=60.0)
        child = pexpect.spawn(
            sys.executable,
            ["-m", "acct", "watch"],
            env={**env, "TERM": "xterm-256color"},
            cwd=str(home),
            dimensions=(30, 80),
            encoding="utf-8",
            timeout=30,
        )
        try:
            child.expect("alpha")
            time.sleep(1.0)
            start = cpu_seconds(child.pid)
            end = time.monotonic() + SECONDS
            while time.monotonic() < end:  # drain the screen so the pty never blocks it
                with contextlib.suppress(pexpect.TIMEOUT):
                    child.read_nonblocking(65536, timeout=0.5)
            idle = cpu_seconds(child.pid) - start
            t0 = time.monotonic()
            ctx.state.record("rotate", account_id=a.id, to=b.id, reason="quota")
            child.expect("alpha → beta")
            shown = time.monotonic() - t0
            child.send("q")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
    print(f"idle CPU: {idle / SECONDS * 100:.2f} % over {SECONDS:.0f} s (target < 1 %)")
    print(f"rotation shown after {shown:.2f} s (target < 2 s)")


if __name__ == "__main__":
    main()

"""Benchmarks of ``acct exec``: what it adds to a run, and how fast it switches accounts.

1. The median overhead of ``acct exec --target claude-code -- true`` over ``true`` with a warm
   usage cache and compiled bytecode, as an installed acct has (target: at most 250 ms), and
   the CPU time of one such run (what the machine's other load moves least).
2. The median time from a rate-limited tool's exit to the next tool's start (the exit-side
   rotation, so with ``--no-proxy``: through the proxy the switch happens in flight, which
   bench/proxy.py measures), without the one
   usage request that confirms the limit (target: at most 150 ms). The exit time is the one the
   fake tool writes; the start is when acct spawned the next tool and the confirmation's
   duration, both from acct's history records (``exec``, ``rotate``).

Runs against the fake Anthropic server in a temporary HOME. Prints the figures and exits 1 when
a target is missed.  Usage: ``.venv/bin/python bench/exec.py [--runs N]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from acct.services.context import Ctx
from tests.conftest import clean_env, seed_account
from tests.fake_anthropic.client import FakeAnthropic
from tests.fake_tool import install

OVERHEAD_TARGET_MS = 250.0
SWITCH_TARGET_MS = 150.0


CPU_SPENT: list[float] = []  # each acct run's CPU seconds (user + system), next to its wall time


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    cpu0, t0 = _children_cpu(), time.perf_counter()
    p = subprocess.run(
        cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    elapsed = time.perf_counter() - t0
    CPU_SPENT.append(_children_cpu() - cpu0)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    return elapsed


def with_bytecode(env: dict[str, str], root: Path) -> dict[str, str]:
    """``env`` where Python reads and writes compiled bytecode, as an installed acct has it
    (pip compiles a package's modules on install). The tests' environment turns bytecode off
    (``PYTHONDONTWRITEBYTECODE``), which makes every start compile acct from source: about
    100 ms that no user pays. The cache goes to a directory of the run's, not into the tree."""
    out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return out


def overhead(fake: FakeAnthropic, root: Path, runs: int) -> float:
    home = root / "overhead"
    home.mkdir()
    env = with_bytecode(clean_env(home, fake.env()), root)
    ctx = Ctx(env=env)
    seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    acct = [sys.executable, "-m", "acct", "exec", "--target", "claude-code", "--", "true"]
    timed(acct, env, str(home))  # warms the usage cache and the file
    bare = statistics.median(timed(["true"], env, str(home)) for _ in range(runs))
    CPU_SPENT.clear()
    wrapped = statistics.median(timed(acct, env, str(home)) for _ in range(runs))
    return (wrapped - bare) * 1000


def switch_gaps(fake: FakeAnthropic, root: Path, runs: int) -> list[float]:
    home = root / "switch"
    home.mkdir()
    log = root / "tool.jsonl"
    env = clean_env(home, fake.env())
    env.update(
        PATH=f"{install(root / 'bin')}{os.pathsep}{env.get('PATH', '')}",
        ANTHROPIC_BASE_URL=fake.base_url,
        FAKE_TOOL_LOG=str(log),
    )
    ctx = Ctx(env=env)
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    seed_account(fake, ctx, "b", five_hour=20, seven_day=20)
    reset = int(time.time()) + 3 * 3600
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    gaps = []
    for _ in range(runs):
        ctx.state.unbench(a.id)
        log.unlink(missing_ok=True)
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "acct",
                "exec",
                "--no-proxy",
                "--account",
                "a",
                "--",
                "claude",
                "-p",
                "hi",
            ],
            env=env,
            cwd=str(home),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if p.returncode != 0:
            raise SystemExit(f"acct exec failed ({p.returncode}): {p.stderr[-500:]}")
        rows = [json.loads(x) for x in log.read_text().splitlines()]
        end = next(r["t"] for r in rows if r["event"] == "end")
        history = ctx.state.history()
        rotate = next(h for h in history if h["event"] == "rotate")
        start = next(
            h["started_at"] for h in history if h["event"] == "exec" and h["rotation"] == 1
        )
        gaps.append((start - end) * 1000 - float(rotate["confirm_ms"]))
    return gaps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    with FakeAnthropic() as fake, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        over = overhead(fake, root, args.runs)
        cpu = statistics.median(CPU_SPENT) * 1000
        gaps = switch_gaps(fake, root, min(args.runs, 9))
    gap = statistics.median(gaps)
    ok_over = over <= OVERHEAD_TARGET_MS
    ok_gap = gap <= SWITCH_TARGET_MS
    print(
        f"exec overhead over `true` (median of {args.runs}): {over:.0f} ms "
        f"(target <= {OVERHEAD_TARGET_MS:.0f} ms) {'ok' if ok_over else 'MISSED'}; "
        f"CPU per run {cpu:.0f} ms (less moved by other load on the machine)"
    )
    print(
        f"limited exit -> next start, without the usage confirmation (median of {len(gaps)}): "
        f"{gap:.0f} ms (target <= {SWITCH_TARGET_MS:.0f} ms) {'ok' if ok_gap else 'MISSED'}"
    )
    return 0 if ok_over and ok_gap else 1


if __name__ == "__main__":
    sys.exit(main())

"""How fast is the prompt? Median wall time of `acct prompt` against a bare Python start,
and of the bash prompt function from `acct shell-init bash`, with a check that it starts no
process. Run: .venv/bin/python bench/prompt.py [N]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N = int(sys.argv[1]) if len(sys.argv) > 1 else 30
BIN = Path(sys.executable).parent


def median_ms(argv: list[str], env: dict[str, str]) -> float:
    times = []
    for _ in range(N):
        t = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def setup(home: Path) -> dict[str, str]:
    env = {"HOME": str(home), "PATH": f"{BIN}:{os.environ['PATH']}", "ACCT_HOME": str(home / "acct")}
    cred = home / ".claude" / ".credentials.json"
    cred.parent.mkdir(parents=True)
    cred.write_text("{}")
    st = cred.stat()
    state = home / "acct" / "state"
    state.mkdir(parents=True)
    doc = {"version": 1, "targets": {"claude-code": {"account": "work", "held": True, "path": str(cred),
           "mtime_ns": st.st_mtime_ns, "size": st.st_size, "five_hour": 37.0, "seven_day": 12.0}}}
    (state / "prompt.json").write_text(json.dumps(doc))
    (state / "prompt").write_text("claude-code\twork 37%\n")
    return env


def bash_function(env: dict[str, str], home: Path) -> tuple[float, str]:
    init = subprocess.run([str(BIN / "acct"), "shell-init", "bash", "--no-completion"], env=env,
                          capture_output=True, text=True, check=True).stdout
    script = home / "init.bash"
    script.write_text(init)
    loop = (f"source {script}; t0=$EPOCHREALTIME; for ((i = 0; i < {N * 100}; i++)); do __acct_prompt; done; "
            f't1=$EPOCHREALTIME; echo "$t0 $t1 $ACCT_PROMPT"')
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", loop], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    per_call = (float(out[1]) - float(out[0])) * 1000 / (N * 100)
    processes = "strace not available"
    if shutil.which("strace"):
        trace = home / "trace"
        subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve,fork,vfork,clone,clone3", "-o", str(trace),
                        "bash", "--norc", "--noprofile", "-c", f"source {script}; for i in 1 2 3 4 5; do __acct_prompt; done"],
                       env=env, check=False, capture_output=True)
        lines = trace.read_text().splitlines() if trace.exists() else []
        processes = f"{max(0, len(lines) - 1)} processes started besides bash itself"
    return per_call, processes


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = setup(home)
        base = median_ms([sys.executable, "-c", "pass"], env)
        base_s = median_ms([sys.executable, "-S", "-c", "pass"], env)
        module = median_ms([sys.executable, "-m", "acct", "prompt"], env)
        script = median_ms([str(BIN / "acct"), "prompt"], env)
        print(f"python3 -c pass            {base:7.1f} ms")
        print(f"python3 -S -c pass         {base_s:7.1f} ms")
        print(f"python -m acct prompt      {module:7.1f} ms  ratio {module / base:.2f} (target <= 1.3)")
        print(f"acct prompt (console)      {script:7.1f} ms  ratio {script / base:.2f} (target <= 1.3)")
        per_call, processes = bash_function(env, home)
        print(f"bash __acct_prompt         {per_call:7.3f} ms per call (target < 2 ms); {processes}")


if __name__ == "__main__":
    main()

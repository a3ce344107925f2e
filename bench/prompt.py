"""How fast is the prompt? Median wall and CPU time of `acct prompt` against a bare start of the
same interpreter, and of the bash prompt function from `acct shell-init bash`, with a check that
it starts no process.

Run: .venv/bin/python bench/prompt.py [N] [--wheel]

Every case runs once to warm up (and write bytecode caches), then the cases take turns, N rounds,
so a change in machine load touches them alike. CPU time (user + system of the child) moves less
with load than wall time; both are shown.

The `acct` command is acct's own launcher (src/bin/acct), installed as a script: pip's generated
console-script launcher imports `re` before acct's code runs (for a Windows-only `sys.argv[0]`
fix-up), which costs more than everything acct does. The `python -c 'import re'` line shows that
cost; the "launcher without re" line runs a copy of uv's template for comparison.
`--wheel` also builds a wheel of this checkout and installs it (without dependencies: the
prompt needs none) into a temporary virtualenv, to compare a regular install with the editable
one the checkout uses.
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

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
N = int(ARGS[0]) if ARGS else 30
WHEEL = "--wheel" in sys.argv[1:]
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
TARGET = 1.3

# uv's console-script template (pip's is the same plus `import re` and a `re.sub`).
LAUNCHER = """#!{python}
# -*- coding: utf-8 -*-
import sys
from acct.__main__ import main
if __name__ == "__main__":
    if sys.argv[0].endswith("-script.pyw"):
        sys.argv[0] = sys.argv[0][:-11]
    elif sys.argv[0].endswith(".exe"):
        sys.argv[0] = sys.argv[0][:-4]
    sys.exit(main())
"""


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, child CPU ms) of one run of ``argv``."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - t) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def measure(cases: dict[str, list[str]], env: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Median (wall ms, CPU ms) per case, the cases taking turns."""
    for argv in cases.values():
        run_once(argv, env)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(N):
        for name, argv in cases.items():
            samples[name].append(run_once(argv, env))
    return {
        name: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
        for name, s in samples.items()
    }


def setup(home: Path) -> dict[str, str]:
    env = {
        "HOME": str(home),
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ACCT_HOME": str(home / "acct"),
    }
    cred = home / ".claude" / ".credentials.json"
    cred.parent.mkdir(parents=True)
    cred.write_text("{}")
    st = cred.stat()
    state = home / "acct" / "state"
    state.mkdir(parents=True)
    doc = {
        "version": 1,
        "targets": {
            "claude-code": {
                "account": "work",
                "held": True,
                "path": str(cred),
                "mtime_ns": st.st_mtime_ns,
                "size": st.st_size,
                "five_hour": 37.0,
                "seven_day": 12.0,
            }
        },
    }
    (state / "prompt.json").write_text(json.dumps(doc))
    (state / "prompt").write_text("claude-code\twork 37%\n")
    return env


def launcher(python: Path, where: Path) -> Path:
    path = where / "acct-launcher"
    path.write_text(LAUNCHER.format(python=python))
    path.chmod(0o755)
    return path


def install_wheel(where: Path) -> Path:
    """A fresh virtualenv with this checkout installed from a wheel; its interpreter."""
    dist = where / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(REPO),
        ],
        check=True,
    )
    venv = where / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            *map(str, dist.glob("*.whl")),
        ],
        check=True,
    )
    return python


def cases_for(python: Path, where: Path) -> dict[str, list[str]]:
    script = python.parent / "acct"
    imports_re = "import re" in script.read_text()
    return {
        "python -c pass": [str(python), "-c", "pass"],
        "python -c 'import re'": [str(python), "-c", "import re"],
        f"acct prompt ({'launcher imports re' if imports_re else 'console script'})": [
            str(script),
            "prompt",
        ],
        "acct prompt (launcher without re)": [str(launcher(python, where)), "prompt"],
        "python -m acct prompt": [str(python), "-m", "acct", "prompt"],
    }


def report(title: str, results: dict[str, tuple[float, float]]) -> None:
    base_wall, base_cpu = results["python -c pass"]
    print(f"{title}\n{'':38s} {'wall ms':>8s} {'ratio':>6s} {'cpu ms':>8s} {'ratio':>6s}")
    for name, (wall, cpu) in results.items():
        mark = f"  (target <= {TARGET})" if name.startswith("acct prompt") else ""
        print(
            f"  {name:36s} {wall:8.1f} {wall / base_wall:6.2f} {cpu:8.1f} {cpu / base_cpu:6.2f}{mark}"
        )


def bash_function(env: dict[str, str], home: Path) -> tuple[float, str]:
    init = subprocess.run(
        [str(BIN / "acct"), "shell-init", "bash", "--no-completion"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script = home / "init.bash"
    script.write_text(init)
    loop = (
        f"source {script}; t0=$EPOCHREALTIME; for ((i = 0; i < {N * 100}; i++)); do __acct_prompt; done; "
        f't1=$EPOCHREALTIME; echo "$t0 $t1 $ACCT_PROMPT"'
    )
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", loop],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    per_call = (float(out[1]) - float(out[0])) * 1000 / (N * 100)
    processes = "strace not available"
    if shutil.which("strace"):
        trace = home / "trace"
        subprocess.run(
            [
                "strace",
                "-f",
                "-qq",
                "-e",
                "trace=execve,fork,vfork,clone,clone3",
                "-o",
                str(trace),
                "bash",
                "--norc",
                "--noprofile",
                "-c",
                f"source {script}; for i in 1 2 3 4 5; do __acct_prompt; done",
            ],
            env=env,
            check=False,
            capture_output=True,
        )
        lines = trace.read_text().splitlines() if trace.exists() else []
        processes = f"{max(0, len(lines) - 1)} processes started besides bash itself"
    return per_call, processes


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = setup(home)
        print(f"{N} rounds; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        report(
            f"this checkout ({sys.executable}, editable install)",
            measure(cases_for(Path(sys.executable), home), env),
        )
        if WHEEL:
            where = home / "wheel"
            where.mkdir()
            python = install_wheel(where)
            report(
                f"regular install from a wheel ({python})", measure(cases_for(python, where), env)
            )
        per_call, processes = bash_function(env, home)
        print(f"bash __acct_prompt {per_call:7.3f} ms per call (target < 2 ms); {processes}")


if __name__ == "__main__":
    main()

"""Child supervision: statuses, bytes passed through unchanged, the output tail, signals.

The runner runs in its own process (a small driver script), as it does inside ``acct exec``, so
signals sent to it never reach the test process.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from acct.services.runner import TAIL_BYTES

DRIVER = """
import json, os, sys
from acct.services.runner import run, CommandNotFound
report = os.environ.pop("RUNNER_REPORT")
try:
    r = run(sys.argv[1:], os.environ)
except CommandNotFound as e:
    doc = {"error": e.message, "exit": e.exit_code}
else:
    doc = {
        "status": r.status,
        "tail": r.tail,
        "forwarded": list(r.forwarded),
        "captured": list(r.captured),
        "interrupted": r.interrupted,
    }
open(report, "w").write(json.dumps(doc))
print("SUPERVISOR ALIVE", file=sys.stderr)
"""


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    return tmp_path / "report.json"


def driver(argv: list[str], report: Path) -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-c", DRIVER, *argv], {**os.environ, "RUNNER_REPORT": str(report)}


def drive(
    *argv: str, timeout: float = 30, stdin=subprocess.DEVNULL
) -> tuple[dict, subprocess.CompletedProcess[bytes]]:
    report = (
        Path(os.environ.get("PYTEST_TMP", "/tmp"))
        / f"runner-{os.getpid()}-{time.monotonic_ns()}.json"
    )
    cmd, env = driver(list(argv), report)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, timeout=timeout, stdin=stdin, env=env, check=False
        )
        return json.loads(report.read_text()), proc
    finally:
        report.unlink(missing_ok=True)


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.mark.parametrize("status", [0, 1, 3, 42, 255])
def test_exit_status_passes_through(status: int) -> None:
    report, _ = drive(*py(f"import sys; sys.exit({status})"))
    assert report["status"] == status


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL, signal.SIGHUP])
def test_death_by_signal_is_128_plus_n(sig: int) -> None:
    reset = "" if sig == signal.SIGKILL else f"signal.signal({int(sig)}, signal.SIG_DFL); "
    report, _ = drive(*py(f"import os, signal; {reset}os.kill(os.getpid(), {int(sig)})"))
    assert report["status"] == 128 + sig


def test_bytes_pass_through_unchanged_and_the_tail_is_kept() -> None:
    payload = bytes(range(256)) * 4 + b"\r\n\x1b[31mred\x1b[0m no newline at the end"
    code = (
        "import sys; d=bytes(range(256))*4+b'\\r\\n\\x1b[31mred\\x1b[0m no newline at the end';"
        "sys.stdout.buffer.write(d); sys.stdout.flush(); sys.stderr.write('on stderr\\n')"
    )
    report, proc = drive(*py(code))
    assert proc.stdout == payload
    assert proc.stderr == b"on stderr\nSUPERVISOR ALIVE\n"
    assert "no newline at the end" in report["tail"] and "on stderr" in report["tail"]


def test_tail_is_bounded() -> None:
    code = "import sys; sys.stdout.write('x' * 300000 + 'THE END\\n')"
    report, proc = drive(*py(code))
    assert len(proc.stdout) == 300008
    assert report["tail"].rstrip("\n").endswith("xTHE END")
    assert len(report["tail"].encode()) <= 2 * TAIL_BYTES + 1


def test_stdin_is_inherited(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("from stdin\n")
    with src.open("rb") as stdin:
        _, proc = drive(*py("import sys; print(sys.stdin.read().upper())"), stdin=stdin)
    assert proc.stdout == b"FROM STDIN\n\n"


def test_missing_command_is_127() -> None:
    report, _ = drive("/nonexistent/tool-xyz")
    assert report["exit"] == 127 and "command not found" in report["error"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_are_forwarded_when_not_on_a_terminal(
    tmp_path: Path, report_file: Path, sig: int
) -> None:
    marker = tmp_path / "ready"
    seen = tmp_path / "seen"
    code = (
        "import os, signal, sys, time, pathlib\n"
        f"def h(n, f):\n    pathlib.Path({str(seen)!r}).write_text(str(n)); signal.signal(n, signal.SIG_DFL); os.kill(os.getpid(), n)\n"  # noqa: E501
        "for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT): signal.signal(s, h)\n"
        f"pathlib.Path({str(marker)!r}).write_text('1')\n"
        "time.sleep(60)\n"
    )
    cmd, env = driver(py(code), report_file)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        _wait_for(marker)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    report = json.loads(report_file.read_text())
    assert seen.read_text() == str(int(sig))
    assert report["status"] == 128 + sig
    assert report["forwarded"] == [int(sig)]
    assert b"SUPERVISOR ALIVE" in err and proc.returncode == 0


def test_ctrl_c_on_a_terminal_reaches_the_child_and_spares_the_supervisor(
    tmp_path: Path, report_file: Path
) -> None:
    marker = tmp_path / "ready"
    child = f"import pathlib, time\npathlib.Path({str(marker)!r}).write_text('1')\ntime.sleep(60)\n"
    cmd, env = driver(py(child), report_file)
    term = pexpect.spawn(cmd[0], cmd[1:], timeout=30, env=env)
    try:
        _wait_for(marker)
        term.sendintr()
        term.expect("SUPERVISOR ALIVE")
        term.expect(pexpect.EOF)
    finally:
        term.close(force=True)
    report = json.loads(report_file.read_text())
    assert report["status"] == 130
    assert report["forwarded"] == []  # the terminal signalled the child itself
    assert report["interrupted"]


def test_ctrl_c_a_tool_handles_itself_is_still_recorded_as_an_interrupt(
    tmp_path: Path, report_file: Path
) -> None:
    """A tool that catches Ctrl-C and exits 1 must not look like a tool that failed alone."""
    marker = tmp_path / "ready"
    child = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda n, f: sys.exit(1))\n"
        f"pathlib.Path({str(marker)!r}).write_text('1')\n"
        "time.sleep(60)\n"
    )
    cmd, env = driver(py(child), report_file)
    term = pexpect.spawn(cmd[0], cmd[1:], timeout=30, env=env)
    try:
        _wait_for(marker)
        term.sendintr()
        term.expect("SUPERVISOR ALIVE")
        term.expect(pexpect.EOF)
    finally:
        term.close(force=True)
    report = json.loads(report_file.read_text())
    assert report["status"] == 1
    assert report["interrupted"]


def test_a_run_nobody_interrupted_is_not_marked_interrupted() -> None:
    report, _ = drive(*py("import sys; sys.exit(1)"))
    assert report["status"] == 1 and not report["interrupted"]


def test_stdout_on_a_terminal_with_stderr_redirected_is_not_reported_as_captured(
    tmp_path: Path, report_file: Path
) -> None:
    """Which streams acct sees is per stream: stdout on the terminal is not in the tail."""
    cmd, env = driver(py("import sys; print('to the terminal'); sys.exit(1)"), report_file)
    errors = tmp_path / "stderr.txt"
    shell = f"{shlex.join(cmd)} 2>{shlex.quote(str(errors))}"
    term = pexpect.spawn("/bin/sh", ["-c", shell], timeout=30, env=env)
    try:
        term.expect("to the terminal")
        term.expect(pexpect.EOF)
    finally:
        term.close(force=True)
    report = json.loads(report_file.read_text())
    assert report["captured"] == [2]
    assert "to the terminal" not in report["tail"]


def test_reader_going_away_stops_the_child_with_sigpipe(report_file: Path) -> None:
    """``acct exec -- claude -p x | head -1``: the tool stops once head has its line."""
    cmd, env = driver(["yes", "a line"], report_file)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"a line\n"
        proc.stdout.close()  # what head does after its first line
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    report = json.loads(report_file.read_text())
    assert report["status"] == 128 + signal.SIGPIPE
    assert report["captured"] == [1, 2]
    assert b"SUPERVISOR ALIVE" in err


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)

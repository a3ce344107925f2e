"""`acct prompt`: standard library only, local state only, never an error, stale files marked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from acct.base.paths import Paths
from acct.fast import prompt
from tests.conftest import clean_env

HEAVY = ("typer", "rich", "httpx", "click", "questionary", "filelock", "platformdirs", "tomli_w")


def imported_modules(stderr: str) -> set[str]:
    """Top-level package names from ``python -X importtime`` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            names.add(name.split(".")[0])
    return names


def write_state(env: dict[str, str], targets: dict[str, dict], **extra: object) -> Path:
    path = Path(prompt.prompt_state_path(env))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "targets": targets, **extra}))
    return path


def entry_for(path: Path, **fields: object) -> dict[str, object]:
    st = path.stat()
    return {
        "account": "work",
        "held": True,
        "path": str(path),
        "mtime_ns": st.st_mtime_ns,
        "size": st.st_size,
        **fields,
    }


def run_prompt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acct", "prompt", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def penv(home: Path) -> dict[str, str]:
    return clean_env(home)


@pytest.mark.parametrize(
    "args", [["prompt"], ["prompt", "--format", "{account} {5h}"], ["__complete", "accounts"]]
)
def test_fast_paths_import_only_the_standard_library(penv: dict[str, str], args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "acct", *args],
        capture_output=True,
        text=True,
        env=penv,
        timeout=60,
    )
    assert proc.returncode == 0
    heavy = imported_modules(proc.stderr) & set(HEAVY)
    assert not heavy, f"acct {' '.join(args)} imported {sorted(heavy)}"
    assert "acct.fast.prompt" in proc.stderr or "acct.fast.names" in proc.stderr


def test_console_script_prompt_imports_only_the_standard_library(penv: dict[str, str]) -> None:
    script = Path(sys.executable).parent / "acct"
    if not script.exists():
        pytest.skip("no installed console script next to the interpreter")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(script), "prompt"],
        capture_output=True,
        text=True,
        env=penv,
        timeout=60,
    )
    assert proc.returncode == 0
    assert not imported_modules(proc.stderr) & set(HEAVY)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"ACCT_HOME": "/srv/acct"},
        {"XDG_DATA_HOME": "/x/data", "XDG_STATE_HOME": "/x/state"},
        {"XDG_STATE_HOME": "relative/ignored", "XDG_DATA_HOME": ""},
        {"ACCT_HOME": "~/acct-home"},
    ],
)
def test_prompt_paths_agree_with_paths_from_env(home: Path, extra: dict[str, str]) -> None:
    env = {"HOME": str(home), **extra}
    paths = Paths.from_env(env)
    assert prompt.dirs(env) == (str(paths.data_dir), str(paths.state_dir))
    assert prompt.prompt_state_path(env) == str(paths.prompt_state_file)
    assert prompt.prompt_file_path(env) == str(paths.prompt_file)


def test_prints_account_and_peak_utilization(penv: dict[str, str], tmp_path: Path) -> None:
    cred = tmp_path / "cred.json"
    cred.write_text("{}")
    write_state(penv, {"claude-code": entry_for(cred, five_hour=37.4, seven_day=12.0)})
    proc = run_prompt(penv)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "work 37%\n", "")


def test_format_placeholders(penv: dict[str, str], tmp_path: Path) -> None:
    cred = tmp_path / "auth.json"
    cred.write_text("{}")
    now = 1_700_000_000
    entry = entry_for(
        cred,
        five_hour=80.0,
        seven_day=12.6,
        five_hour_resets_at=now + 2 * 3600 + 5 * 60,
        seven_day_resets_at=now + 3 * 86400,
    )
    state = {"version": 1, "targets": {"pi": entry}}
    fmt = (
        "[{target}] {account} 5h:{5h} 7d:{7d} peak:{peak} in {reset} ({5h_reset}/{7d_reset}) {nope}"
    )
    assert prompt.segment(state, "pi", fmt, now=now) == (
        "[pi] work 5h:80% 7d:13% peak:80% in 2h05m (2h05m/3d0h) {nope}"
    )


def test_default_target_comes_from_the_state(penv: dict[str, str], tmp_path: Path) -> None:
    cred = tmp_path / "auth.json"
    cred.write_text("{}")
    write_state(penv, {"pi": entry_for(cred, account="side", seven_day=5.0)}, default_target="pi")
    assert run_prompt(penv).stdout == "side 5%\n"
    assert run_prompt(penv, "--target", "claude-code").stdout == ""
    assert run_prompt(penv, "-t", "pi", "-f", "{account}").stdout == "side\n"


def test_changed_file_shows_a_marker_not_the_old_name(penv: dict[str, str], tmp_path: Path) -> None:
    """The user ran /login in the tool: the file is not what acct recorded."""
    cred = tmp_path / "cred.json"
    cred.write_text('{"a": 1}')
    write_state(penv, {"claude-code": entry_for(cred, five_hour=37.0)})
    cred.write_text('{"a": 12}')
    proc = run_prompt(penv)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "?\n", "")


def test_file_holding_an_account_acct_cannot_name(tmp_path: Path) -> None:
    cred = tmp_path / "cred.json"
    cred.write_text("{}")
    state = {"version": 1, "targets": {"claude-code": entry_for(cred, account=None, held=True)}}
    assert prompt.segment(state, "claude-code") == "?"
    state["targets"]["claude-code"]["held"] = False
    assert prompt.segment(state, "claude-code") == ""


def test_deleted_file_shows_nothing(tmp_path: Path) -> None:
    cred = tmp_path / "cred.json"
    cred.write_text("{}")
    state = {"version": 1, "targets": {"claude-code": entry_for(cred)}}
    cred.unlink()
    assert prompt.segment(state, "claude-code") == ""


@pytest.mark.parametrize(
    "content",
    [
        None,
        "",
        "not json",
        "[]",
        '{"version": 2, "targets": {}}',
        '{"version": 1, "targets": []}',
        '{"version": 1, "targets": {"claude-code": {"path": 5, "account": ["x"]}}}',
        '{"version": 1, "targets": {"claude-code": "nope"}}',
    ],
)
def test_never_fails_and_never_writes_to_stderr(penv: dict[str, str], content: str | None) -> None:
    if content is not None:
        path = Path(prompt.prompt_state_path(penv))
        path.parent.mkdir(parents=True)
        path.write_text(content)
    proc = run_prompt(penv, "--format")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_unreadable_state_directory(penv: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_prompt({**penv, "ACCT_HOME": str(blocker / "sub")})
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_typer_command_prints_the_same(penv: dict[str, str], tmp_path: Path) -> None:
    cred = tmp_path / "cred.json"
    cred.write_text("{}")
    write_state(penv, {"claude-code": entry_for(cred, five_hour=3.0, seven_day=41.0)})
    code = "import sys; from acct.cli import run; sys.exit(run(sys.argv[1:]))"
    slow = subprocess.run(
        [sys.executable, "-c", code, "prompt", "-f", "{account} {7d}"],
        capture_output=True,
        text=True,
        env=penv,
        timeout=60,
    )
    assert (slow.returncode, slow.stdout) == (0, "work 41%\n")
    assert run_prompt(penv, "-f", "{account} {7d}").stdout == slow.stdout


def test_help(penv: dict[str, str]) -> None:
    proc = run_prompt(penv, "--help")
    assert proc.returncode == 0 and "{peak}" in proc.stdout


def test_a_window_whose_reset_has_passed_shows_zero_not_its_old_figure(tmp_path: Path) -> None:
    cred = tmp_path / "auth.json"
    cred.write_text("{}")
    now = 1_700_000_000
    entry = entry_for(
        cred,
        five_hour=100.0,
        seven_day=30.0,
        five_hour_resets_at=now - 60,
        seven_day_resets_at=now + 86400,
    )
    state = {"version": 1, "targets": {"pi": entry}}
    assert prompt.segment(state, "pi", "{account} {5h} {7d} {peak}", now=now) == "work 0% 30% 30%"

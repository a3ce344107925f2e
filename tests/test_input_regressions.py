"""Inputs that used to end in a traceback, a hang, a wrong answer or raw escapes on the terminal.

Each test is named after what went wrong; each runs the real ``python -m acct`` in a temp HOME
(the stale-lock one also a real process killed with SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from acct.base.errors import Busy
from acct.base.fsio import dir_lock
from acct.services.context import Ctx
from acct.services.targets import get_target
from tests.conftest import AcctRunner, seed_account
from tests.fake_anthropic.client import FakeAnthropic
from tests.test_login import LoginProcess, authorize


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("acct: "), stderr
    return lines[0]


def store_file(ctx: Ctx, text: str | bytes) -> Path:
    path = ctx.paths.accounts_file
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def tool_file(ctx: Ctx, target: str, text: str) -> Path:
    path = get_target(target).path(ctx.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- 6: tracebacks ---------------------------------------------------------------------------


def test_deeply_nested_store_is_one_line_not_a_recursion_traceback(
    ctx: Ctx, acct: AcctRunner
) -> None:
    path = store_file(ctx, "version = 1\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    line = one_line(acct("list").stderr)
    assert str(path) in line and "nested too deeply" in line


def test_deeply_nested_tool_file_is_one_line_not_a_recursion_traceback(
    ctx: Ctx, acct: AcctRunner
) -> None:
    path = tool_file(ctx, "pi", "[" * 100_000 + "]" * 100_000)
    proc = acct("import", "pi")
    assert proc.returncode == 1
    assert str(path) in one_line(proc.stderr)


def test_store_integer_over_4300_digits_is_one_line_not_a_traceback(
    ctx: Ctx, acct: AcctRunner
) -> None:
    path = store_file(ctx, "version = 1\nx = " + "9" * 5000 + "\n")
    proc = acct("list")
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert str(path) in line and "more digits than Python converts" in line


def test_store_expiry_of_400_digits_is_one_line_not_an_overflow_traceback(
    ctx: Ctx, acct: AcctRunner
) -> None:
    path = store_file(
        ctx,
        "version = 1\n[[accounts]]\nname = 'a'\nid = '1'\n[accounts.tokens]\naccess = 'x'\n"
        f"expires_at = {'9' * 400}\n",
    )
    proc = acct("list")
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert str(path) in line and "'expires_at' is not a usable time" in line


@pytest.mark.parametrize("target", ["claude-code", "pi"])
@pytest.mark.parametrize("expiry", ["NaN", "Infinity", "-Infinity", "1e400", str(10**30)])
def test_nan_or_infinity_expiry_in_a_tool_file_is_one_line_not_a_traceback(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, target: str, expiry: str
) -> None:
    seed_account(fake, ctx, "work")
    key, field = (
        ("claudeAiOauth", "expiresAt") if target == "claude-code" else ("anthropic", "expires")
    )
    entry = (
        '{"type": "oauth", "access": "a", "refresh": "r", "accessToken": "a", "refreshToken": "r"'
    )
    path = tool_file(ctx, target, f'{{"{key}": {entry}, "{field}": {expiry}}}}}')
    before = path.read_bytes()
    for args in (("import", target), ("use", "work", "--target", target)):
        proc = acct(*args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert str(path) in one_line(proc.stderr)
    assert path.read_bytes() == before


def test_bad_port_in_acct_token_url_is_one_line_naming_the_variable(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work")
    proc = acct("refresh", "work", env={"ACCT_TOKEN_URL": "http://127.0.0.1:99999/v1/oauth/token"})
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert "ACCT_TOKEN_URL" in line and "port out of range" in line


def test_import_from_dev_zero_is_refused_without_reading_it(acct: AcctRunner) -> None:
    proc = acct("import", "pi", "--from", "/dev/zero", timeout=30)
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert "/dev/zero is a character device, not a regular file" in line


def test_api_key_from_endless_stdin_is_refused_not_read_into_memory(
    env: dict[str, str], ctx: Ctx
) -> None:
    with open("/dev/zero", "rb") as zero:
        proc = subprocess.run(
            [sys.executable, "-m", "acct", "login", "k", "--api-key"],
            stdin=zero,
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
    assert proc.returncode == 2
    assert "the API key on stdin is longer than 64 KiB" in one_line(proc.stderr)
    assert not ctx.paths.accounts_file.exists()


_BOOM = textwrap.dedent(
    """
    import sys
    from acct.cli import app, run

    @app.command("boom")
    def boom() -> None:
        raise KeyError("sk-ant-oat01-SECRET no such thing\\nsecond line")

    sys.exit(run(["boom"]))
    """
)


def test_an_unexpected_exception_is_one_line_with_a_hint_not_a_traceback(
    env: dict[str, str],
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _BOOM],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert line.startswith("acct: internal error: KeyError: ")
    assert "ACCT_DEBUG=1" in line and "sk-ant-oat01-SECRET" not in line
    debug = subprocess.run(
        [sys.executable, "-c", _BOOM],
        capture_output=True,
        text=True,
        env={**env, "ACCT_DEBUG": "1"},
        timeout=60,
        check=False,
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == line


# --- 7: FIFOs --------------------------------------------------------------------------------


def test_fifo_in_place_of_the_store_does_not_hang(ctx: Ctx, acct: AcctRunner) -> None:
    path = ctx.paths.accounts_file
    path.parent.mkdir(parents=True, mode=0o700)
    os.mkfifo(path)
    proc = acct("list", timeout=30)
    assert proc.returncode == 1
    assert f"{path} is a FIFO (named pipe), not a regular file" in one_line(proc.stderr)


@pytest.mark.parametrize("target", ["claude-code", "opencode", "pi"])
def test_fifo_in_place_of_a_tool_file_does_not_hang(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, target: str
) -> None:
    seed_account(fake, ctx, "work")
    path = get_target(target).path(ctx.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    for args in (("use", "work", "--target", target), ("import", target)):
        proc = acct(*args, timeout=30)
        assert proc.returncode == 1, (args, proc.stderr)
        assert f"{path} is a FIFO (named pipe)" in one_line(proc.stderr)


def test_fifo_in_place_of_the_state_database_does_not_hang(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work")
    ctx.paths.state_dir.mkdir(parents=True, exist_ok=True)
    os.mkfifo(ctx.paths.state_db)
    proc = acct("list", timeout=30)
    assert proc.returncode == 1
    assert f"{ctx.paths.state_db} is a FIFO" in one_line(proc.stderr)


def test_fifo_in_place_of_the_prompt_state_or_the_store_does_not_hang_the_fast_paths(
    ctx: Ctx, acct: AcctRunner
) -> None:
    ctx.paths.state_dir.mkdir(parents=True)
    os.mkfifo(ctx.paths.prompt_state_file)
    ctx.paths.data_dir.mkdir(parents=True)
    os.mkfifo(ctx.paths.accounts_file)
    prompt = acct("prompt", timeout=30)
    assert (prompt.returncode, prompt.stdout, prompt.stderr) == (0, "", "")
    names = acct("__complete", "accounts", timeout=30)
    assert (names.returncode, names.stdout, names.stderr) == (0, "", "")


# --- 8: dangling symlinks --------------------------------------------------------------------


def test_dangling_symlink_at_the_store_is_an_error_not_no_accounts_yet(
    ctx: Ctx, acct: AcctRunner, tmp_path: Path
) -> None:
    gone = tmp_path / "unmounted" / "acct" / "accounts.toml"
    ctx.paths.data_dir.mkdir(parents=True, mode=0o700)
    ctx.paths.accounts_file.symlink_to(gone)
    proc = acct("list")
    assert proc.returncode == 1 and "No accounts yet" not in proc.stderr + proc.stdout
    line = one_line(proc.stderr)
    assert f"is a symlink to {gone}, which does not exist" in line


def test_a_write_through_a_dangling_store_symlink_creates_nothing_outside(
    ctx: Ctx, acct: AcctRunner, tmp_path: Path
) -> None:
    gone = tmp_path / "unmounted" / "acct" / "accounts.toml"
    ctx.paths.data_dir.mkdir(parents=True, mode=0o700)
    ctx.paths.accounts_file.symlink_to(gone)
    proc = acct("login", "ci", "--api-key", input="sk-ant-api03-key\n")
    assert proc.returncode == 1
    assert str(gone) in one_line(proc.stderr)
    assert not (tmp_path / "unmounted").exists()
    assert ctx.paths.accounts_file.is_symlink()


def test_dangling_symlink_at_the_data_directory_is_an_error_not_no_accounts_yet(
    ctx: Ctx, acct: AcctRunner, tmp_path: Path
) -> None:
    ctx.paths.data_dir.parent.mkdir(parents=True)
    ctx.paths.data_dir.symlink_to(tmp_path / "gone")
    proc = acct("list")
    assert proc.returncode == 1
    assert f"{ctx.paths.data_dir} is a symlink to {tmp_path / 'gone'}" in one_line(proc.stderr)
    assert not (tmp_path / "gone").exists()


# --- 10: configuration and environment -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("usage_timeout = 0\n", "usage_timeout must be a positive number"),
        ("usage_timeout = -5\n", "usage_timeout must be a positive number"),
        ("usage_timeout = nan\n", "usage_timeout must be a finite number"),
        ("refresh_margin = inf\n", "refresh_margin must be a finite number"),
        ("cooloff = -inf\n", "cooloff must be a finite number"),
        ("usage_min_age = nan\n", "usage_min_age must be a finite number"),
        ("usage_timeout = 1e300\n", "usage_timeout is more than a year"),
        ("max_rotations = inf\n", "max_rotations must be a non-negative number"),
        ("max_rotations = 2.5\n", "max_rotations must be a non-negative number, a whole one"),
        ('default_target = "vim"\n', "default_target 'vim' is not a target"),
        ("[targets.vim]\nresume_args = []\n", "[targets.vim] is not a target"),
    ],
)
def test_bad_config_values_that_were_accepted_are_refused(
    ctx: Ctx, acct: AcctRunner, text: str, what: str
) -> None:
    ctx.paths.config_file.parent.mkdir(parents=True)
    ctx.paths.config_file.write_text(text)
    proc = acct("list")
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert str(ctx.paths.config_file) in line and what in line


@pytest.mark.parametrize(
    ("var", "value", "what"),
    [
        ("HOME", "relative/home", "HOME is the relative path 'relative/home'"),
        ("HOME", "", "HOME is empty"),
        ("ACCT_HOME", "acct-here", "ACCT_HOME is the relative path 'acct-here'"),
    ],
)
def test_relative_or_empty_home_is_refused_naming_the_variable(
    env: dict[str, str], home: Path, var: str, value: str, what: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "acct", "login", "ci", "--api-key"],
        input="sk-ant-api03-key\n",
        capture_output=True,
        text=True,
        env={**env, var: value},
        cwd=home,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert what in one_line(proc.stderr)
    assert sorted(p.name for p in home.iterdir()) == []  # nothing relative to the working dir


# --- 12: escape sequences from the server ----------------------------------------------------

EVIL_EMAIL = "ev\x1b]0;owned\x07il@example.com"
EVIL_ORG = "Org\x1b[2J\x9b31m\u202eGRO"
EVIL_NAME = "Dis\x1b[31mplay"


def _raw_escapes(text: str) -> list[str]:
    return [c for c in ("\x1b", "\x07", "\x9b", "\u202e") if c in text]


def test_escape_sequences_in_server_strings_never_reach_the_terminal_raw(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    fake.add_account(email=EVIL_EMAIL, org_name=EVIL_ORG, display_name=EVIL_NAME)
    login = LoginProcess(env, "--no-browser", "evil")
    location = authorize(login.url()).headers["location"]
    httpx.get(location, timeout=30)
    code, out, err = login.finish()
    assert code == 0, err
    assert not _raw_escapes(out + err), (out, err)
    assert "ev\\x1b]0;owned\\x07il@example.com" in out  # shown, escaped
    acc = ctx.store.read().get("evil")
    assert acc.email == EVIL_EMAIL and acc.org_name == EVIL_ORG  # stored as the server said
    for args in (("list",), ("use", "evil"), ("status",), ("remove", "nobody")):
        proc = acct(*args)
        assert not _raw_escapes(proc.stdout + proc.stderr), (args, proc.stdout, proc.stderr)
    listing = acct("list")
    assert "ev\\x1b]0;owned\\x07il@example.com" in listing.stdout
    doc = json.loads(acct("list", "--json").stdout)
    assert doc["accounts"][0]["email"] == EVIL_EMAIL  # JSON keeps the value, escaped by JSON


def test_escape_sequences_in_an_error_message_are_shown_not_obeyed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from acct.base.errors import AcctError
    from acct.cli import report

    report(AcctError(f"no account with the email {EVIL_EMAIL}", hint=f"see {EVIL_ORG}"))
    err = capsys.readouterr().err
    assert not _raw_escapes(err) and err.count("\n") == 1
    assert "ev\\x1b]0;owned\\x07il@example.com" in err


def test_escape_sequences_in_the_picker_are_shown_not_obeyed(fake: FakeAnthropic, ctx: Ctx) -> None:
    from acct.app.views import current_views
    from acct.cli.picker import choice_titles

    seed_account(fake, ctx, "evil", email=EVIL_EMAIL)
    titles = choice_titles(current_views(ctx), 200)
    assert not _raw_escapes("".join(titles)) and "\\x1b" in titles[0]


# --- Pi's lock left behind by a killed acct --------------------------------------------------

_HOLD = textwrap.dedent(
    """
    import os, sys
    from acct.services.targets import get_target
    target = get_target(sys.argv[1])
    path = target.path(os.environ)
    with target._locked(os.environ, path):
        print("held", flush=True)
        sys.stdin.read()
    """
)


def _kill_while_holding(env: dict[str, str], target: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, target],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)


@pytest.mark.parametrize("target", ["pi", "claude-code"])
def test_tool_lock_left_by_a_killed_acct_does_not_make_the_next_use_busy(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], acct: AcctRunner, target: str
) -> None:
    seed_account(fake, ctx, "work")
    t = get_target(target)
    path = t.path(ctx.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    _kill_while_holding(env, target)
    lock = t.lock_dir(ctx.env, path)
    assert lock is not None and lock.is_dir()  # the killed process left it
    proc = acct("use", "work", "--target", target)
    assert proc.returncode == 0, proc.stderr
    assert not lock.exists()
    from acct.base.fsio import lock_owner_record

    assert not lock_owner_record(ctx.paths.locks_dir, lock).exists()


def test_a_tool_lock_held_by_a_live_acct_is_not_broken(ctx: Ctx, env: dict[str, str]) -> None:
    t = get_target("pi")
    path = t.path(ctx.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, "pi"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        lock = t.lock_dir(ctx.env, path)
        assert lock is not None
        with pytest.raises(Busy), dir_lock(lock, timeout=0.3, owner_dir=ctx.paths.locks_dir):
            pass
        assert lock.is_dir()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_tool_lock_the_tool_made_is_left_to_go_stale(ctx: Ctx, tmp_path: Path) -> None:
    """A directory acct has no record of (the tool made it) is never broken early."""
    lock = tmp_path / "auth.json.lock"
    lock.mkdir()
    with pytest.raises(Busy), dir_lock(lock, timeout=0.3, owner_dir=ctx.paths.locks_dir):
        pass
    assert lock.is_dir()


def test_a_record_of_a_dead_acct_does_not_break_a_new_directory_in_its_place(
    ctx: Ctx, env: dict[str, str]
) -> None:
    """The killed acct's directory went (the tool took it over), and the tool made a new one:
    the old record must not break it, even when the new directory reuses the inode."""
    t = get_target("pi")
    path = t.path(ctx.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    _kill_while_holding(env, "pi")
    lock = t.lock_dir(ctx.env, path)
    assert lock is not None
    from acct.base.fsio import lock_owner_record

    record = lock_owner_record(ctx.paths.locks_dir, lock)
    lock.rmdir()
    lock.mkdir()  # the tool's own lock now
    pid, start, _ = record.read_text().split()
    record.write_text(f"{pid} {start} {lock.stat().st_ino}\n")  # even with the same inode
    os.utime(lock, ns=(record.stat().st_mtime_ns + 10**9,) * 2)  # made after the record
    with pytest.raises(Busy), dir_lock(lock, timeout=0.3, owner_dir=ctx.paths.locks_dir):
        pass
    assert lock.is_dir()


# --- a paste from an endless stdin -------------------------------------------------------------


def test_an_endless_paste_on_stdin_is_cut_and_ends_instead_of_filling_the_memory() -> None:
    import queue
    import threading

    from acct.services.oauth.loopback import _read_lines

    read_end, write_end = os.pipe()

    def endless() -> None:  # /dev/zero through a pipe: no newline, ever
        with contextlib.suppress(OSError):
            while True:
                os.write(write_end, b"\0" * 65536)

    threading.Thread(target=endless, daemon=True).start()
    events: queue.Queue[tuple[str, object]] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(read_end, events), daemon=True)
    reader.start()
    kind, paste = events.get(timeout=60)
    assert kind == "paste" and isinstance(paste, str) and len(paste) <= 16 * 1024
    assert events.get(timeout=60) == ("eof", None)
    reader.join(timeout=60)
    os.close(read_end)  # the writer gets EPIPE and stops
    os.close(write_end)


def test_an_account_name_with_brackets_is_not_read_as_markup(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "[bold]x")
    for args, said in (
        (("disable", "[bold]x"), ""),
        (("disable", "[bold]x"), "[bold]x is disabled already."),
        (("rename", "[bold]x", "[red]y"), "Renamed [bold]x to [red]y."),
    ):
        proc = acct(*args)
        assert proc.returncode == 0, proc.stderr
        assert said in proc.stderr or said in proc.stdout, (proc.stdout, proc.stderr)


def test_the_config_knows_every_target() -> None:
    from acct.base.config import TARGETS
    from acct.services.targets import TARGET_NAMES

    assert TARGETS == TARGET_NAMES


def test_a_login_whose_email_no_name_can_hold_was_lost_after_the_code_exchange(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx
) -> None:
    """Without a NAME the email names the account; one with control characters failed the name
    rule after the code had been spent, so the fresh login was lost."""
    fake.add_account(email=EVIL_EMAIL)
    login = LoginProcess(env, "--no-browser")
    location = authorize(login.url()).headers["location"]
    httpx.get(location, timeout=30)
    code, out, err = login.finish()
    assert code == 0, err
    (acc,) = list(ctx.store.read())
    assert acc.email == EVIL_EMAIL and acc.tokens is not None
    assert not _raw_escapes(acc.name) and "owned" in acc.name

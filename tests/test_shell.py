"""The prompt state files and the shell-init snippets that read them without starting a process."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from acct.base.models import Account, Holder, Usage, Window
from acct.services import prompt_state
from acct.services.context import Ctx
from acct.services.targets import TARGET_NAMES, get_target
from tests.conftest import assert_no_secrets, seed_account, store_secrets


def lend(ctx: Ctx, name: str, target: str = "claude-code") -> Path:
    """Write the account into the target's file and record custody, as a lend does."""
    t = get_target(target)
    acc = ctx.store.read().get(name)
    entry = t.write(ctx.env, acc)
    path = t.path(ctx.env)
    with ctx.store.transaction() as accounts:
        a = accounts.get(name)
        accounts.put(
            a.copy(holder=Holder(target, str(path), entry.lineage_fingerprint, int(time.time())))
        )
    return path


@pytest.fixture
def work(fake, ctx: Ctx) -> Account:
    acc = seed_account(fake, ctx, "work")
    now = time.time()
    ctx.state.put_usage(acc.id, Usage(Window(37.2, now + 3600), Window(12.0, now + 86400 * 3)))
    return acc


def test_update_writes_both_files_privately(ctx: Ctx, work: Account) -> None:
    path = lend(ctx, "work")
    doc = prompt_state.update(ctx)
    st = path.stat()
    entry = doc["targets"]["claude-code"]
    assert entry["account"] == "work" and entry["held"] is True
    assert (entry["path"], entry["mtime_ns"], entry["size"]) == (
        str(path),
        st.st_mtime_ns,
        st.st_size,
    )
    assert (entry["five_hour"], entry["seven_day"], entry["benched_until"]) == (37.2, 12.0, None)
    assert entry["fetched_at"] is not None and entry["five_hour_resets_at"] is not None
    assert set(doc["targets"]) == set(TARGET_NAMES)
    on_disk = json.loads(ctx.paths.prompt_state_file.read_text())
    assert on_disk == doc and on_disk["version"] == 1
    assert ctx.paths.prompt_file.read_text() == "claude-code\twork 37%\n"
    for p in (ctx.paths.prompt_state_file, ctx.paths.prompt_file):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert_no_secrets([ctx.paths.prompt_state_file.read_text()], store_secrets(ctx))


def test_update_records_bench_and_cli_prompt_reads_it(ctx: Ctx, work: Account, acct) -> None:
    lend(ctx, "work")
    ctx.state.bench(work.id, time.time() + 600, kind="quota", reason="limit")
    doc = prompt_state.update(ctx)
    assert doc["targets"]["claude-code"]["benched_until"] is not None
    assert acct("prompt").stdout == "work 37%\n"
    assert acct("prompt", "--format", "{account}:{5h}:{7d}").stdout == "work:37%:12%\n"


def test_file_taken_over_by_another_login_is_not_named(ctx: Ctx, work: Account, fake, acct) -> None:
    """Tokens in the file are not the lineage acct lent: the prompt must not claim `work`."""
    lend(ctx, "work")
    other = seed_account(fake, ctx, "other")
    get_target("claude-code").write(ctx.env, other)  # as if the user ran /login in the tool
    doc = prompt_state.update(ctx)
    assert doc["targets"]["claude-code"]["account"] is None
    assert doc["targets"]["claude-code"]["held"] is True
    assert ctx.paths.prompt_file.read_text() == "claude-code\t?\n"
    assert acct("prompt").stdout == "?\n"


def test_no_files_no_lines(ctx: Ctx, work: Account) -> None:
    doc = prompt_state.update(ctx)
    assert all(e["account"] is None and e["mtime_ns"] is None for e in doc["targets"].values())
    assert ctx.paths.prompt_file.read_text() == ""


def test_corrupt_target_file_does_not_break_update(ctx: Ctx, work: Account) -> None:
    path = lend(ctx, "work")
    path.write_text("{not json")
    doc = prompt_state.update(ctx)
    assert doc["targets"]["claude-code"]["account"] is None
    assert path.read_text() == "{not json"


# --- shell-init --------------------------------------------------------------------------------


def shell_init(acct, shell: str, *args: str) -> str:
    proc = acct("shell-init", shell, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def lent(ctx: Ctx, work: Account) -> Ctx:
    lend(ctx, "work")
    prompt_state.update(ctx)
    return ctx


def test_shell_init_embeds_the_prompt_file_path(acct, lent: Ctx) -> None:
    text = shell_init(acct, "bash", "--no-completion")
    assert str(lent.paths.prompt_file) in text
    assert "complete -F" not in text
    assert "complete -F _acct acct" in shell_init(acct, "bash")


def test_bash_prompt_function(acct, lent: Ctx, tmp_path: Path) -> None:
    script = tmp_path / "init.bash"
    script.write_text(shell_init(acct, "bash"))
    out = subprocess.run(
        [
            "bash",
            "--norc",
            "--noprofile",
            "-c",
            f'source {script}; source {script}; eval "$PROMPT_COMMAND"; printf "%s|%s" "$ACCT_PROMPT" "$PROMPT_COMMAND"',  # noqa: E501
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (out.stdout, out.stderr) == ("work 37%|__acct_prompt", "")


def test_bash_prompt_for_another_target_is_empty(acct, lent: Ctx, tmp_path: Path) -> None:
    script = tmp_path / "init.bash"
    script.write_text(shell_init(acct, "bash", "--target", "pi", "--no-completion"))
    out = subprocess.run(
        [
            "bash",
            "--norc",
            "-c",
            f'ACCT_PROMPT=x; source {script}; __acct_prompt; echo "[$ACCT_PROMPT]"',
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.stdout == "[]\n"


@pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed")
def test_bash_prompt_function_starts_no_process(acct, lent: Ctx, tmp_path: Path) -> None:
    script = tmp_path / "init.bash"
    script.write_text(shell_init(acct, "bash", "--no-completion"))
    trace = tmp_path / "trace"
    out = subprocess.run(
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
            f'source {script}; for i in 1 2 3; do __acct_prompt; done; echo "$ACCT_PROMPT"',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0 and "ptrace" in out.stderr:
        pytest.skip("strace cannot trace here")
    assert out.stdout == "work 37%\n"
    calls = [
        line
        for line in trace.read_text().splitlines()
        if "execve(" in line or "clone" in line or "fork(" in line
    ]
    assert len(calls) == 1 and "execve(" in calls[0], calls  # bash itself, nothing else


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
def test_zsh_prompt_function(acct, lent: Ctx, tmp_path: Path) -> None:
    script = tmp_path / "init.zsh"
    script.write_text(shell_init(acct, "zsh"))
    out = subprocess.run(
        [
            "zsh",
            "-f",
            "-c",
            f'source {script}; __acct_prompt; print -r -- "$ACCT_PROMPT|$precmd_functions"',
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (out.stdout, out.stderr) == ("work 37%%|__acct_prompt\n", "")


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
def test_fish_prompt_function(acct, lent: Ctx, tmp_path: Path) -> None:
    script = tmp_path / "init.fish"
    script.write_text(shell_init(acct, "fish"))
    out = subprocess.run(
        ["fish", "--no-config", "-c", f"source {script}; echo '['(__acct_prompt)']'"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (out.stdout, out.stderr) == ("[work 37%]\n", "")


def test_missing_prompt_file_is_quiet(acct, ctx: Ctx, tmp_path: Path) -> None:
    script = tmp_path / "init.bash"
    script.write_text(shell_init(acct, "bash", "--no-completion"))
    out = subprocess.run(
        ["bash", "--norc", "-c", f'source {script}; __acct_prompt; echo "[$ACCT_PROMPT]"'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (out.stdout, out.stderr) == ("[]\n", "")

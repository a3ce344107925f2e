"""Completion scripts: committed copies match the generator; real shells complete from them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
import typer

from acct.base.models import Account
from acct.cli import gen
from acct.services.context import Ctx
from tests.conftest import REPO, clean_env

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def root() -> gen.Command:
    return gen.tree()


@pytest.fixture
def env(offline_env: dict[str, str]) -> dict[str, str]:
    """Completion needs no HTTP: no fake server for this module."""
    return offline_env


@pytest.fixture
def cenv(home: Path) -> dict[str, str]:
    """A shell environment whose `acct` is this checkout's, with two accounts in its store."""
    env = clean_env(home)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    with Ctx(env).store.transaction() as accounts:
        accounts.add(Account(name="work", kind="api_key", api_key="k1"))
        accounts.add(Account(name="side-2", kind="api_key", api_key="k2"))
    return env


def test_committed_completions_match_the_command_tree(root: gen.Command) -> None:
    for path in ("completions/acct.bash", "completions/_acct", "completions/acct.fish"):
        generated = gen.GENERATORS[path](root)
        assert (REPO / path).read_text() == generated, (
            f"{path} is stale: run `python -m acct.cli.gen`"
        )


def test_completion_command_prints_the_script(acct) -> None:
    for shell, path in (("bash", "acct.bash"), ("zsh", "_acct"), ("fish", "acct.fish")):
        proc = acct("completion", shell)
        assert proc.returncode == 0 and proc.stdout == (REPO / "completions" / path).read_text()


def test_account_names_command_is_quiet_on_a_corrupt_store(acct, ctx: Ctx) -> None:
    ctx.paths.accounts_file.parent.mkdir(parents=True)
    ctx.paths.accounts_file.write_text("[[[ not toml")
    proc = acct("__complete", "accounts")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def bash_complete(script: str, env: dict[str, str], *words: str) -> list[str]:
    """Run the completion function of ``script`` in a real bash for the command line ``words``."""
    driver = (
        f"source {script}\n"
        'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}\n'
        "_acct acct\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", driver, "bash", *words],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.stderr == ""
    return [w for w in proc.stdout.splitlines() if w]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["acct", ""], {"prompt", "shell-init", "completion"}),
        (["acct", "shell-"], {"shell-init"}),
        (
            ["acct", "prompt", "--target", ""],
            {"claude-code", "opencode", "pi", "codex", "pi-chatgpt"},
        ),
        (["acct", "prompt", "--target", "=", "o"], {"opencode"}),
        (["acct", "shell-init", ""], {"bash", "zsh", "fish"}),
        (["acct", "prompt", "--"], {"--target", "--format"}),
    ],
)
def test_bash_completes_commands_options_and_values(cenv, words, expected) -> None:
    got = set(bash_complete(str(REPO / "completions/acct.bash"), cenv, *words))
    assert expected <= got, got


def account_commands(root: gen.Command) -> list[str]:
    return [c.name for c in root.walk() if c.arguments and c.arguments[0].kind == "account"]


def test_bash_completes_account_names_from_the_store(cenv, root: gen.Command) -> None:
    commands = account_commands(root)
    if not commands:
        pytest.skip("no command takes an account name yet")
    script = str(REPO / "completions/acct.bash")
    assert set(bash_complete(script, cenv, "acct", *commands[0].split(), "")) == {"work", "side-2"}
    assert bash_complete(script, cenv, "acct", *commands[0].split(), "si") == ["side-2"]


def complete_account(incomplete: str) -> list[str]:
    from acct.cli.common import complete_account as real

    return real(incomplete)


def wrapper_app() -> typer.Typer:
    """A small app shaped like `acct exec`: options, then `--` and a command line."""
    app = typer.Typer()

    @app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def exec(
        argv: Annotated[list[str], typer.Argument(help="The command.")],
        account: Annotated[
            str | None, typer.Option("--account", "-a", autocompletion=complete_account)
        ] = None,
        log: Annotated[Path | None, typer.Option("--log")] = None,
    ) -> None:
        """Run a command."""

    @app.command()
    def use(name: Annotated[str, typer.Argument(autocompletion=complete_account)]) -> None:
        """Use an account."""

    return app


@pytest.fixture(scope="module")
def wrapper_tree() -> gen.Command:
    return gen.tree(wrapper_app())


def test_tree_reads_kinds(wrapper_tree: gen.Command) -> None:
    cmds = {c.name: c for c in wrapper_tree.walk()}
    ex = cmds["exec"]
    assert [a.kind for a in ex.arguments] == ["command"]
    assert {o.name: o.kind for o in ex.options} == {
        "account": "account",
        "log": "file",
        "help": "none",
    }
    assert [a.kind for a in cmds["use"].arguments] == ["account"]


@pytest.mark.parametrize(
    ("words", "expected", "unexpected"),
    [
        (["acct", "exec", "--", "ech"], {"echo"}, set()),
        (["acct", "exec", "-a", "work", "--", "printf"], {"printf"}, set()),
        (["acct", "exec", "--account", ""], {"work", "side-2"}, set()),
        (["acct", "exec", "-a", "=", "s"], {"side-2"}, set()),
        (["acct", "exec", "--", "echo", "--acc"], set(), {"--account"}),
        (["acct", "use", "w"], {"work"}, set()),
    ],
)
def test_bash_wrapped_command_line(
    cenv, tmp_path, wrapper_tree, words, expected, unexpected
) -> None:
    script = tmp_path / "wrapper.bash"
    script.write_text(gen.bash(wrapper_tree))
    got = set(bash_complete(str(script), cenv, *words))
    assert expected <= got and not (unexpected & got), got


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
class TestFish:
    def complete(self, script: Path, env: dict[str, str], line: str) -> list[str]:
        proc = subprocess.run(
            ["fish", "--no-config", "-c", f"source {script}; complete -C {line!r}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert proc.stderr == ""
        return [w.split("\t")[0] for w in proc.stdout.splitlines()]

    def test_commands_and_values(self, cenv) -> None:
        script = REPO / "completions/acct.fish"
        assert {"prompt", "shell-init"} <= set(self.complete(script, cenv, "acct "))
        assert set(self.complete(script, cenv, "acct prompt --target ")) == {
            "claude-code",
            "opencode",
            "pi",
            "codex",
            "pi-chatgpt",
        }
        assert set(self.complete(script, cenv, "acct completion ")) == {"bash", "zsh", "fish"}

    def test_accounts_and_wrapped_command(self, cenv, tmp_path, wrapper_tree) -> None:
        script = tmp_path / "wrapper.fish"
        script.write_text(gen.fish(wrapper_tree))
        assert set(self.complete(script, cenv, "acct use ")) == {"work", "side-2"}
        assert set(self.complete(script, cenv, "acct exec --account ")) == {"work", "side-2"}
        assert "echo" in self.complete(script, cenv, "acct exec -- ech")
        assert "--account" not in self.complete(script, cenv, "acct exec -- echo --acc")


ZSH_SETUP = r"""
bindkey -e
fpath=({fpath} $fpath)
autoload -Uz compinit && compinit -u -D
unsetopt autolist beep
__t_capture={capture}
# Record the matches each completion function adds (after zsh filtered them by what was typed),
# then add them for real. Calls that only collect matches into an array (-O, -A, -D) pass through.
compadd() {{
    local __t_arg
    for __t_arg in "$@"; do
        [[ $__t_arg == (-|--) ]] && break
        if [[ $__t_arg == -[OAD]* ]]; then
            builtin compadd "$@"
            return
        fi
    done
    local -a __t_hits
    builtin compadd -A __t_hits "$@"
    (( $#__t_hits )) && print -rl -- $__t_hits >>| $__t_capture
    builtin compadd "$@"
}}
__t_done() {{ print -r -- "BUFFER:$BUFFER" >>| $__t_capture; print -r -- END >>| $__t_capture }}
zle -N __t_done
bindkey '^T' __t_done
PS1='> '
print -r -- END >| $__t_capture
"""


class ZshSession:
    """An interactive `zsh -f` with compinit and the committed `_acct` on fpath, typed at like a person.

    ``complete(line)`` types ``line``, presses Tab, then a key whose widget writes the command
    line to a file: the candidates zsh offered and the line as Tab left it.
    """

    def __init__(self, env: dict[str, str], tmp: Path, script: Path) -> None:
        import pexpect

        fpath = tmp / "fpath"
        fpath.mkdir()
        shutil.copy(script, fpath / "_acct")
        self.capture = tmp / "capture"
        setup = tmp / "setup.zsh"
        setup.write_text(ZSH_SETUP.format(fpath=fpath, capture=self.capture))
        self.child = pexpect.spawn(
            "zsh",
            ["-f", "-i"],
            env={**env, "TERM": "xterm"},
            encoding="utf-8",
            dimensions=(50, 200),
            timeout=30,
        )
        self.child.sendline(f"source {setup}")
        self.wait()

    def wait(self) -> list[str]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = self.capture.read_text() if self.capture.exists() else ""
            if text.endswith("END\n"):
                return text.splitlines()[:-1]
            if not self.child.isalive():
                break
            time.sleep(0.02)
        raise AssertionError(f"zsh did not answer; its screen: {self.child.before!r}")

    def complete(self, line: str) -> tuple[list[str], str]:
        self.capture.write_text("")
        self.child.send(line + "\t\x14")  # Tab, then Ctrl-T (the widget above)
        lines = self.wait()
        self.child.send("\x15")  # Ctrl-U: clear the line for the next one
        assert lines and lines[-1].startswith("BUFFER:"), lines
        return lines[:-1], lines[-1].removeprefix("BUFFER:")

    def close(self) -> None:
        self.child.sendline("exit")
        self.child.close(force=True)


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
class TestZsh:
    def test_script_loads_under_compinit(self, cenv, tmp_path) -> None:
        fpath = tmp_path / "fpath"
        fpath.mkdir()
        shutil.copy(REPO / "completions/_acct", fpath / "_acct")
        script = (
            f"fpath=({fpath} $fpath); autoload -Uz compinit; compinit -u -D; "
            "autoload -Uz +X _acct; print -r -- ${_comps[acct]} $+functions[_acct]"
        )
        proc = subprocess.run(
            ["zsh", "-f", "-c", script],
            capture_output=True,
            text=True,
            env=cenv,
            timeout=60,
            check=False,
        )
        assert (proc.stdout, proc.stderr) == ("_acct 1\n", "")
        syntax = subprocess.run(
            ["zsh", "-n", str(REPO / "completions/_acct")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert syntax.returncode == 0, syntax.stderr

    @pytest.fixture
    def zsh(self, cenv, tmp_path) -> Iterator[ZshSession]:
        pytest.importorskip("pexpect")
        session = ZshSession(cenv, tmp_path, REPO / "completions/_acct")
        yield session
        session.close()

    def test_commands_and_values(self, zsh: ZshSession) -> None:
        offered, _ = zsh.complete("acct ")
        assert {"use", "exec", "prompt", "shell-init"} <= set(offered)
        assert set(zsh.complete("acct prompt --target ")[0]) == {
            "claude-code",
            "opencode",
            "pi",
            "codex",
            "pi-chatgpt",
        }
        assert zsh.complete("acct shell-init z") == (["zsh"], "acct shell-init zsh ")

    def test_account_names_come_from_the_store(self, zsh: ZshSession, cenv) -> None:
        offered, line = zsh.complete("acct use ")
        assert sorted(offered) == ["side-2", "work"] and line == "acct use "
        assert zsh.complete("acct use s") == (["side-2"], "acct use side-2 ")
        assert zsh.complete("acct use nope")[0] == []
        assert sorted(zsh.complete("acct exec --account ")[0]) == ["side-2", "work"]
        with Ctx(cenv).store.transaction() as accounts:
            accounts.remove("side-2")
        assert zsh.complete("acct use ") == (["work"], "acct use work ")

    def test_exec_completes_the_wrapped_command(self, zsh: ZshSession, cenv, tmp_path) -> None:
        tools = tmp_path / "tools"
        tools.mkdir()
        for name in ("gizmo-acct", "gizmo-other"):
            (tools / name).write_text("#!/bin/sh\n")
            (tools / name).chmod(0o755)
        zsh.child.sendline(f"path=({tools} $path)")
        for line in ("acct exec -- giz", "acct exec giz", "acct exec -a work -- giz"):
            offered, typed = zsh.complete(line)
            assert sorted(offered) == ["gizmo-acct", "gizmo-other"], (line, offered)
            assert typed == line.removesuffix("giz") + "gizmo-", typed
        offered, _ = zsh.complete("acct exec -- gizmo-acct --acc")
        assert "--account" not in offered

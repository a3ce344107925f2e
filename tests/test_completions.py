"""Completion scripts: committed copies match the generator; real shells complete from them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer

from acct import gen
from acct.context import Ctx
from acct.models import Account
from tests.conftest import REPO, clean_env

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def root() -> gen.Command:
    return gen.tree()


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
        assert (REPO / path).read_text() == generated, f"{path} is stale: run `python -m acct.gen`"


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
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", driver, "bash", *words],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.stderr == ""
    return [w for w in proc.stdout.splitlines() if w]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["acct", ""], {"prompt", "shell-init", "completion"}),
        (["acct", "shell-"], {"shell-init"}),
        (["acct", "prompt", "--target", ""], {"claude-code", "opencode", "pi"}),
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
        account: Annotated[str | None, typer.Option("--account", "-a", autocompletion=complete_account)] = None,
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
    assert {o.name: o.kind for o in ex.options} == {"account": "account", "log": "file", "help": "none"}
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
def test_bash_wrapped_command_line(cenv, tmp_path, wrapper_tree, words, expected, unexpected) -> None:
    script = tmp_path / "wrapper.bash"
    script.write_text(gen.bash(wrapper_tree))
    got = set(bash_complete(str(script), cenv, *words))
    assert expected <= got and not (unexpected & got), got


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
class TestFish:
    def complete(self, script: Path, env: dict[str, str], line: str) -> list[str]:
        proc = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C {line!r}"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.stderr == ""
        return [w.split("\t")[0] for w in proc.stdout.splitlines()]

    def test_commands_and_values(self, cenv) -> None:
        script = REPO / "completions/acct.fish"
        assert {"prompt", "shell-init"} <= set(self.complete(script, cenv, "acct "))
        assert set(self.complete(script, cenv, "acct prompt --target ")) == {"claude-code", "opencode", "pi"}
        assert set(self.complete(script, cenv, "acct completion ")) == {"bash", "zsh", "fish"}

    def test_accounts_and_wrapped_command(self, cenv, tmp_path, wrapper_tree) -> None:
        script = tmp_path / "wrapper.fish"
        script.write_text(gen.fish(wrapper_tree))
        assert set(self.complete(script, cenv, "acct use ")) == {"work", "side-2"}
        assert set(self.complete(script, cenv, "acct exec --account ")) == {"work", "side-2"}
        assert "echo" in self.complete(script, cenv, "acct exec -- ech")
        assert "--account" not in self.complete(script, cenv, "acct exec -- echo --acc")


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
def test_zsh_script_loads_under_compinit(cenv, tmp_path) -> None:
    fpath = tmp_path / "fpath"
    fpath.mkdir()
    shutil.copy(REPO / "completions/_acct", fpath / "_acct")
    script = (
        f"fpath=({fpath} $fpath); autoload -Uz compinit; compinit -u -D; "
        "autoload -Uz +X _acct; print -r -- ${_comps[acct]} $+functions[_acct]"
    )
    proc = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, env=cenv, timeout=60)
    assert (proc.stdout, proc.stderr) == ("_acct 1\n", "")
    syntax = subprocess.run(["zsh", "-n", str(REPO / "completions/_acct")], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr

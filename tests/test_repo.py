"""The repository keeps its promises: README set-up commands, CI, layout."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no code block"
    lines = [
        ln.strip() for ln in blocks[0].splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]
    return lines


def test_readme_starts_with_two_setup_commands() -> None:
    cmds = readme_commands()
    assert len(cmds) == 2, cmds
    install, test = cmds
    assert "pip install" in install and "acct" in install
    assert "[test]" in test and "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, test = readme_commands()
    ci = (REPO / ".ci" / "run").read_text()
    assert test in ci.splitlines(), "'.ci/run' must run the README's test command"


def test_top_level_layout() -> None:
    for name in ("pyproject.toml", "README.md", "src", "tests", "completions", "man", ".ci"):
        assert (REPO / name).exists(), name

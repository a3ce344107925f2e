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


def test_property_tests_have_no_deadline() -> None:
    """Hypothesis's default 200 ms per example is a timed assertion: on a loaded machine a pure
    example sometimes passes it, the replay does not, and the test fails as "flaky"."""
    import importlib

    found = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        if "@given" not in path.read_text():
            continue
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            chosen = getattr(value, "_hypothesis_internal_use_settings", None)
            if attr.startswith("test_") and chosen is not None:
                found.append((name, attr, chosen.deadline))
    assert len(found) >= 5, found
    assert [f for f in found if f[2] is not None] == []

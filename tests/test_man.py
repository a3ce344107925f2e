"""The man page: generated from the command tree, renders without warnings, ships in the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from acct.cli import gen
from tests.conftest import REPO

PAGE = REPO / "man" / "acct.1"


def test_committed_man_page_matches_the_command_tree() -> None:
    assert PAGE.read_text() == gen.man(gen.tree()), (
        "man/acct.1 is stale: run `python -m acct.cli.gen`"
    )


def test_every_visible_command_and_option_is_documented() -> None:
    text = PAGE.read_text()
    for c in gen.tree().walk():
        if c.path:
            assert f'.SS "acct {gen._roff(c.name)} ' in text
        for o in c.options:
            for n in o.names:
                assert f"\\fB{gen._roff(n)}\\fR" in text
    for section in (
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "FILES",
        "ENVIRONMENT",
        "EXIT STATUS",
        "EXAMPLES",
    ):
        assert f".SH {section}" in text or f'.SH "{section}"' in text
    for var in (
        "ACCT_HOME",
        "ACCT_API_BASE",
        "ACCT_TOKEN_URL",
        "ACCT_AUTHORIZE_URL",
        "CLAUDE_CONFIG_DIR",
        "CLAUDE_SECURESTORAGE_CONFIG_DIR",
        "PI_CODING_AGENT_DIR",
        "ACCT_EXEC",
    ):
        assert f".B {var}" in text or var in text


@pytest.mark.skipif(not shutil.which("groff"), reason="groff is not installed (apt: groff-base)")
def test_groff_renders_without_warnings() -> None:
    proc = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(PAGE)], capture_output=True, text=True
    )
    assert (proc.returncode, proc.stderr) == (0, "")


@pytest.mark.skipif(not shutil.which("man"), reason="man is not installed (apt: man-db)")
def test_man_renders_without_warnings() -> None:
    proc = subprocess.run(
        ["man", "--warnings", "-l", str(PAGE)],
        capture_output=True,
        text=True,
        env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "MANPAGER": "cat", "LANG": "C.UTF-8"},
    )
    assert proc.returncode == 0 and proc.stderr == ""
    assert "EXIT STATUS" in proc.stdout and "acct exec" in proc.stdout


def test_wheel_ships_completions_man_page_and_a_launcher_without_re(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(REPO),
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("acct-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        data = {
            n.split(".data/data/", 1)[1]: zf.read(n) for n in zf.namelist() if ".data/data/" in n
        }
    expected = {
        "share/man/man1/acct.1": "man/acct.1",
        "share/bash-completion/completions/acct": "completions/acct.bash",
        "share/zsh/site-functions/_acct": "completions/_acct",
        "share/fish/vendor_completions.d/acct.fish": "completions/acct.fish",
    }
    assert set(expected) <= set(data)
    for installed, source in expected.items():
        assert data[installed] == (REPO / source).read_bytes()
    # The `acct` command is acct's own launcher: pip's console-script one imports `re` first.
    with zipfile.ZipFile(wheel) as zf:
        scripts = {
            n.split(".data/scripts/", 1)[1]: zf.read(n)
            for n in zf.namelist()
            if ".data/scripts/" in n
        }
    assert scripts.get("acct", b"").startswith(b"#!python")
    assert (
        b"import re" not in scripts["acct"] and b"from acct.__main__ import main" in scripts["acct"]
    )

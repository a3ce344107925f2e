"""Resumed command lines: the user's options survive, the prompt becomes the continuation prompt.

The option tables copy the pinned tools' own definitions (Claude Code 2.1.197, Pi 0.73.1,
OpenCode 1.18.33). Where the real binaries are in the e2e cache, the last tests ask them how
they read a resumed command line.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from acct.domain.resume import (
    CLAUDE_CODE,
    OPENCODE_RUN,
    OPENCODE_TUI,
    PI,
    Parsed,
    claude_code_resume_args,
    opencode_resume_args,
    parse_claude_code,
    parse_pi,
    parse_yargs,
    pi_resume_args,
)
from acct.services.targets import TARGETS
from tests.e2e.npm_clients import CLAUDE_CODE as CLAUDE_CODE_CLIENT
from tests.e2e.npm_clients import PI as PI_CLIENT
from tests.e2e.npm_clients import NpmClient, cache_root

C = "CONT"
SID = "0e7a3c1e-1111-2222-3333-444444444444"
SID2 = "5b0c2f9d-aaaa-4bbb-8ccc-dddddddddddd"

CLAUDE_CASES = [
    # (argv, resumed)
    (["claude"], ["claude", "--continue"]),
    (["claude", "fix it"], ["claude", "--continue", C]),
    (["claude", "-p"], ["claude", "--continue", "-p", C]),
    (["claude", "-p", "fix it"], ["claude", "--continue", "-p", C]),
    (["claude", "-p", "fix", "it", "now"], ["claude", "--continue", "-p", C]),
    # Value options Claude Code has but its old table missed: the value stays a value.
    (
        ["claude", "--effort", "high", "-p", "fix it"],
        ["claude", "--continue", "--effort", "high", "-p", C],
    ),
    (["claude", "-n", "work", "-p", "fix it"], ["claude", "--continue", "-n", "work", "-p", C]),
    (["claude", "--name", "work", "fix it"], ["claude", "--continue", "--name", "work", C]),
    (
        ["claude", "--plugin-url", "https://x/p.zip", "-p", "hi"],
        ["claude", "--continue", "--plugin-url", "https://x/p.zip", "-p", C],
    ),
    (
        ["claude", "--remote-control-session-name-prefix", "box", "hi"],
        ["claude", "--continue", "--remote-control-session-name-prefix", "box", C],
    ),
    # Optional values: commander takes the next word unless it starts with "-" (the real
    # `claude -p --debug "say hi"` answers "Input must be provided": "say hi" is the filter).
    (
        ["claude", "--debug", "api", "-p", "fix it"],
        ["claude", "--continue", "--debug", "api", "-p", C],
    ),
    (["claude", "-d", "-p", "fix it"], ["claude", "--continue", "-d", "-p", C]),
    (["claude", "-p", "fix it", "--debug"], ["claude", "--continue", "-p", C, "--debug"]),
    (["claude", "-p", "--debug"], ["claude", "--continue", C, "-p", "--debug"]),
    (["claude", "-w", "feature", "-p", "hi"], ["claude", "--continue", "-w", "feature", "-p", C]),
    (["claude", "--from-pr", "123", "-p", "hi"], ["claude", "--continue", "-p", C]),
    (
        ["claude", "--prompt-suggestions", "false", "-p", "hi"],
        ["claude", "--continue", "--prompt-suggestions", "false", "-p", C],
    ),
    (
        ["claude", "--remote-control", "desk", "hi"],
        ["claude", "--continue", "--remote-control", "desk", C],
    ),
    # Variadic options take every word up to the next option.
    (
        ["claude", "--file", "f:a", "f:b", "-p", "fix it"],
        ["claude", "--continue", "--file", "f:a", "f:b", "-p", C],
    ),
    (
        ["claude", "-p", "hi", "--add-dir", "/a", "/b"],
        ["claude", "--continue", "-p", C, "--add-dir", "/a", "/b"],
    ),
    (["claude", "-p", "--add-dir", "/a"], ["claude", "--continue", C, "-p", "--add-dir", "/a"]),
    (
        ["claude", "--allowedTools", "Bash(git *)", "Edit", "-p", "hi"],
        ["claude", "--continue", "--allowedTools", "Bash(git *)", "Edit", "-p", C],
    ),
    # `--opt=value`, `-xVALUE` and groups of short flags.
    (["claude", "--model=opus", "-p", "hi"], ["claude", "--continue", "--model=opus", "-p", C]),
    (["claude", "--debug=api", "hi"], ["claude", "--continue", "--debug=api", C]),
    (["claude", "-dapi", "hi"], ["claude", "--continue", "-dapi", C]),
    (["claude", "-nwork", "-p", "hi"], ["claude", "--continue", "-nwork", "-p", C]),
    (["claude", "-pc", "hi"], ["claude", "-pc", C]),
    (["claude", "-cp", "hi"], ["claude", "-cp", C]),
    # A value option takes the next word even when it looks like an option.
    (
        ["claude", "--system-prompt", "-be brief", "-p", "hi"],
        ["claude", "--continue", "--system-prompt", "-be brief", "-p", C],
    ),
    (
        ["claude", "--model", "opus", "--max-turns", "3", "-p", "hi", "--verbose"],
        ["claude", "--continue", "--model", "opus", "--max-turns", "3", "-p", C, "--verbose"],
    ),
    # Going back to the session the interrupted run wrote to.
    (["claude", "--continue", "-p", "x"], ["claude", "--continue", "-p", C]),
    (["claude", "-c", "-p", "x"], ["claude", "-c", "-p", C]),
    (["claude", "--resume", SID, "-p", "x"], ["claude", "--resume", SID, "-p", C]),
    (["claude", f"--resume={SID}", "-p", "x"], ["claude", f"--resume={SID}", "-p", C]),
    (["claude", "--resume"], ["claude", "--continue"]),
    (["claude", "-r", "auth bug"], ["claude", "--continue"]),
    (["claude", "-r", "-p", "hi"], ["claude", "--continue", "-p", C]),
    (["claude", "--session-id", SID, "-p", "hi"], ["claude", "--resume", SID, "-p", C]),
    (
        ["claude", "--resume", SID, "--fork-session", "--session-id", SID2, "-p", "hi"],
        ["claude", "--resume", SID2, "-p", C],
    ),
    (["claude", "--resume", SID, "--fork-session", "-p", "hi"], ["claude", "--continue", "-p", C]),
    (["claude", "-c", "--fork-session", "-p", "hi"], ["claude", "-c", "-p", C]),
    (["claude", "--fork-session", "-p", "hi"], ["claude", "--continue", "-p", C]),
    (
        ["claude", "--session-id", "not-a-uuid", "-p", "hi"],
        ["claude", "--session-id", "not-a-uuid", "-p", C],
    ),
    (["claude", "--teleport", "abc"], ["claude", "--teleport", "abc"]),
    # Nothing was saved: the run starts again as it was.
    (
        ["claude", "--no-session-persistence", "-p", "hi"],
        ["claude", "--no-session-persistence", "-p", "hi"],
    ),
    # After "--" every word is the prompt.
    (["claude", "-p", "--", "--not-an-option"], ["claude", "--continue", "-p", "--", C]),
    # Subcommands are not sessions (and exist only outside print mode).
    (["claude", "doctor"], ["claude", "doctor"]),
    (["claude", "mcp", "list"], ["claude", "mcp", "list"]),
    (["claude", "-p", "doctor"], ["claude", "--continue", "-p", C]),
    # An option the table does not know: the words stay as the user wrote them.
    (
        ["claude", "-p", "fix it", "--brand-new", "x"],
        ["claude", "--continue", "-p", "fix it", "--brand-new", "x"],
    ),
    (
        ["claude", "--brand-new", "x", "-p", "fix it"],
        ["claude", "--continue", "--brand-new", "x", "-p", "fix it"],
    ),
]

PI_CASES = [
    (["pi"], ["pi", "--continue"]),
    (["pi", "hi"], ["pi", "--continue", C]),
    (["pi", "-p"], ["pi", "--continue", "-p", C]),
    (["pi", "-p", "hi"], ["pi", "--continue", "-p", C]),
    (["pi", "read this", "then that"], ["pi", "--continue", C]),
    (["pi", "@a.md", "hi", "@b.png"], ["pi", "--continue", "@a.md", C, "@b.png"]),
    # Pi 1.6.0's `--session-id` reopens its session and is refused next to `--continue`.
    (["pi", "--session-id", "x", "hi"], ["pi", "--session-id", "x", C]),
    # An extension's flag takes the next word.
    (["pi", "--session-tag", "x", "hi"], ["pi", "--continue", "--session-tag", "x", C]),
    (["pi", "--plan", "-p", "hi"], ["pi", "--continue", "--plan", "-p", C]),
    (["pi", "--plan=deep", "hi"], ["pi", "--continue", "--plan=deep", C]),
    # Options the old table missed.
    (["pi", "-t", "read,ls", "hi"], ["pi", "--continue", "-t", "read,ls", C]),
    (
        ["pi", "--skill", "s", "--theme", "t", "--prompt-template", "p", "-p", "hi"],
        ["pi", "--continue", "--skill", "s", "--theme", "t", "--prompt-template", "p", "-p", C],
    ),
    (["pi", "--model", "-p", "hi"], ["pi", "--continue", "--model", "-p", C]),
    (["pi", "--list-models", "-p"], ["pi", "--continue", "--list-models", "-p", C]),
    # Sessions: --session stays; --fork (refused next to --continue) and --resume become it.
    (["pi", "--session", "abc", "-p", "hi"], ["pi", "--session", "abc", "-p", C]),
    (["pi", "--fork", "abc", "-p", "hi"], ["pi", "--continue", "-p", C]),
    (["pi", "-r", "-p", "hi"], ["pi", "--continue", "-p", C]),
    (["pi", "-c", "-p", "hi"], ["pi", "-c", "-p", C]),
    (["pi", "--no-session", "-p", "hi"], ["pi", "--no-session", "-p", "hi"]),
    (["pi", "install", "npm:x"], ["pi", "install", "npm:x"]),
    # Pi stops at an unknown short option: the words stay.
    (["pi", "-x", "hi"], ["pi", "--continue", "-x", "hi"]),
]

OPENCODE_CASES = [
    (["opencode"], ["opencode", "--continue"]),
    (["opencode", "/work/proj"], ["opencode", "--continue", "/work/proj"]),
    (["opencode", "-s", "ses_1"], ["opencode", "-s", "ses_1"]),
    (["opencode", "run", "fix it"], ["opencode", "run", "--continue", C]),
    (
        ["opencode", "run", "fix", "it", "-m", "anthropic/claude"],
        ["opencode", "run", "--continue", "-m", "anthropic/claude", C],
    ),
    # `--file` is an array: it takes every word up to the next option.
    (
        ["opencode", "run", "-f", "a.md", "b.md", "-m", "x", "hi"],
        ["opencode", "run", "--continue", "-f", "a.md", "b.md", "-m", "x", C],
    ),
    (
        ["opencode", "run", "hi", "-f", "a.md"],
        ["opencode", "run", "--continue", C, "-f", "a.md"],
    ),
    (
        ["opencode", "--print-logs", "run", "hi"],
        ["opencode", "--print-logs", "run", "--continue", C],
    ),
    (["opencode", "run", "-c", "hi"], ["opencode", "run", "-c", C]),
    (["opencode", "run", "-s", "ses_1", "hi"], ["opencode", "run", "-s", "ses_1", C]),
    (["opencode", "run", "-s", "ses_1", "--fork", "hi"], ["opencode", "run", "--continue", C]),
    (
        ["opencode", "run", "--command", "review", "src/a.ts"],
        ["opencode", "run", "--continue", "--command", "review", "src/a.ts"],
    ),
    (["opencode", "run", "--", "-literally"], ["opencode", "run", "--continue", "--", C]),
    (["opencode", "models", "anthropic"], ["opencode", "models", "anthropic"]),
]


@pytest.mark.parametrize(("argv", "expected"), CLAUDE_CASES, ids=lambda a: " ".join(a))
def test_claude_code(argv: list[str], expected: list[str]) -> None:
    assert TARGETS["claude-code"].resume_args(argv, C) == expected


@pytest.mark.parametrize(("argv", "expected"), PI_CASES, ids=lambda a: " ".join(a))
def test_pi(argv: list[str], expected: list[str]) -> None:
    assert pi_resume_args(argv, C) == expected


@pytest.mark.parametrize(("argv", "expected"), OPENCODE_CASES, ids=lambda a: " ".join(a))
def test_opencode(argv: list[str], expected: list[str]) -> None:
    assert opencode_resume_args(argv, C) == expected


def test_a_continuation_prompt_that_looks_like_an_option() -> None:
    assert claude_code_resume_args(["claude", "-p", "x"], "-go on") == [
        "claude",
        "--continue",
        "-p",
        "--",
        "-go on",
    ]
    assert opencode_resume_args(["opencode", "run", "x"], "-go on") == [
        "opencode",
        "run",
        "--continue",
        "--",
        "-go on",
    ]


def test_the_tables_follow_the_tools() -> None:
    assert CLAUDE_CODE["-n"].name == "--name" and CLAUDE_CODE["-n"].arity == "value"
    assert CLAUDE_CODE["--allowedTools"] == CLAUDE_CODE["--allowed-tools"]
    assert CLAUDE_CODE["--file"].arity == "variadic"
    for name in ("-d", "--from-pr", "-w", "--remote-control", "--prompt-suggestions", "-r"):
        assert CLAUDE_CODE[name].arity == "optional", name
    for name in ("--effort", "--plugin-url", "--remote-control-session-name-prefix"):
        assert CLAUDE_CODE[name].arity == "value", name
    for name in ("--fork", "-t", "--skill", "--prompt-template", "--theme"):
        assert PI[name].arity == "value", name
    assert (
        OPENCODE_RUN["-f"].arity == "variadic" and OPENCODE_RUN["--replayLimit"].arity == "optional"
    )
    assert OPENCODE_RUN["--no-replay"].arity == "flag"


# --- properties -------------------------------------------------------------------------------

VALUES = ["x", "fix it", "api", SID, "@a.md", "-", "doctor", "---x", "a=b", "true", ""]


def _tokens(table: Sequence[str], extra: Sequence[str]) -> st.SearchStrategy[list[str]]:
    word = st.one_of(
        st.sampled_from(list(table)),
        st.sampled_from([*VALUES, *extra]),
        st.text(alphabet="ab -@=:", max_size=4),
    )
    return st.lists(word, max_size=9)


CLAUDE_WORDS = _tokens(
    sorted(CLAUDE_CODE),
    ["--", "-pc", "-cp", "-dapi", "-nwork", "-rabc", "--model=opus", "--debug=", "--bogus", "-z"],
)
PI_WORDS = _tokens(sorted(PI), ["--plan", "--plan=x", "-x", "install"])
OPENCODE_WORDS = st.builds(
    lambda head, rest: [*head, *rest],
    st.sampled_from([[], ["run"], ["--print-logs", "run"], ["models"]]),
    _tokens(sorted(OPENCODE_RUN), ["--", "-cf", "--prompt", "--bogus"]),
)

SESSION = {
    "claude-code": {"--continue", "--resume", "--session-id", "--fork-session", "--from-pr"},
    "pi": {"--continue", "--resume", "--fork", "--session-id"},
    "opencode": {"--continue", "--session", "--fork"},
}


def _is_run(p: Parsed, args: Sequence[str]) -> bool:
    return bool(p.prompt) and args[p.prompt[0]] == "run"


def _contains_runs(words: Sequence[str], runs: list[list[str]]) -> bool:
    """Whether each run of words appears whole in ``words``, in this order."""
    at = 0
    for run in runs:
        for start in range(at, len(words) - len(run) + 1):
            if list(words[start : start + len(run)]) == run:
                at = start + len(run)
                break
        else:
            return False
    return True


def _check(
    tool: str,
    argv: list[str],
    resume: Callable[[Sequence[str], str], list[str]],
    parse: Callable[[Sequence[str]], Parsed],
) -> None:
    out = resume(argv, C)
    assert out[:1] == argv[:1]
    args, again = argv[1:], out[1:]
    before, after = parse(args), parse(again)
    # The options the user gave (but those that pick the session) survive whole, in order.
    kept = [list(args[o.start : o.end]) for o in before.opts if not set(o.names) & SESSION[tool]]
    assert _contains_runs(again, kept), (argv, out)
    # --continue is never added twice.
    assert len(after.find("--continue")) <= max(1, len(before.find("--continue"))), out
    # Resuming a resumed run changes nothing.
    assert resume(out, C) == out, (argv, out)
    if out == argv:
        return
    # Any other word is kept unless it was the prompt: then the prompt is the continuation.
    if before.unsure:
        dropped = {
            i for o in before.opts if set(o.names) & SESSION[tool] for i in range(o.start, o.end)
        }
        assert _contains_runs(again, [[w] for i, w in enumerate(args) if i not in dropped])
        return
    prompt = [again[i] for i in after.prompt]
    if tool == "opencode" and _is_run(after, again):
        prompt = prompt[1:]
    if C in prompt:
        assert prompt == [C], (argv, out)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(CLAUDE_WORDS)
@example(["--effort", "high", "-p", "fix it"])
@example(["-p", "--add-dir", "/a"])
@example(["--resume", "x", "--fork-session", "-pc"])
def test_claude_code_property(words: list[str]) -> None:
    _check("claude-code", ["claude", *words], claude_code_resume_args, parse_claude_code)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(PI_WORDS)
@example(["--session-id", "x", "hi"])
def test_pi_property(words: list[str]) -> None:
    _check("pi", ["pi", *words], pi_resume_args, parse_pi)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(OPENCODE_WORDS)
def test_opencode_property(words: list[str]) -> None:
    _check("opencode", ["opencode", *words], opencode_resume_args, _opencode_parse)


def _opencode_parse(args: Sequence[str]) -> Parsed:
    """The run's options for ``opencode run``, the TUI's otherwise."""
    first = parse_yargs(args, OPENCODE_RUN, strict=False).prompt
    run = bool(first) and args[first[0]] == "run"
    return parse_yargs(args, OPENCODE_RUN if run else OPENCODE_TUI)


@settings(max_examples=300)
@given(CLAUDE_WORDS)
def test_claude_code_print_mode_always_gets_the_continuation(words: list[str]) -> None:
    argv = ["claude", "-p", *words]
    before = parse_claude_code(argv[1:])
    out = claude_code_resume_args(argv, C)
    if before.unsure or before.has("--no-session-persistence") or out == argv:
        return
    after = parse_claude_code(out[1:])
    assert [out[1:][i] for i in after.prompt] == [C], (argv, out)


# --- the real binaries, where the e2e cache has them -------------------------------------------


def _binary(client: NpmClient) -> Path:
    path = client.binary(cache_root())
    if not path.exists():
        pytest.skip(f"{path} is not installed (the e2e tier installs it)")
    return path


def _run(binary: Path, args: list[str], home: Path, extra: dict[str, str]) -> str:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        **extra,
    }
    proc = subprocess.run(
        [str(binary), *args],
        env=env,
        cwd=home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout + proc.stderr


REAL_CLAUDE = [
    ["claude", "--effort", "high", "-p", "fix it"],
    ["claude", "-n", "work", "-p", "fix it"],
    ["claude", "--debug", "api", "-p", "fix it"],
    ["claude", "-p", "--debug"],
    ["claude", "-p", "--add-dir", "/tmp"],
    ["claude", "-p", "fix it", "--tools", "Bash", "Edit"],
    ["claude", "-dapi", "-p", "hi"],
    ["claude", "--model=opus", "-p", "hi"],
    ["claude", "--remote-control-session-name-prefix", "box", "-p", "hi"],
]


@pytest.mark.e2e
@pytest.mark.parametrize("argv", REAL_CLAUDE, ids=lambda a: " ".join(a))
def test_real_claude_code_reads_the_continuation_as_its_prompt(
    argv: list[str], tmp_path: Path
) -> None:
    """Claude Code checks for a prompt before the login: "Not logged in" means it had one."""
    binary = _binary(CLAUDE_CODE_CLIENT)
    quiet = {
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
    }
    text = _run(binary, claude_code_resume_args(argv, C)[1:], tmp_path, quiet)
    assert "Not logged in" in text, text
    assert "unknown option" not in text and "Provide a prompt" not in text


REAL_PI = [
    ["pi", "-t", "read", "-p", "hi"],
    ["pi", "--skill", str(Path("/nonexistent")), "-p", "hi"],
    ["pi", "--thinking", "high", "-p"],
    ["pi", "--model", "-p", "hi"],
    ["pi", "@/dev/null", "-p", "hi"],
]


@pytest.mark.e2e
@pytest.mark.parametrize("argv", REAL_PI, ids=lambda a: " ".join(a))
def test_real_pi_reads_the_continuation_as_its_message(argv: list[str], tmp_path: Path) -> None:
    """Pi asks for a key only when it has a message to send."""
    binary = _binary(PI_CLIENT)
    text = _run(
        binary, pi_resume_args(argv, C)[1:], tmp_path, {"PI_OFFLINE": "1", "PI_TELEMETRY": "0"}
    )
    assert "No API key found" in text, text


# --- the newest releases: Claude Code 2.1.332 and Pi 1.6.0 --------------------------------------

NEW_CLAUDE_CASES = [
    # A value option 2.1.332 added used to be read as the prompt: the original prompt went again.
    (
        ["claude", "--autocompact", "auto", "-p", "fix it"],
        ["claude", "--continue", "--autocompact", "auto", "-p", C],
    ),
    (
        ["claude", "-p", "--environment", "env_1", "fix it"],
        ["claude", "--continue", "-p", "--environment", "env_1", C],
    ),
    (
        ["claude", "--permission-prompts", "host", "-p", "fix it"],
        ["claude", "--continue", "--permission-prompts", "host", "-p", C],
    ),
    (
        ["claude", "--system-prompt-snapshot", "on", "-p", "fix it"],
        ["claude", "--continue", "--system-prompt-snapshot", "on", "-p", C],
    ),
    (
        ["claude", "--restricted", "--desktop", "--forward-subagent-text", "-p", "fix it"],
        ["claude", "--continue", "--restricted", "--desktop", "--forward-subagent-text", "-p", C],
    ),
]


@pytest.mark.parametrize(("argv", "expected"), NEW_CLAUDE_CASES, ids=lambda a: " ".join(a))
def test_claude_code_2_1_332_options_keep_their_values_and_the_prompt_is_replaced(
    argv: list[str], expected: list[str]
) -> None:
    assert claude_code_resume_args(argv, C) == expected


NEW_PI_CASES = [
    # --session-id cannot go with --continue (Pi refuses the run): it reopens its session alone.
    (["pi", "--session-id", SID, "-p", "fix it"], ["pi", "--session-id", SID, "-p", C]),
    (["pi", "--session-id", SID, "--fork", "old", "-p", "x"], ["pi", "--session-id", SID, "-p", C]),
    (["pi", "-n", "my work", "-p", "fix it"], ["pi", "--continue", "-n", "my work", "-p", C]),
    (["pi", "--name", "fix it", "-p", "go"], ["pi", "--continue", "--name", "fix it", "-p", C]),
    (["pi", "-xt", "bash", "-p", "go"], ["pi", "--continue", "-xt", "bash", "-p", C]),
    (
        ["pi", "--tui-mode", "regular", "--use-theme", "dark", "go"],
        ["pi", "--continue", "--tui-mode", "regular", "--use-theme", "dark", C],
    ),
    (["pi", "-a", "--no-mcp", "-p", "go"], ["pi", "--continue", "-a", "--no-mcp", "-p", C]),
    # `--` ends Pi 1.6.0's options: what follows is the message, whatever it looks like.
    (["pi", "-p", "--", "- a dashed point"], ["pi", "--continue", "-p", "--", C]),
    (["pi", "--", "@notes.md", "--fix"], ["pi", "--continue", "--", "@notes.md", C]),
    (["pi", "auth", "login"], ["pi", "auth", "login"]),
]


@pytest.mark.parametrize(("argv", "expected"), NEW_PI_CASES, ids=lambda a: " ".join(a))
def test_pi_1_6_0_options_and_session_id_resume_right(argv: list[str], expected: list[str]) -> None:
    assert pi_resume_args(argv, C) == expected


REAL_CLAUDE_NEW = [
    ["claude", "--autocompact", "auto", "-p", "fix it"],
    ["claude", "--permission-prompts", "host", "--system-prompt-snapshot", "on", "-p", "fix it"],
    ["claude", "--restricted", "-p", "fix it"],
]


@pytest.mark.e2e
@pytest.mark.parametrize("argv", REAL_CLAUDE_NEW, ids=lambda a: " ".join(a))
def test_real_claude_code_2_1_332_reads_the_continuation_as_its_prompt(
    argv: list[str], tmp_path: Path
) -> None:
    """2.1.332 checks for a prompt before the login, as 2.1.197 does."""
    from tests.e2e.npm_clients import CLAUDE_CODE_NEW, client_env

    binary = _binary(CLAUDE_CODE_NEW)
    quiet = {
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
    }
    path = client_env(CLAUDE_CODE_NEW, cache_root(), dict(os.environ))["PATH"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", path)
        text = _run(binary, claude_code_resume_args(argv, C)[1:], tmp_path, quiet)
    assert "Not logged in" in text, text
    assert "unknown option" not in text and "Input must be provided" not in text


def test_pi_flag_after_print_does_not_become_the_message_on_resume() -> None:
    # `pi x --print x ---x`: once the old message words go, `--print` would take `---x` (an
    # extension's flag) as its message; the continuation must go where it is the whole prompt.
    argv = ["pi", "x", "--print", "x", "---x"]
    _check("pi", argv, pi_resume_args, parse_pi)
    assert pi_resume_args(argv, C) == ["pi", "--continue", "--print", C, "---x"]

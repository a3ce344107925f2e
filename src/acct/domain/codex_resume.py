"""How to resume the Codex CLI's interrupted work (0.171.0's option tables). No I/O here.

- ``codex exec [OPTS] PROMPT`` -> ``codex exec [OPTS] resume --last CONTINUATION``
- ``codex exec [OPTS] resume (--last | ID) [PROMPT]`` -> the same, with the continuation prompt
- ``codex [OPTS] [PROMPT]`` (interactive) -> ``codex [OPTS] resume --last CONTINUATION``
- ``codex resume ...`` -> the same, with the continuation prompt

``--last`` picks the newest session recorded for the current directory AND the current ChatGPT
account (sessions are ``account_scoped``: seen, a session begun on account A is not found by
``--last`` once the file holds B, not even with ``--all``, and a new session starts). So when
acct knows the interrupted run's session id (``session``), the resumed command names it, and
``resume <ID>`` continues that session on the other account (seen).

Options placed before ``resume`` stay options of ``exec`` (seen:
``codex exec --skip-git-repo-check resume --last "…"``). ``exec``'s stdin prompt (``-``) is not
kept: the continuation prompt replaces the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

# Options that take a value (the value may also be attached with "=").
VALUE_OPTIONS = frozenset(
    {
        "-c",
        "--config",
        "-m",
        "--model",
        "-p",
        "--profile",
        "-s",
        "--sandbox",
        "-C",
        "--cd",
        "-i",
        "--image",
        "-a",
        "--ask-for-approval",
        "-o",
        "--output-last-message",
        "--add-dir",
        "--color",
        "--enable",
        "--disable",
        "--local-provider",
        "--output-schema",
        "--remote",
        "--remote-auth-token-env",
        "--thread-source",
        "--cyber-access-program",
    }
)
EXEC = frozenset({"exec", "e"})
OTHER_COMMANDS = frozenset(
    {
        "agents",
        "login",
        "logout",
        "mcp",
        "plugin",
        "app-server",
        "remote-control",
        "completion",
        "update",
        "doctor",
        "sandbox",
        "debug",
        "apply",
        "a",
        "queue",
        "archive",
        "delete",
        "migrate-rollouts",
        "migrate-nfs-db",
        "unarchive",
        "cloud",
        "exec-server",
        "features",
        "help",
        "mcp-server",
    }
)
# The subcommands that talk to the model (and the interactive CLI, with no subcommand): the
# ones a provider given with ``-c`` before them applies to.
MODEL_COMMANDS = frozenset({*EXEC, "resume", "fork", "review"})


def _split(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """``args`` as (options with their values, positionals), in order."""
    options: list[str] = []
    positionals: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positionals.extend(args[i + 1 :])
            break
        if arg.startswith("-") and arg != "-":
            options.append(arg)
            if arg in VALUE_OPTIONS and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
        else:
            positionals.append(arg)
        i += 1
    return options, positionals


def _first_positional(args: Sequence[str]) -> int | None:
    """The index of the first positional argument of ``args`` (a subcommand or a prompt)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return i + 1 if i + 1 < len(args) else None
        if not arg.startswith("-") or arg == "-":
            return i
        i += 2 if arg in VALUE_OPTIONS else 1
    return None


def subcommand(argv: Sequence[str]) -> str | None:
    """The word after the root options of ``codex ARGS`` (argv[0] is the command): a
    subcommand (``exec``) or the interactive CLI's prompt; None when there is none."""
    args = list(argv[1:])
    at = _first_positional(args)
    return args[at] if at is not None else None


def talks_to_the_model(argv: Sequence[str]) -> bool:
    """Whether ``codex ARGS`` runs turns: the interactive CLI (with or without a prompt) or a
    model subcommand; False for ``login``, ``mcp``, ``apply``... (they are left alone)."""
    word = subcommand(argv)
    return word is None or word in MODEL_COMMANDS or word not in OTHER_COMMANDS


def _resume(
    options: list[str], rest: Sequence[str], prompt: str, session: str | None = None
) -> list[str]:
    """``resume`` with ``session`` when acct knows it, else the session id the command named,
    else ``--last``."""
    own_options, positionals = _split(rest)
    target = ["--last"] if "--last" in own_options or not positionals else [positionals[0]]
    if session:
        target = [session]
    # ``--all`` widens ``--last``'s search; with a session id it has nothing to do.
    kept = [o for o in own_options if o != "--last" and not (session and o == "--all")]
    return [*options, "resume", *kept, *target, prompt]


def codex_resume_args(
    argv: Sequence[str], continuation_prompt: str, session: str | None = None
) -> list[str]:
    """The argv that resumes the interrupted work (argv[0] is the command); ``session``: the
    interrupted run's session id, when known (else ``--last``)."""
    if not argv:
        raise ValueError("codex_resume_args needs at least the command")
    command, args = argv[0], list(argv[1:])
    at = _first_positional(args)
    head = args[:at] if at is not None else args
    word = args[at] if at is not None else None
    if word in EXEC:
        assert at is not None
        sub = args[at + 1 :]
        sub_at = _first_positional(sub)
        exec_options = sub[:sub_at] if sub_at is not None else sub
        if sub_at is not None and sub[sub_at] == "resume":
            resumed = _resume(exec_options, sub[sub_at + 1 :], continuation_prompt, session)
        else:
            options, _ = _split(sub)
            resumed = _resume(options, [], continuation_prompt, session)
        return [command, *head, word, *resumed]
    if word == "resume":
        assert at is not None
        return [command, *_resume(head, args[at + 1 :], continuation_prompt, session)]
    options, _ = _split(args)
    return [command, *_resume(options, [], continuation_prompt, session)]

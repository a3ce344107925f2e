"""How the coding tools read their command lines, so that a resumed run keeps the user's options.

After a switch acct runs the tool again with the user's arguments and the tool's way back into
the interrupted session (``--continue``); the prompt becomes the continuation prompt. Which word
is the prompt and which is an option's value depends on every option the tool knows, so the
tables below copy the option definitions of each pinned version, hidden ones included, and each
parser follows that tool's own rules:

- Claude Code 2.1.197 parses with commander.js: ``<value>`` takes the next word whatever it
  looks like, ``[value]`` the next word unless it starts with ``-``, ``<values...>`` every word
  up to the next option; ``-abc`` is a group of short options; after an option it does not know,
  commander no longer tells operands apart (and Claude Code stops with "unknown option").
- Pi 0.73.1 has its own loop (``dist/cli/args.js``): a value option takes the next word; an
  unknown ``--flag`` (extensions register them) takes the next word unless it starts with ``-``
  or ``@``; ``@file`` attaches a file; an unknown ``-x`` is an error.
- OpenCode 1.18.33 parses with yargs in strict mode: a string or number option takes the next
  word unless it starts with ``-``, an array every such word, a boolean none (but ``true`` or
  ``false``); words after ``--`` are message words.

Where a word's role cannot be told (an option the table does not know), the prompt stays as the
user wrote it: a resumed run may repeat the user's words, but never loses one.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Arity = Literal["flag", "value", "optional", "variadic"]

CONTINUE = "--continue"
SESSION_ID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Spec:
    name: str  # the canonical spelling: the long name
    arity: Arity


Table = Mapping[str, Spec]  # every spelling of every option -> what it is

_DEFINITION = re.compile(r"^(?P<names>-[^<\[]*?)\s*(?P<arg>[<\[].*)?$")


def option_table(definitions: str) -> dict[str, Spec]:
    """Options as the tools declare them, one a line: ``-n, --name <name>``, ``--debug [filter]``.

    ``<x>`` takes one value, ``<x...>`` several, ``[x]`` an optional one; without any, a flag.
    """
    table: dict[str, Spec] = {}
    for line in filter(None, map(str.strip, definitions.splitlines())):
        m = _DEFINITION.match(line)
        if m is None:
            raise ValueError(f"not an option definition: {line!r}")
        names = [n for n in re.split(r"[,\s]+", m.group("names")) if n]
        arg = m.group("arg") or ""
        arity: Arity = (
            "flag"
            if not arg
            else "optional"
            if arg.startswith("[")
            else "variadic"
            if arg.endswith("...>")
            else "value"
        )
        canonical = next((n for n in reversed(names) if n.startswith("--")), names[0])
        for n in names:
            table[n] = Spec(canonical, arity)
    return table


# Claude Code 2.1.197: the root command's options in the order the program declares them
# (`claude --help` lists most; the rest are hidden). `--tmux=classic` is read before commander.
# Then what 2.1.332 adds (its `--help`): four value options and three flags.
CLAUDE_CODE = option_table(
    """
    -h, --help
    -v, --version
    -d, --debug [filter]
    -d2e, --debug-to-stderr
    --debug-file <path>
    --verbose
    -p, --print
    --bare
    --safe-mode
    --init
    --init-only
    --maintenance
    --output-format <format>
    --json-schema <schema>
    --include-hook-events
    --include-partial-messages
    --session-mirror
    --input-format <format>
    --dangerously-skip-permissions
    --allow-dangerously-skip-permissions
    --thinking <mode>
    --thinking-display <display>
    --max-thinking-tokens <tokens>
    --max-turns <turns>
    --max-budget-usd <amount>
    --task-budget <tokens>
    --replay-user-messages
    --prompt-suggestions [value]
    --enable-auth-status
    --allowedTools, --allowed-tools <tools...>
    --tools <tools...>
    --disallowedTools, --disallowed-tools <tools...>
    --mcp-config <configs...>
    --permission-prompt-tool <tool>
    --system-prompt <prompt>
    --system-prompt-file <file>
    --append-system-prompt <prompt>
    --append-system-prompt-file <file>
    --plan-mode-instructions <instructions>
    --exclude-dynamic-system-prompt-sections
    --permission-mode <mode>
    -c, --continue
    -r, --resume [value]
    --fork-session
    --prefill <text>
    --deep-link-origin
    --deep-link-repo <slug>
    --deep-link-last-fetch <ms>
    --prefill-b64 <b64>
    --deep-link-cwd-b64 <b64>
    --from-pr [value]
    --no-session-persistence
    --resume-session-at <message id>
    --reply-on-resume
    --rewind-files <user-message-id>
    --model <model>
    --effort <level>
    --agent <agent>
    --betas <betas...>
    --fallback-model <model>
    --workload <tag>
    --settings <file-or-json>
    --managed-settings <json>
    --add-dir <directories...>
    --ide
    --strict-mcp-config
    --session-id <uuid>
    -n, --name <name>
    --agents <json>
    --setting-sources <sources>
    --plugin-dir <path>
    --plugin-dir-no-mcp <path>
    --plugin-url <url>
    --disable-slash-commands
    --chrome
    --no-chrome
    --file <specs...>
    -w, --worktree [name]
    --tmux
    --tmux=classic
    --advisor <model>
    --enable-auto-mode
    --bg, --background
    --brief
    --ax-screen-reader
    --channels <servers...>
    --dangerously-load-development-channels <servers...>
    --agent-id <id>
    --agent-name <name>
    --team-name <name>
    --agent-color <color>
    --plan-mode-required
    --parent-session-id <id>
    --teammate-mode <mode>
    --agent-type <type>
    --sdk-url <url>
    --teleport [session]
    --cloud [description|session_id|url]
    --remote [description|session_id|url]
    --remote-control [name]
    --rc [name]
    --remote-control-session-name-prefix <prefix>
    --autocompact <auto|tokens>
    --environment <environment_id>
    --permission-prompts <target>
    --system-prompt-snapshot <on|off>
    --desktop
    --restricted
    --forward-subagent-text
    """
)
# Registered only outside print mode (`-p`/`--print` among the words); `help` is commander's.
CLAUDE_CODE_COMMANDS = frozenset(
    {
        "agents",
        "auth",
        "auto-mode",
        "doctor",
        "gateway",
        "help",
        "import-conversations",
        "install",
        "mcp",
        "plugin",
        "plugins",
        "project",
        "rc",
        "remote-control",
        "setup-token",
        "ultrareview",
        "update",
        "upgrade",
    }
)

# Pi 0.73.1 (`pi --help`, checked against dist/cli/args.js), then what 1.6.0 adds (its
# dist/cli/args.js): `--use-theme` and `--tui-mode` take the next word unless it is an option.
PI = option_table(
    """
    --help, -h
    --version, -v
    --provider <name>
    --model <pattern>
    --api-key <key>
    --system-prompt <text>
    --append-system-prompt <text>
    --mode <mode>
    --print, -p
    --continue, -c
    --resume, -r
    --session <path|id>
    --fork <path|id>
    --session-dir <dir>
    --no-session
    --models <patterns>
    --no-tools, -nt
    --no-builtin-tools, -nbt
    --tools, -t <tools>
    --thinking <level>
    --extension, -e <path>
    --no-extensions, -ne
    --skill <path>
    --no-skills, -ns
    --prompt-template <path>
    --no-prompt-templates, -np
    --theme <path>
    --no-themes
    --no-context-files, -nc
    --export <file>
    --list-models [search]
    --verbose
    --offline
    --session-id <id>
    --name, -n <name>
    --exclude-tools, -xt <tools>
    --no-mcp
    --use-theme [name]
    --tui-mode [mode]
    --approve, -a
    --no-approve, -na
    """
)
PI_COMMANDS = frozenset(
    {"install", "remove", "uninstall", "update", "list", "config", "auth", "mcp"}
)


def yargs_table(definitions: str) -> dict[str, Spec]:
    """yargs options, one a line: ``-m, --model string``; types boolean, string, number, array.

    yargs also reads ``--camelCase`` for ``--camel-case`` and ``--no-x`` for any ``--x``.
    """
    arity: dict[str, Arity] = {
        "boolean": "flag",
        "string": "optional",
        "number": "optional",
        "array": "variadic",
    }
    table: dict[str, Spec] = {}
    for line in filter(None, map(str.strip, definitions.splitlines())):
        *names, kind = re.split(r"[,\s]+", line)
        canonical = next(n for n in names if n.startswith("--"))
        spec = Spec(canonical, arity[kind])
        for n in names:
            table[n] = spec
            if n.startswith("--"):
                table["--" + re.sub(r"-([a-z])", lambda c: c.group(1).upper(), n[2:])] = spec
                table["--no-" + n[2:]] = Spec(canonical, "flag")
    return table


_OPENCODE_GLOBAL = """
    -h, --help boolean
    -v, --version boolean
    --print-logs boolean
    --log-level string
    --pure boolean
"""
# OpenCode 1.18.33 `opencode run --help` (and its hidden options), with the global ones.
OPENCODE_RUN = yargs_table(
    _OPENCODE_GLOBAL
    + """
    --command string
    -c, --continue boolean
    -s, --session string
    --fork boolean
    --share boolean
    -m, --model string
    --agent string
    --format string
    -f, --file array
    --title string
    --attach string
    -p, --password string
    -u, --username string
    --dir string
    --port number
    --variant string
    --thinking boolean
    --mini boolean
    --replay boolean
    --replay-limit number
    -i, --interactive boolean
    --auto boolean
    --yolo boolean
    --dangerously-skip-permissions boolean
    --demo boolean
    """
)
# `opencode [project]`: the interactive TUI.
OPENCODE_TUI = yargs_table(
    _OPENCODE_GLOBAL
    + """
    --port number
    --hostname string
    --mdns boolean
    --mdns-domain string
    --cors array
    -m, --model string
    -c, --continue boolean
    -s, --session string
    --fork boolean
    --prompt string
    --agent string
    --auto boolean
    --mini boolean
    --replay boolean
    --replay-limit number
    """
)
OPENCODE_COMMANDS = frozenset(
    {
        "acp",
        "agent",
        "attach",
        "auth",
        "completion",
        "db",
        "debug",
        "export",
        "github",
        "import",
        "mcp",
        "models",
        "plug",
        "plugin",
        "pr",
        "providers",
        "serve",
        "session",
        "stats",
        "uninstall",
        "upgrade",
        "web",
    }
)


# --- what a command line says --------------------------------------------------------------


@dataclass(frozen=True)
class Opt:
    """An option as the tool reads it: ``args[start:end]`` are its word and its values."""

    names: tuple[str, ...]  # canonical names the word sets (a group like ``-pc`` sets several)
    start: int
    end: int
    value: str | None = None  # its value, when it took exactly one


@dataclass(frozen=True)
class Parsed:
    opts: tuple[Opt, ...] = ()
    prompt: tuple[int, ...] = ()  # indices of the prompt's (or messages') words
    separator: int | None = None  # index of ``--``: every word after it is an operand
    unsure: bool = False  # an option the table does not know: operands cannot be told apart
    subcommand: bool = False  # the words run one of the tool's subcommands, not a session

    def find(self, *names: str) -> list[Opt]:
        return [o for o in self.opts if any(n in o.names for n in names)]

    def has(self, *names: str) -> bool:
        return bool(self.find(*names))


class _Reader:
    """What a parser found, collected word by word."""

    def __init__(self) -> None:
        self.names: dict[int, list[str]] = {}
        self.ends: dict[int, int] = {}
        self.values: dict[int, str] = {}
        self.prompt: list[int] = []
        self.separator: int | None = None
        self.unsure = False

    def option(self, at: int, name: str, *, end: int = 0, value: str | None = None) -> None:
        self.names.setdefault(at, []).append(name)
        self.ends[at] = max(self.ends.get(at, at + 1), end)
        if value is not None:
            self.values[at] = value

    def unknown(self, at: int, word: str) -> None:
        self.unsure = True
        self.option(at, word.split("=", 1)[0])

    def parsed(self) -> Parsed:
        opts = tuple(
            Opt(tuple(self.names[i]), i, self.ends[i], self.values.get(i))
            for i in sorted(self.names)
        )
        return Parsed(opts, tuple(self.prompt), self.separator, self.unsure)


def _dashed(word: str) -> bool:
    return len(word) > 1 and word[0] == "-"


def parse_commander(
    args: Sequence[str], table: Table, commands: frozenset[str] = frozenset()
) -> Parsed:
    """``args`` as the commander.js in Claude Code 2.1.197 reads them (``parseOptions``)."""
    r = _Reader()
    queue: deque[tuple[int, str]] = deque(enumerate(args))
    variadic: int | None = None
    while queue:
        i, word = queue.popleft()
        if word == "--":
            r.separator = i
            r.prompt.extend(j for j, _ in queue)
            break
        if variadic is not None and not _dashed(word):
            r.ends[variadic] = i + 1
            continue
        variadic = None
        if _dashed(word):
            variadic = _commander_option(r, queue, table, i, word)
        elif r.unsure:
            continue  # commander files it with the unknown option: its role is not known
        elif commands and not r.prompt and word in commands:
            return Parsed(subcommand=True)
        else:
            r.prompt.append(i)
    return r.parsed()


def _commander_option(
    r: _Reader, queue: deque[tuple[int, str]], table: Table, i: int, word: str
) -> int | None:
    """One option word; returns its index when it is a variadic option left open."""
    spec = table.get(word)
    if spec is not None:
        nxt = queue[0][1] if queue else None
        takes = spec.arity in ("value", "variadic") or (
            spec.arity == "optional" and nxt is not None and not _dashed(nxt)
        )
        if takes and nxt is not None:
            j, value = queue.popleft()
            r.option(i, spec.name, end=j + 1, value=value)
        else:
            r.option(i, spec.name)
        return i if spec.arity == "variadic" else None
    if len(word) > 2 and word[1] != "-":
        spec = table.get(word[:2])
        if spec is not None:
            if spec.arity == "flag":
                r.option(i, spec.name)
                queue.appendleft((i, "-" + word[2:]))  # the rest of the group, read again
            else:
                r.option(i, spec.name, value=word[2:])
            return None
    if re.match(r"^--[^=]+=", word):
        name, value = word.split("=", 1)
        spec = table.get(name)
        if spec is not None and spec.arity != "flag":
            r.option(i, spec.name, value=value)
            return None
    r.unknown(i, word)
    return None


def parse_pi(args: Sequence[str]) -> Parsed:
    """``args`` as Pi 0.73.1's ``parseArgs`` reads them."""
    if args and args[0] in PI_COMMANDS:
        return Parsed(subcommand=True)
    r = _Reader()
    i = 0
    while i < len(args):
        word, nxt = args[i], args[i + 1] if i + 1 < len(args) else None
        spec = PI.get(word)
        if word == "--":  # 1.6.0: every word after it is a message (or an @file)
            r.separator = i
            r.prompt.extend(j for j in range(i + 1, len(args)) if not args[j].startswith("@"))
            break
        if spec is not None:
            i = _pi_option(r, spec, i, nxt)
        elif word.startswith("@"):
            i += 1  # a file to attach to the first message: kept as it is
        elif word.startswith("--"):
            # An extension's flag: Pi gives it the next word unless that looks like an option.
            if "=" not in word and nxt is not None and not nxt.startswith(("-", "@")):
                r.option(i, word, end=i + 2, value=nxt)
                i += 2
            else:
                r.option(i, word.split("=", 1)[0])
                i += 1
        elif word.startswith("-"):
            r.unknown(i, word)  # Pi stops with "Unknown option"
            i += 1
        else:
            r.prompt.append(i)
            i += 1
    return r.parsed()


def _pi_option(r: _Reader, spec: Spec, i: int, nxt: str | None) -> int:
    if nxt is not None and (
        spec.arity == "value" or (spec.arity == "optional" and not nxt.startswith(("-", "@")))
    ):
        r.option(i, spec.name, end=i + 2, value=nxt)
        return i + 2
    r.option(i, spec.name)
    if (
        spec.name == "--print"
        and nxt is not None
        and not nxt.startswith("@")
        and (not nxt.startswith("-") or nxt.startswith("---"))
    ):
        r.prompt.append(i + 1)  # `-p <message>`: Pi takes the next word as the message
        return i + 2
    return i + 1


_NEGATIVE = re.compile(r"^-(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)$")


def _yargs_dashed(word: str) -> bool:
    return word.startswith("-") and not _NEGATIVE.match(word)


def parse_yargs(args: Sequence[str], table: Table, *, strict: bool = True) -> Parsed:
    """``args`` as yargs-parser reads them. ``strict``: an unknown option is an error (unsure);
    otherwise yargs takes it for a string option, as in its first pass that finds the command."""
    r = _Reader()
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            r.separator = i
            r.prompt.extend(range(i + 1, len(args)))
            break
        if not _yargs_dashed(word) or word == "-" or re.match(r"^---+(=|$)", word):
            r.prompt.append(i)
            i += 1
            continue
        specs = _yargs_specs(word, table, strict)
        if specs is None:
            r.unknown(i, word)
            i += 1
            continue
        if "=" in word:
            r.option(i, specs[-1].name, value=word.split("=", 1)[1])
            i += 1
            continue
        for s in specs[:-1]:
            r.option(i, s.name)
        i = _yargs_take(r, args, i, specs[-1])
    return r.parsed()


def _yargs_specs(word: str, table: Table, strict: bool) -> list[Spec] | None:
    """The options one word sets (several for a group ``-abc``), or None when not all known."""
    if word.startswith("--"):
        name = word.split("=", 1)[0]
        spec = table.get(name)
        if spec is None and not strict:
            spec = Spec(name, "optional")
        return [spec] if spec is not None else None
    letters = word[1:].split("=", 1)[0]
    if "=" in word and len(letters) != 1:
        return None
    specs = [table.get("-" + c) for c in letters]
    if any(s is None for s in specs) or any(s.arity != "flag" for s in specs[:-1] if s):
        return None
    return [s for s in specs if s is not None]


def _yargs_take(r: _Reader, args: Sequence[str], i: int, spec: Spec) -> int:
    nxt = args[i + 1] if i + 1 < len(args) else None
    if spec.arity == "flag":
        if nxt in ("true", "false"):
            r.option(i, spec.name, end=i + 2, value=nxt)
            return i + 2
        r.option(i, spec.name)
        return i + 1
    if spec.arity == "variadic":
        j = i + 1
        while j < len(args) and not _yargs_dashed(args[j]):
            j += 1
        r.option(i, spec.name, end=j)
        return j
    if nxt is not None and not _yargs_dashed(nxt):
        r.option(i, spec.name, end=i + 2, value=nxt)
        return i + 2
    r.option(i, spec.name)
    return i + 1


# --- resumed command lines -----------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How to go back to the interrupted session: options to drop, words to put first."""

    drop: tuple[Opt, ...] = ()
    first: tuple[str, ...] = ()


def _safe(plan: _Plan, p: Parsed, *session: str) -> _Plan:
    """The plan, unless it would cut a group of short options (``-pc``): then only add
    ``--continue`` when no session option is there at all."""
    if all(len(o.names) == 1 for o in plan.drop):
        return plan
    return _Plan(first=() if p.has(*session) else (CONTINUE,))


def _assemble(
    args: Sequence[str],
    p: Parsed,
    plan: _Plan,
    prompt: str | None,
    read: Callable[[list[str]], Parsed],
    *,
    at: int = 0,
    in_place: bool = True,
    separator: bool = True,
) -> list[str]:
    """The words without the dropped options, with ``plan.first`` before ``args[at]``, and with
    ``prompt`` instead of the prompt's words (None: the prompt stays as it was).

    The prompt goes in place of the old one (``in_place``), at the end, or after ``plan.first``:
    the first spot where the tool reads it as the prompt (not as the value of an option left
    open).
    """
    gone = {i for o in plan.drop for i in range(o.start, o.end)}
    if prompt is not None:
        gone |= set(p.prompt)
    kept = [w for i, w in enumerate(args) if i not in gone]
    head = sum(1 for i in range(at) if i not in gone)
    base = [*kept[:head], *plan.first, *kept[head:]]
    if prompt is None:
        return base
    spots = [len(base), head + len(plan.first)]
    if p.prompt:
        before = sum(1 for i in range(p.prompt[0]) if i not in gone)
        spots.insert(0 if in_place else 1, before + (len(plan.first) if before >= head else 0))
    candidates = [([*base[:s], prompt, *base[s:]], s) for s in spots]
    if separator and "--" not in base:
        candidates.append(([*base, "--", prompt], len(base) + 1))
    # Then every other spot: a word left next to an option may turn into its value or message
    # (Pi's `--print ---x`), so the first good spot can be anywhere.
    others = [s for s in range(len(base) + 1) if s not in spots]
    candidates += [([*base[:s], prompt, *base[s:]], s) for s in others]
    for words, index in candidates:
        seen = read(words)
        # The continuation is the whole prompt: no word kept from before turned into one.
        if not seen.subcommand and set(seen.prompt) == {index}:
            return words
    return candidates[0][0]


_CLAUDE_SESSION = (
    "--continue",
    "--resume",
    "--session-id",
    "--from-pr",
    "--teleport",
    "--remote",
    "--cloud",
)


def _claude_commands(args: Sequence[str]) -> frozenset[str]:
    """Claude Code registers its subcommands only when ``-p``/``--print`` is not among the words."""
    return frozenset() if "-p" in args or "--print" in args else CLAUDE_CODE_COMMANDS


def parse_claude_code(args: Sequence[str]) -> Parsed:
    return parse_commander(args, CLAUDE_CODE, _claude_commands(args))


def claude_code_resume_args(argv: Sequence[str], continuation_prompt: str) -> list[str]:
    """``claude --continue ...`` with the prompt replaced by the continuation prompt.

    The run goes back to the session the interrupted one wrote to: ``--session-id X`` becomes
    ``--resume X`` (the id is taken now); ``--resume <id>`` stays; the session picker
    (``--resume`` without an id, ``--from-pr``) and a fork (``--fork-session`` wrote a new
    session) become ``--continue``. Without persistence there is nothing to go back to: the run
    starts again as it was.
    """
    cmd, args = list(argv[:1]), list(argv[1:])
    p = parse_claude_code(args)
    if p.subcommand or p.has("--no-session-persistence"):
        return cmd + args
    plan = _safe(_claude_plan(p), p, *_CLAUDE_SESSION)
    print_mode = p.has("--print")
    prompt = None if p.unsure or not (p.prompt or print_mode) else continuation_prompt
    return cmd + _assemble(args, p, plan, prompt, parse_claude_code)


def _claude_plan(p: Parsed) -> _Plan:
    sid = p.find("--session-id")
    if sid:
        value = sid[-1].value or ""
        if not SESSION_ID.match(value):
            return _Plan()  # Claude Code refuses anything but a UUID: the run never started
        drop = p.find("--session-id", "--continue", "--resume", "--fork-session")
        return _Plan(tuple(drop), ("--resume", value))
    if p.has("--teleport", "--remote", "--cloud"):
        return _Plan()  # a remote session: it names itself
    resume, fork = p.find("--resume"), p.find("--fork-session")
    if resume and SESSION_ID.match(resume[-1].value or "") and not fork:
        return _Plan()
    # The fork (if any) happened in the interrupted run, which is now the latest session.
    again = () if p.has("--continue") else (CONTINUE,)
    return _Plan(tuple(p.find("--resume", "--from-pr", "--fork-session")), again)


def pi_resume_args(argv: Sequence[str], continuation_prompt: str) -> list[str]:
    """``pi --continue ...``; the messages become the continuation prompt (``@file`` kept).

    ``--session`` names the session and stays; ``--resume`` (a picker) and ``--fork`` (which
    wrote a new session, and which Pi refuses next to ``--continue``) become ``--continue``.
    ``--session-id X`` (1.6.0) reopens session X when it exists, and Pi refuses it next to
    ``--continue``, ``--resume`` or ``--session``: it stays alone, the fork (done) goes.
    ``--no-session`` saved nothing to go back to: the run starts again as it was.
    """
    cmd, args = list(argv[:1]), list(argv[1:])
    p = parse_pi(args)
    if p.subcommand or p.has("--no-session"):
        return cmd + args
    again = () if p.has("--continue") else (CONTINUE,)
    if p.has("--session-id"):
        plan = _Plan(tuple(p.find("--continue", "--resume", "--fork", "--session")))
    elif p.has("--fork", "--resume"):
        plan = _Plan(tuple(p.find("--fork", "--resume")), again)
    elif p.has("--session"):
        plan = _Plan()
    else:
        plan = _Plan(first=again)
    prompt = None if p.unsure or not (p.prompt or p.has("--print")) else continuation_prompt
    return cmd + _assemble(args, p, plan, prompt, parse_pi, separator=p.separator is not None)


def opencode_resume_args(argv: Sequence[str], continuation_prompt: str) -> list[str]:
    """``opencode run --continue ... <prompt>``; the interactive TUI gets ``--continue`` alone.

    ``--session`` names the session and stays; ``--fork`` (which wrote a new session) becomes
    ``--continue``. With ``--command`` the message words are the command's arguments: kept.
    """
    cmd, args = list(argv[:1]), list(argv[1:])
    first = parse_yargs(args, OPENCODE_RUN, strict=False).prompt
    command = args[first[0]] if first else None
    if command in OPENCODE_COMMANDS:
        return cmd + args
    if command != "run":
        p = parse_yargs(args, OPENCODE_TUI)
        return cmd + _assemble(args, p, _opencode_plan(p), None, _tui)
    p = parse_yargs(args, OPENCODE_RUN)
    run = first[0]
    messages = Parsed(p.opts, tuple(i for i in p.prompt if i != run), p.separator, p.unsure)
    keep = p.unsure or p.has("--command")
    plan = _opencode_plan(p)
    prompt = None if keep else continuation_prompt
    return cmd + _assemble(args, messages, plan, prompt, _run, at=run + 1, in_place=False)


def _opencode_plan(p: Parsed) -> _Plan:
    again = () if p.has("--continue") else (CONTINUE,)
    if p.has("--fork"):
        return _safe(_Plan(tuple(p.find("--fork", "--session")), again), p, "--continue")
    if p.has("--session", "--continue"):
        return _Plan()
    return _Plan(first=(CONTINUE,))


def _tui(words: list[str]) -> Parsed:
    return parse_yargs(words, OPENCODE_TUI)


def _run(words: list[str]) -> Parsed:
    """The run's words as yargs reads them, with ``run`` itself not among the messages."""
    p = parse_yargs(words, OPENCODE_RUN)
    return Parsed(p.opts, p.prompt[1:], p.separator, p.unsure)

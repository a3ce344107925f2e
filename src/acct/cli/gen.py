"""Generate the shell completion scripts and the man page from the live command tree.

``python -m acct.cli.gen`` rewrites ``completions/acct.bash``, ``completions/_acct``,
``completions/acct.fish`` and ``man/acct.1`` in the source tree; ``--check`` only reports drift
(exit 1). ``acct completion SHELL`` prints the same scripts at run time.

The tree is read through Typer's public ``typer.main.get_command`` and the command and
parameter objects it returns. What a value completes to is found by asking each parameter to
complete an empty word (``shell_complete``) with a probe store holding one known account name:
account names complete dynamically (``acct __complete accounts``), fixed choices such as
target names are written into the scripts, paths complete as files, and a variadic argument
of a command that passes unknown options through completes as a command line (``acct exec``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

PROBE_ACCOUNT = "acct-completion-probe"
SHELLS = ("bash", "zsh", "fish")
REPO = Path(__file__).resolve().parents[3]
HEADER = "Generated from the command tree by `python -m acct.cli.gen`; do not edit."


@dataclass(frozen=True)
class Param:
    name: str
    names: tuple[str, ...]  # option spellings; empty for an argument
    help: str
    takes_value: bool
    kind: str  # none | account | choice | file | dir | command
    choices: tuple[str, ...] = ()
    variadic: bool = False
    metavar: str = ""


@dataclass
class Command:
    path: tuple[str, ...]
    help: str
    short: str
    usage: str
    options: list[Param] = field(default_factory=list)
    arguments: list[Param] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join(self.path)

    def walk(self) -> Iterator[Command]:
        yield self
        for c in self.commands:
            yield from c.walk()


# --- reading the tree --------------------------------------------------------------------------

_MARKUP = re.compile(r"\[/?(?:[a-z]+(?:[ _][a-z]+)*)?\]")


def plain(text: str | None) -> str:
    """Help text without Rich markup, Click's ``\\b`` markers or surplus white space."""
    text = _MARKUP.sub("", text or "").replace("\\[", "[").replace("\b", "")
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def first_sentence(text: str) -> str:
    para = text.split("\n\n", 1)[0]
    return para.split(". ", 1)[0].rstrip(".")


@contextlib.contextmanager
def _probe_home() -> Iterator[None]:
    """A temporary ACCT_HOME whose store holds one account named :data:`PROBE_ACCOUNT`."""
    from acct.base.models import Account
    from acct.base.paths import Paths
    from acct.services.store import Store

    saved = {k: os.environ.get(k) for k in ("ACCT_HOME",)}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ACCT_HOME"] = tmp
        try:
            with Store(Paths.from_env(os.environ)).transaction() as accounts:
                accounts.add(Account(name=PROBE_ACCOUNT, kind="api_key", api_key="probe"))
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _passes_through(cmd: Any) -> bool:
    settings = getattr(cmd, "context_settings", None) or {}
    return (
        bool(settings.get("ignore_unknown_options"))
        or settings.get("allow_interspersed_args") is False
    )


def _is_path(param: Any) -> bool:
    """A path-valued parameter: Click's ``type`` where it has one, else Typer's annotation."""
    ptype = getattr(param, "type", None)
    if ptype is not None:
        return getattr(ptype, "name", "") in ("path", "file", "filename")
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return isinstance(annotation, type) and issubclass(annotation, PurePath)


def _kind(param: Any, ctx: Any, command: Any) -> tuple[str, tuple[str, ...]]:
    variadic = param.param_type_name == "argument" and param.nargs == -1
    if variadic and _passes_through(command):
        return "command", ()
    try:
        items = list(param.shell_complete(ctx, ""))
    except Exception:  # noqa: BLE001  (a completion callback that fails offers nothing)
        items = []
    types = {getattr(i, "type", "plain") for i in items}
    values = tuple(
        str(getattr(i, "value", i)) for i in items if getattr(i, "type", "plain") == "plain"
    )
    if not items and _is_path(param):
        types = {"file"}
    if "dir" in types:
        return "dir", ()
    if "file" in types:
        return "file", ()
    if PROBE_ACCOUNT in values:
        return "account", ()
    if values:
        return "choice", values
    return "none", ()


def _param(p: Any, ctx: Any, command: Any) -> Param:
    is_option = p.param_type_name == "option"
    takes_value = not (is_option and (p.is_flag or p.count))
    kind, choices = _kind(p, ctx, command) if takes_value else ("none", ())
    # Our own spelling, not Typer's: its metavars differ between releases.
    upper = (p.name or "").upper()
    metavar = upper if not is_option else (p.metavar or upper) if takes_value else ""
    return Param(
        name=p.name or "",
        # Sorted (short spellings first): Click may keep the help option's names in a set.
        names=tuple(sorted((*p.opts, *p.secondary_opts), key=lambda n: (n.startswith("--"), n)))
        if is_option
        else (),
        help=plain(getattr(p, "help", None)),
        takes_value=takes_value,
        kind=kind,
        choices=choices,
        variadic=(not is_option) and p.nargs == -1,
        metavar=metavar,
    )


def _usage(cmd: Any, ctx: Any) -> str:
    """``[OPTIONS] NAME [MORE]...`` in our own spelling (Typer's changes between releases)."""
    pieces = ["[OPTIONS]"]
    if getattr(cmd, "commands", None):
        pieces.append("COMMAND [ARGS]...")
    for p in cmd.get_params(ctx):
        if p.param_type_name != "argument" or getattr(p, "hidden", False):
            continue
        label = (p.name or "").upper() + ("..." if p.nargs == -1 else "")
        pieces.append(label if p.required else f"[{label}]")
    return " ".join(pieces)


def _command(cmd: Any, ctx: Any, path: tuple[str, ...]) -> Command:
    help_text = plain(cmd.help)
    node = Command(
        path=path,
        help=help_text,
        short=first_sentence(plain(cmd.short_help) or help_text),
        usage=_usage(cmd, ctx),
    )
    for p in cmd.get_params(ctx):
        if getattr(p, "hidden", False):
            continue
        (node.options if p.param_type_name == "option" else node.arguments).append(
            _param(p, ctx, cmd)
        )
    for name in sorted(getattr(cmd, "commands", {}) or {}):
        sub = cmd.commands[name]
        if getattr(sub, "hidden", False):
            continue
        sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
        node.commands.append(_command(sub, sub_ctx, (*path, name)))
    return node


def tree(app: Any = None) -> Command:
    """The live command tree of ``acct`` (or of another Typer ``app``)."""
    import typer.main

    if app is None:
        from acct.cli import app, load_all

        load_all()
    root = typer.main.get_command(app)
    with _probe_home():
        ctx = root.make_context("acct", [], resilient_parsing=True)
        return _command(root, ctx, ())


# --- bash --------------------------------------------------------------------------------------


def _sq(text: str) -> str:
    """Single-quote for POSIX shells."""
    return "'" + text.replace("'", "'\\''") + "'"


def _kind_word(p: Param) -> str:
    if p.kind == "choice":
        return "choice:" + ",".join(p.choices)
    return p.kind + ("*" if p.variadic else "")


BASH_HEAD = r"""# bash completion for acct
# HEADER

_acct_complete_kind() { # KIND WORD: complete WORD as a value of KIND
    local values
    case $1 in
    account*) COMPREPLY+=($(compgen -W "$(command acct __complete accounts 2>/dev/null)" -- "$2")) ;;
    choice:*) values=${1#choice:}; COMPREPLY+=($(compgen -W "${values//,/ }" -- "$2")) ;;
    file*) compopt -o filenames 2>/dev/null; COMPREPLY+=($(compgen -f -- "$2")) ;;
    dir*) compopt -o filenames 2>/dev/null; COMPREPLY+=($(compgen -d -- "$2")) ;;
    esac
}

_acct_arg_kind() { # INDEX: the kind of the INDEX-th positional argument (1-based)
    local -a kinds=($_acct_args)
    local n=${#kinds[@]}
    if (($1 <= n)); then
        _acct_kind=${kinds[$1 - 1]}
    elif ((n)) && [[ ${kinds[n - 1]} == *'*' ]]; then
        _acct_kind=${kinds[n - 1]}
    else
        _acct_kind=none
    fi
}

_acct() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local path="" word i=1 npos=0 dashdash=0 start=-1 opt="" _acct_kind
    local _acct_cmds _acct_opts _acct_vals _acct_args
    COMPREPLY=()
    _acct_spec ""
    while ((i < COMP_CWORD)); do
        word=${COMP_WORDS[i]}
        if ((!dashdash)) && [[ $word == -- ]]; then
            dashdash=1
        elif ((!dashdash)) && [[ $word == -?* ]]; then
            if [[ " $_acct_vals " == *" $word="* ]]; then
                if [[ ${COMP_WORDS[i + 1]} == = ]]; then ((i += 2)); else ((i += 1)); fi
            fi
        elif ((!dashdash && npos == 0)) && [[ " $_acct_cmds " == *" $word "* ]]; then
            path=${path:+$path }$word
            _acct_spec "$path"
        else
            ((npos += 1))
            _acct_arg_kind $npos
            if [[ $_acct_kind == command* ]]; then
                start=$i
                break
            fi
        fi
        ((i += 1))
    done
    if ((start < 0 && !dashdash)); then
        if [[ $cur == = ]]; then
            opt=$prev
            cur=""
        elif [[ $prev == = ]]; then
            opt=${COMP_WORDS[COMP_CWORD - 2]}
        elif [[ $prev == -?* ]]; then
            opt=$prev
        fi
        if [[ -n $opt && " $_acct_vals " == *" $opt="* ]]; then
            local rest=" $_acct_vals "
            rest=${rest#*" $opt="}
            _acct_complete_kind "${rest%% *}" "$cur"
            return 0
        fi
    fi
    if ((start < 0)); then
        _acct_arg_kind $((npos + 1))
        [[ $_acct_kind == command* && ($dashdash == 1 || $cur != -*) ]] && start=$COMP_CWORD
    fi
    if ((start >= 0)); then
        if declare -F _command_offset >/dev/null; then
            _command_offset $start
        elif ((start == COMP_CWORD)); then
            COMPREPLY=($(compgen -c -- "$cur"))
        else
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur"))
        fi
        return 0
    fi
    if ((!dashdash)) && [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$_acct_opts" -- "$cur"))
        return 0
    fi
    if ((npos == 0)) && [[ -n $_acct_cmds ]]; then
        COMPREPLY=($(compgen -W "$_acct_cmds" -- "$cur"))
        return 0
    fi
    _acct_complete_kind "$_acct_kind" "$cur"
    return 0
}
"""


def bash(root: Command) -> str:
    lines = [BASH_HEAD.replace("HEADER", HEADER).rstrip("\n"), ""]
    lines.append("_acct_spec() { # PATH: what the command at PATH accepts")
    lines.append("    case $1 in")
    for c in root.walk():
        cmds = " ".join(s.path[-1] for s in c.commands)
        opts = " ".join(n for o in c.options for n in o.names)
        vals = " ".join(f"{n}={_kind_word(o)}" for o in c.options if o.takes_value for n in o.names)
        args = " ".join(_kind_word(a) for a in c.arguments)
        lines.append(f"    {_sq(c.name)})")
        lines.append(f"        _acct_cmds={_sq(cmds)} _acct_opts={_sq(opts)}")
        lines.append(f"        _acct_vals={_sq(vals)} _acct_args={_sq(args)} ;;")
    lines.append("    *) _acct_cmds='' _acct_opts='' _acct_vals='' _acct_args='' ;;")
    lines.append("    esac")
    lines.append("}")
    lines.append("")
    lines.append("complete -F _acct acct")
    return "\n".join(lines) + "\n"


# --- zsh ---------------------------------------------------------------------------------------


def _zq(text: str) -> str:
    """Text for inside a single-quoted _arguments spec or description."""
    return text.replace("'", "'\\''").replace("[", "\\[").replace("]", "\\]").replace(":", "\\:")


def _zaction(p: Param) -> str:
    return {
        "account": "_acct_accounts",
        "choice": "(" + " ".join(p.choices) + ")",
        "file": "_files",
        "dir": "_files -/",
        "command": "_normal",
    }.get(p.kind, " ")


def _zfunc(c: Command) -> str:
    return "_acct" + "".join("_" + re.sub(r"\W", "_", w) for w in c.path)


def _zoption(o: Param) -> str:
    desc = _zq(first_sentence(o.help))
    exclusive = f"({' '.join(o.names)})" if len(o.names) > 1 else ""
    if o.name == "help" or o.names == ("--version",):
        exclusive = "(- *)"
    names = [n + ("=" if o.takes_value and n.startswith("--") else "") for n in o.names]
    value = f":{_zq(o.name)}:{_zaction(o)}" if o.takes_value else ""
    if len(names) == 1:
        return f"'{exclusive}{names[0]}[{desc}]{value}'"
    return f"'{exclusive}'{{{','.join(names)}}}'[{desc}]{value}'"


def _zargument(a: Param, index: int) -> str:
    label = _zq(a.metavar.lower() or a.name)
    if a.kind == "command":
        return f"'*::{label}:_acct_command'"
    where = "*" if a.variadic else str(index)
    return f"'{where}:{label}:{_zaction(a)}'"


def _zsh_function(c: Command) -> list[str]:
    specs = [_zoption(o) for o in c.options]
    out = [f"{_zfunc(c)}() {{"]
    if c.commands:
        out.append("    local curcontext=$curcontext state state_descr line ret=1")
        out.append("    typeset -A opt_args")
        specs += ["': :->command'", "'*:: :->argument'"]
        out.append("    _arguments -C -S \\")
        out += [f"        {s} \\" for s in specs[:-1]] + [f"        {specs[-1]} && ret=0"]
        out.append("    case $state in")
        out.append("    command)")
        out.append("        local -a commands=(")
        out += [f"            '{_zq(s.path[-1])}:{_zq(s.short)}'" for s in c.commands]
        out.append("        )")
        out.append("        _describe -t commands 'acct command' commands && ret=0 ;;")
        out.append("    argument)")
        out.append("        curcontext=${curcontext%:*:*}:acct-$words[1]:")
        out.append("        case $words[1] in")
        out += [f"        ({s.path[-1]}) {_zfunc(s)} && ret=0 ;;" for s in c.commands]
        out.append("        esac ;;")
        out.append("    esac")
        out.append("    return ret")
    else:
        specs += [_zargument(a, i) for i, a in enumerate(c.arguments, 1)]
        out.append("    _arguments -S \\")
        out += [f"        {s} \\" for s in specs[:-1]] + [f"        {specs[-1]}"]
    out.append("}")
    return out


def zsh(root: Command) -> str:
    lines = [
        "#compdef acct",
        "# zsh completion for acct",
        f"# {HEADER}",
        "",
        "_acct_accounts() {",
        "    local -a names",
        '    names=(${(f)"$(command acct __complete accounts 2>/dev/null)"})',
        "    _describe -t accounts account names",
        "}",
        "",
        "# The words of a wrapped command (`acct exec -- CMD ARGS`). _arguments leaves a `--` that",
        "# comes right after the subcommand in front of them; drop it so CMD completes as a command.",
        "_acct_command() {",
        "    if [[ $words[1] == -- ]] && (( CURRENT > 1 )); then",
        '        words=("${(@)words[2,-1]}")',
        "        (( CURRENT-- ))",
        "    fi",
        "    _normal",
        "}",
        "",
    ]
    for c in root.walk():
        lines += _zsh_function(c) + [""]
    lines.append("if [[ $zsh_eval_context[-1] == loadautofunc ]]; then")
    lines.append('    _acct "$@"')
    lines.append("else")
    lines.append("    compdef _acct acct")
    lines.append("fi")
    return "\n".join(lines) + "\n"


# --- fish --------------------------------------------------------------------------------------

FISH_HEAD = r"""# fish completion for acct
# HEADER

function __acct_accounts
    command acct __complete accounts 2>/dev/null
end

# The command path typed so far ('' at the top, then e.g. 'exec'), or 'WRAPPED' once the words
# of a wrapped command (after `acct exec [options] --`) have started.
function __acct_path
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l path ''
    set -l skip 0
    for t in $tokens
        if test $skip = 1
            set skip 0
            continue
        end
        if test "$t" = --
            contains -- "$path" $__acct_wrappers; and echo WRAPPED; and return
            continue
        end
        if string match -q -- '-*' $t
            contains -- "$path $t" $__acct_valued; and set skip 1
            continue
        end
        set -l next (string trim -- "$path $t")
        if contains -- "$next" $__acct_paths
            set path $next
        else if contains -- "$path" $__acct_wrappers
            echo WRAPPED
            return
        end
    end
    echo $path
end

function __acct_at
    test (__acct_path) = "$argv[1]"
end

function __acct_wrapped # the wrapped command line, completed as if typed alone
    set -l tokens (commandline -opc) (commandline -ct)
    set -e tokens[1]
    set -l start 1
    for i in (seq (count $tokens))
        if test "$tokens[$i]" = --
            set start (math $i + 1)
            break
        end
        string match -q -- '-*' $tokens[$i]; or contains -- $tokens[$i] $__acct_paths; or begin
            set start $i
            break
        end
    end
    complete -C (string join -- ' ' (string escape -- $tokens[$start..-2]) $tokens[-1])
end
"""


def _fish_q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_values(p: Param) -> str:
    if p.kind == "account":
        return " -x -a '(__acct_accounts)'"
    if p.kind == "choice":
        return " -x -a " + _fish_q(" ".join(p.choices))
    if p.kind in ("file", "dir"):
        return " -r -F"
    return " -x" if p.takes_value else ""


def fish(root: Command) -> str:
    commands = list(root.walk())
    paths = [c.name for c in commands if c.path]
    valued = [
        f"{c.name} {n}".strip()
        for c in commands
        for o in c.options
        if o.takes_value
        for n in o.names
    ]
    wrappers = [c.name for c in commands if any(a.kind == "command" for a in c.arguments)]
    lines = [FISH_HEAD.replace("HEADER", HEADER).rstrip("\n"), ""]
    lines.append("set -g __acct_paths " + " ".join(_fish_q(p) for p in paths))
    lines.append("set -g __acct_valued " + " ".join(_fish_q(v) for v in valued))
    lines.append("set -g __acct_wrappers " + " ".join(_fish_q(w) for w in wrappers))
    lines.append("")
    lines.append("complete -c acct -f")
    lines.append("complete -c acct -n \"__acct_at WRAPPED\" -x -a '(__acct_wrapped)'")
    for c in commands:
        cond = f"-n {_fish_q('__acct_at ' + _fish_q(c.name))}"
        for s in c.commands:
            lines.append(f"complete -c acct {cond} -a {_fish_q(s.path[-1])} -d {_fish_q(s.short)}")
        for o in c.options:
            spell = "".join(
                f" -l {n[2:]}" if n.startswith("--") else f" -s {n[1:]}" for n in o.names
            )
            desc = f" -d {_fish_q(first_sentence(o.help))}" if o.help else ""
            lines.append(f"complete -c acct {cond}{spell}{_fish_values(o)}{desc}")
        for a in c.arguments:
            if a.kind == "command":
                lines.append(f"complete -c acct {cond} -x -a '(__acct_wrapped)'")
            elif a.kind != "none":
                lines.append(f"complete -c acct {cond}{_fish_values(a)}")
    return "\n".join(lines) + "\n"


# --- man page ----------------------------------------------------------------------------------


def _roff(text: str) -> str:
    """Escape text for troff: backslashes, hyphens (printed as ASCII minus signs, so options
    copied from the page work), and leading dots and quotes."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    out = []
    for line in text.split("\n"):
        out.append("\\&" + line if line[:1] in (".", "'") else line)
    return "\n".join(out)


MAN_DESCRIPTION = r"""
.B acct
keeps several Claude Pro and Max accounts (OAuth logins or API keys), polls their 5\-hour and
7\-day utilization, and writes the best account's credentials into the files that coding tools
read: Claude Code, OpenCode and Pi.
.PP
.B acct exec \-\- claude
picks an account, lends it to the tool's credential file, runs the tool, and when the tool ends
on a usage limit, benches that account until its reset, lends the next one and resumes the work.
.PP
Refresh tokens are single\-use. While an account is lent to a tool's file, that file is the only
live holder of its token lineage: acct reads it back (harvests) after the tool exits and before
it writes the file again, and never refreshes a lineage a tool holds.
.PP
.B acct prompt
and the snippet printed by
.B acct shell\-init
show the active account and its utilization in the shell prompt without network access.
"""

MAN_TAIL = r"""
.SH FILES
Without
.BR ACCT_HOME ,
acct follows the XDG base directories (platform conventions outside Linux).
.TP
.I ~/.local/share/acct/accounts.toml
The accounts and their tokens (mode 0600, directory 0700). Every change is written atomically
under a lock; a file acct cannot parse is never overwritten.
.TP
.I ~/.config/acct/config.toml
Preferences: default target, policy, thresholds, per\-tool resume arguments and exit patterns.
.TP
.I ~/.local/state/acct/state.db
Shared usage cache, benches (cool\-downs), history and the running
.B acct exec
sessions (SQLite, WAL mode). Safe to delete while no
.B acct exec
runs.
.TP
.I ~/.local/state/acct/prompt.json
What
.B acct prompt
reads: per target, the account its file holds, the file's modification time and size, and the
cached utilization.
.TP
.I ~/.local/state/acct/prompt
One line per target,
.RI \(lq target <TAB> segment \(rq,
read by the shell prompt functions of
.BR "acct shell\-init" .
.TP
.I ~/.claude/.credentials.json
Claude Code's credentials (moved by
.B CLAUDE_CONFIG_DIR
and
.BR CLAUDE_SECURESTORAGE_CONFIG_DIR ).
.TP
.I ~/.local/share/opencode/auth.json
OpenCode's credentials (moved by
.BR XDG_DATA_HOME ).
.TP
.I ~/.pi/agent/auth.json
Pi's credentials (moved by
.BR PI_CODING_AGENT_DIR ).
.SH ENVIRONMENT
.TP
.B ACCT_HOME
Put every acct file under this directory
.RI ( config/ ", " data/ ", " state/ ).
.TP
.B ACCT_API_BASE
Base URL of the Anthropic API (default https://api.anthropic.com).
.TP
.B ACCT_TOKEN_URL
OAuth token endpoint.
.TP
.B ACCT_AUTHORIZE_URL
OAuth authorization page.
.TP
.BR XDG_CONFIG_HOME ", " XDG_DATA_HOME ", " XDG_STATE_HOME
Base directories for acct's configuration, data and state (and OpenCode's data).
.TP
.BR CLAUDE_CONFIG_DIR ", " CLAUDE_SECURESTORAGE_CONFIG_DIR
Where Claude Code keeps its configuration and credentials.
.TP
.B PI_CODING_AGENT_DIR
Where Pi keeps its configuration and credentials.
.TP
.BR ACCT_ACCOUNT ", " ACCT_TARGET ", " ACCT_EXEC
Set by
.B acct exec
for the child: the account lent, the target written, and a marker that the child runs under acct.
.SH EXIT STATUS
.TP
.B 0
Success.
.TP
.B 1
An error.
.TP
.B 2
Invalid usage: an unknown command, option or target, or a bad value.
.TP
.B 3
Not found: no such account (or file).
.TP
.B 4
The account needs a new login, or authentication failed.
.TP
.B 5
Every account is rate\-limited.
.TP
.B 6
Busy: a lock could not be taken in time.
.TP
.B 130
Interrupted.
.PP
.B acct exec
exits with the child's own status (128+N when the child was killed by signal N), 127 when the
command is not found and 126 when it cannot be executed.
.B acct prompt
always exits 0.
.B acct capacity
exits 0, 10 or 20 for a green, yellow or red pool.
.SH EXAMPLES
Add an account and see every account's quota:
.PP
.RS
.nf
acct login work
acct list \-\-usage
.fi
.RE
.PP
Run Claude Code on the best account, rotating when it hits a limit:
.PP
.RS
.nf
acct exec \-\- claude
.fi
.RE
.PP
Show the active account in the bash prompt:
.PP
.RS
.nf
eval "$(acct shell\-init bash)"
PS1='${ACCT_PROMPT:+($ACCT_PROMPT) }'"$PS1"
.fi
.RE
.SH SEE ALSO
.BR claude (1)
"""


def man(root: Command) -> str:
    from acct import __version__

    out = [
        f'.\\" {HEADER}',
        f'.TH ACCT 1 "" "acct {__version__}" "User Commands"',
        ".SH NAME",
        "acct \\- "
        + _roff(first_sentence(root.help) or "manage Claude accounts").lower()[:1]
        + _roff(first_sentence(root.help))[1:],
        ".SH SYNOPSIS",
        ".B acct",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGUMENTS\\fR]...",
        ".SH DESCRIPTION",
        MAN_DESCRIPTION.strip(),
        ".SH OPTIONS",
    ]
    out += _man_options(root)
    out.append(".SH COMMANDS")
    for c in root.walk():
        if not c.path:
            continue
        out.append(f'.SS "acct {_roff(c.name)} {_roff(c.usage)}"')
        out += [".PP\n" + _roff(p) for p in c.help.split("\n\n")] if c.help else []
        for a in c.arguments:
            if a.help:
                out += [".TP", f"\\fI{_roff(a.metavar or a.name.upper())}\\fR", _roff(a.help)]
        out += _man_options(c)
    out.append(MAN_TAIL.strip())
    return "\n".join(out) + "\n"


def _man_options(c: Command) -> list[str]:
    out = []
    for o in c.options:
        spell = ", ".join(f"\\fB{_roff(n)}\\fR" for n in o.names)
        if o.takes_value:
            spell += f" \\fI{_roff(o.metavar)}\\fR"
        out += [".TP", spell, _roff(o.help) if o.help else ""]
    return [line for line in out if line != ""]


# --- files -------------------------------------------------------------------------------------

GENERATORS: dict[str, Callable[[Command], str]] = {
    "completions/acct.bash": bash,
    "completions/_acct": zsh,
    "completions/acct.fish": fish,
    "man/acct.1": man,
}
COMPLETIONS = {"bash": bash, "zsh": zsh, "fish": fish}


def completion(shell: str) -> str:
    return COMPLETIONS[shell](tree())


def render_all() -> dict[str, str]:
    root = tree()
    return {path: gen(root) for path, gen in GENERATORS.items()}


def drift(base: Path = REPO) -> list[str]:
    """The generated files under ``base`` that differ from fresh generator output."""
    stale = []
    for path, text in render_all().items():
        try:
            current = (base / path).read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            stale.append(path)
    return stale


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--check"]):
        sys.stderr.write("usage: python -m acct.cli.gen [--check]\n")
        return 2
    if args == ["--check"]:
        stale = drift()
        for path in stale:
            sys.stderr.write(f"{path} is out of date: run `python -m acct.cli.gen`\n")
        return 1 if stale else 0
    for path, text in render_all().items():
        (REPO / path).parent.mkdir(parents=True, exist_ok=True)
        (REPO / path).write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shell integration: ``acct prompt``, ``acct shell-init SHELL`` and ``acct completion SHELL``."""

from __future__ import annotations

import os
import shlex
from enum import Enum
from typing import Annotated

import typer

from acct.cli import app
from acct.cli.common import TargetOpt, ctx


class Shell(str, Enum):  # noqa: UP042  (Typer shows a str-Enum's values as the choices)
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


ShellArg = Annotated[Shell, typer.Argument(help="bash, zsh or fish.", show_default=False)]


@app.command("prompt")
def prompt_command(
    target: TargetOpt = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="Placeholders: {account} {target} {5h} {7d} {peak} {reset} {5h_reset} {7d_reset} "
            '(default: "{account} {peak}").',
        ),
    ] = None,
) -> None:
    """Print the account a tool's file holds and its utilization, for the shell prompt.

    Reads local state only and always exits 0. Prints nothing when there is nothing to show,
    and "?" when the tool's file changed since acct last looked at it (for example after a
    /login in the tool).
    """
    from acct.fast.prompt import render

    text = render(os.environ, target, fmt)
    if text:
        print(text)


# Each snippet defines __acct_prompt, which reads the prompt file with shell builtins only and
# sets ACCT_PROMPT (bash, zsh) or prints the segment (fish); no process starts per prompt.
_BASH = r"""# acct shell integration for bash: eval "$(acct shell-init bash)"
__acct_prompt_file=FILE
__acct_prompt_target=TARGET
__acct_prompt() {
    local target segment
    ACCT_PROMPT=
    [[ -r $__acct_prompt_file ]] || return 0
    while IFS=$'\t' read -r target segment; do
        if [[ $target == "$__acct_prompt_target" ]]; then
            ACCT_PROMPT=$segment
            return 0
        fi
    done <"$__acct_prompt_file"
}
if [[ ";${PROMPT_COMMAND[*]};" != *";__acct_prompt;"* ]]; then
    PROMPT_COMMAND="__acct_prompt${PROMPT_COMMAND:+;$PROMPT_COMMAND}"
fi
# Show it with: PS1='${ACCT_PROMPT:+($ACCT_PROMPT) }'"$PS1"
"""

_ZSH = r"""# acct shell integration for zsh: eval "$(acct shell-init zsh)"
typeset -g __acct_prompt_file=FILE
typeset -g __acct_prompt_target=TARGET
typeset -g ACCT_PROMPT=
__acct_prompt() {
    local target segment
    ACCT_PROMPT=
    [[ -r $__acct_prompt_file ]] || return 0
    while IFS=$'\t' read -r target segment; do
        if [[ $target == "$__acct_prompt_target" ]]; then
            ACCT_PROMPT=${segment//\%/%%}
            return 0
        fi
    done <"$__acct_prompt_file"
}
autoload -Uz add-zsh-hook
add-zsh-hook precmd __acct_prompt
# Show it with: setopt prompt_subst; PROMPT='${ACCT_PROMPT:+($ACCT_PROMPT) }'"$PROMPT"
"""

_FISH = r"""# acct shell integration for fish: acct shell-init fish | source
set -g __acct_prompt_file FILE
set -g __acct_prompt_target TARGET
function __acct_prompt --description 'acct: the active account and its utilization'
    test -r $__acct_prompt_file; or return 0
    while read -l --delimiter \t target segment
        if test "$target" = "$__acct_prompt_target"
            printf '%s' $segment
            return 0
        end
    end <$__acct_prompt_file
end
# Show it with: in fish_prompt, echo -n (__acct_prompt)' '
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def shell_init(shell: Shell, prompt_file: str, target: str, completion: str | None) -> str:
    """The snippet for ``shell``; the prompt file's path is fixed now, at shell start."""
    template = {Shell.bash: _BASH, Shell.zsh: _ZSH, Shell.fish: _FISH}[shell]
    quote = _fish_quote if shell is Shell.fish else shlex.quote
    text = template.replace("FILE", quote(prompt_file)).replace("TARGET", quote(target))
    if completion:
        if shell is Shell.zsh:
            # Sourced rather than autoloaded: register only when compinit has run.
            completion = completion.replace(
                "    compdef _acct acct", "    (( $+functions[compdef] )) && compdef _acct acct"
            )
        text += "\n" + completion
    return text


@app.command("shell-init")
def shell_init_command(
    shell: ShellArg,
    target: TargetOpt = None,
    completion: Annotated[
        bool, typer.Option("--completion/--no-completion", help="Include the completion script.")
    ] = True,
) -> None:
    """Print shell code that shows the active account in the prompt and sets up completion.

    Load it from your shell's start-up file: eval "$(acct shell-init bash)" (or zsh), or
    acct shell-init fish | source. The prompt function reads a file acct keeps current, with
    shell built-ins only: no process starts for each prompt.
    """
    c = ctx()
    script = None
    if completion:
        from acct.cli.gen import completion as generate

        script = generate(shell.value)
    text = shell_init(shell, str(c.paths.prompt_file), target or c.config.default_target, script)
    print(text, end="")


@app.command("completion")
def completion_command(shell: ShellArg) -> None:
    """Print the completion script for bash, zsh or fish.

    The packages install these scripts already; use this to load them by hand, for example
    source <(acct completion bash).
    """
    from acct.cli.gen import completion as generate

    print(generate(shell.value), end="")

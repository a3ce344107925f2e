"""``acct exec -- CMD [ARGS...]``: the command. The session itself is
:mod:`acct.app.exec_session`; this module parses the options and says on stderr what the session
reports."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Annotated

import typer

from acct.app.exec_session import ExecOptions, run_exec
from acct.base.errors import Interrupted
from acct.base.timefmt import time_left
from acct.cli import app
from acct.cli.common import TargetOpt, complete_account, ctx
from acct.cli.plain import line
from acct.services.context import Ctx


class TerminalReporter:
    """The session's news as ``acct: ...`` lines on stderr; waits with a countdown."""

    def note(self, message: str) -> None:
        line(f"acct: {message}")

    def warn(self, message: str) -> None:
        from acct.cli.render import warn  # Rich, only when there is a warning to show

        warn(message)

    def wait(self, until: float, message: str) -> None:
        countdown(until, message)


def _stderr_columns() -> int:
    """The terminal's width (``COLUMNS`` first, as for every curses program), 80 when unknown."""
    with contextlib.suppress(ValueError):
        if int(os.environ.get("COLUMNS", "")) > 0:
            return int(os.environ["COLUMNS"])
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return 80


def countdown(until: float, message: str) -> None:
    """Wait until ``until``; Ctrl-C cancels (exit 130).

    ``message`` is printed once. On a terminal a short ``acct: 59m12s left`` line then redraws in
    place, cut below the terminal's width so it never wraps (a wrapped line cannot be redrawn
    with a carriage return); elsewhere nothing more is written until the wait ends.
    """
    tty = sys.stderr.isatty()
    line(f"acct: {message} (Ctrl-C cancels)")
    try:
        while (left := until - time.time()) > 0:
            if tty:
                status = f"acct: {time_left(left)} left"[: max(1, _stderr_columns() - 1)]
                sys.stderr.write(f"\r{status}\x1b[K")
                sys.stderr.flush()
            time.sleep(min(1.0, left))
    except KeyboardInterrupt:
        if tty:
            sys.stderr.write("\n")
        raise Interrupted("stopped waiting for a reset") from None
    if tty:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


@app.command(
    "exec",
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def exec_command(
    cmd: Annotated[
        list[str],
        typer.Argument(
            metavar="CMD...", help="The tool and its arguments, after --.", show_default=False
        ),
    ],
    target: TargetOpt = None,
    account: Annotated[
        str | None,
        typer.Option(
            "--account", "-a", help="Start with this account.", autocompletion=complete_account
        ),
    ] = None,
    policy: Annotated[
        str | None, typer.Option("--policy", help="headroom, pace, round-robin or drain.")
    ] = None,
    explain_: Annotated[
        bool, typer.Option("--explain", help="Show how the account was chosen.")
    ] = False,
    no_rotate: Annotated[
        bool, typer.Option("--no-rotate", help="Never re-run the tool on another account.")
    ] = False,
    max_rotations: Annotated[
        int | None,
        typer.Option(
            "--max-rotations", help="Switch accounts at most this often (default from config)."
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="When every account is limited, wait for the first reset."),
    ] = False,
    nested: Annotated[
        bool, typer.Option("--nested", help="Run even inside another `acct exec`.")
    ] = False,
    proxy: Annotated[
        bool | None,
        typer.Option(
            "--proxy/--no-proxy",
            help="Route the tool's API requests through a loopback proxy that reads live usage "
            "and quota refusals from every answer (default: on for claude-code).",
            show_default=False,
        ),
    ] = None,
    isolate: Annotated[
        bool,
        typer.Option(
            "--isolate",
            help="Claude Code only: run on a credentials file of this session's own (automatic "
            "when another `acct exec` uses the default one).",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            metavar="PORT",
            help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics while the session runs.",
        ),
    ] = None,
) -> None:
    """Run a coding tool on the best account; when it stops on a usage limit, switch and resume.

    The tool comes from the command's name (claude, opencode, pi) unless --target says. acct exits
    with the tool's own status (128+N when signal N ended it); 5 when every account is
    rate-limited.
    """
    opts = ExecOptions(
        argv=list(cmd),
        target=target,
        account=account,
        policy=policy,
        explain=explain_,
        rotate=not no_rotate,
        max_rotations=max_rotations,
        wait=wait,
        nested=nested,
        proxy=proxy,
        isolate=isolate,
    )
    raise typer.Exit(_with_metrics(ctx(), opts, metrics_port))


def _with_metrics(c: Ctx, opts: ExecOptions, port: int | None) -> int:
    """:func:`run_exec`, with ``/metrics`` served on 127.0.0.1 meanwhile when a port is given."""
    if port is None:
        return run_exec(c, opts, TerminalReporter())
    from acct.app.metrics import serving

    with serving(c, port):
        return run_exec(c, opts, TerminalReporter())

"""The command-line interface: the only layer that prints or prompts.

Each command module registers its commands on ``app``; ``run`` is the single place where
errors turn into messages and exit statuses.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import typer

from acct import __version__
from acct.base.errors import EXIT_INTERRUPTED, AcctError, Interrupted, UsageError

if TYPE_CHECKING:
    from acct.services.context import Ctx

app = typer.Typer(
    name="acct",
    help="Keep several Claude accounts, see their quota, and run coding tools on the best one.",
    no_args_is_help=False,  # plain `acct` prints help and exits 0: see run()
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"acct {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Keep several Claude accounts, see their quota, and run coding tools on the best one."""


# Which module defines each command. Running one command imports only its module, which
# keeps start-up short (``acct exec`` wraps every run of a tool); help, completion and the
# generators import them all.
COMMAND_MODULES: dict[str, str] = {
    "login": "login",
    "refresh": "login",
    "list": "accounts",
    "ls": "accounts",
    "remove": "accounts",
    "rename": "accounts",
    "disable": "accounts",
    "enable": "accounts",
    "use": "targets",
    "status": "targets",
    "doctor": "targets",
    "import": "targets",
    "exec": "exec",
    "prompt": "shell",
    "shell-init": "shell",
    "completion": "shell",
    "capacity": "observe",
    "stats": "observe",
    "metrics": "observe",
    "watch": "watch",
    "pool": "pool",
}
_MODULE_ORDER = ("login", "accounts", "targets", "exec", "observe", "watch", "shell", "pool")
_loaded: set[str] = set()


def _load(module: str) -> None:
    if module not in _loaded:
        import importlib

        importlib.import_module(f"acct.cli.{module}")
        _loaded.add(module)


def load_all() -> None:
    """Register every command (for help, completion scripts and the man page)."""
    for module in _MODULE_ORDER:
        _load(module)


def load_for(argv: list[str]) -> None:
    """Register just the command ``argv`` names, or all of them when it names none."""
    first = next((a for a in argv if not a.startswith("-")), None)
    module = COMMAND_MODULES.get(first or "")
    if module is None:
        load_all()
    else:
        _load(module)


def report(e: AcctError) -> None:
    from acct.cli.plain import mode, safe

    text = f"acct: {e.message}"
    if e.hint:
        text += f"; {e.hint}"
    sys.stderr.write(safe(text) + "\n")  # one line, whatever the message quotes
    sys.stderr.flush()
    if mode.json:
        sys.stdout.write(
            json.dumps({"version": 1, "kind": "error", "error": e.to_dict()}, indent=2) + "\n"
        )


class _Interrupts:
    """Notes whether Ctrl-C reached acct itself.

    Typer turns a KeyboardInterrupt into a silent exit 130, which looks the same as ``acct
    exec`` passing on a tool's own 130. acct's SIGINT handler marks the difference; ``acct
    exec`` puts its own handlers in place while the tool runs, so the tool's Ctrl-C is not
    counted here.
    """

    seen = False

    def handler(self, signum: int, frame: object) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def install(self) -> None:
        import signal

        try:
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                signal.signal(signal.SIGINT, self.handler)
        except ValueError:  # not the main thread: leave signals alone
            pass


interrupts = _Interrupts()


def _os_error(e: OSError) -> int:
    where = f": {e.filename}" if e.filename else ""
    sys.stderr.write(f"acct: {e.strerror or type(e).__name__}{where}\n")
    return 1


def _before_separator(args: list[str]) -> list[str]:
    """The arguments acct itself reads: those after ``--`` belong to the command ``acct exec`` runs."""
    return args[: args.index("--")] if "--" in args else args


def _sentence(text: str) -> str:
    """``No such option: -x.`` as ``no such option: -x``: acct's messages start small, end bare."""
    text = text.strip().rstrip(".")
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    return text


def usage_error(e: typer.TyperException) -> UsageError:
    """A parsing error Typer raised (unknown command or option, bad or missing value) as acct's error.

    ``typer.TyperException`` is the public base of the usage errors of the Click copy Typer
    bundles; only its ``message``, ``exit_code``, ``format_message()`` and the ``ctx`` the parser
    attaches are read, so nothing reaches into Typer's private modules.
    """
    message, _, suggestion = e.format_message().partition(". Did you mean ")
    if suggestion:
        hint: str | None = "did you mean " + suggestion
    else:
        command_path = getattr(getattr(e, "ctx", None), "command_path", None) or "acct"
        hint = f"`{command_path} --help` shows the usage"
    return UsageError(_sentence(message), hint=hint)


def check_config(args: list[str]) -> None:
    """Read ``config.toml`` once before any command runs, so a broken file is always reported.

    A command that never reads a setting would otherwise run as if the file were fine. Help and
    ``acct prompt`` (which must stay quiet in a shell prompt) are left alone.
    """
    own = _before_separator(args)
    name = next((a for a in own if not a.startswith("-")), None)
    if name is None or name not in COMMAND_MODULES or name == "prompt":
        return
    if {"-h", "--help"} & set(own):
        return
    from acct.cli.common import ctx

    c = ctx()
    _ = c.config  # parsing is validating; the command reuses the parsed config
    _ = c.endpoints  # so are the endpoint variables (a bad port is named before any request)
    _recover_refreshes(c)


def _recover_refreshes(c: Ctx) -> None:
    """Store what a refresh on this machine got but could not store (its process was killed
    between the answer and the store): a glance at one directory when there is nothing."""
    if not c.paths.rescued():
        return
    from acct.services.providers import recover_refreshes

    for name in recover_refreshes(c):
        sys.stderr.write(
            f"acct: stored the tokens an earlier refresh of {name!r} could not store\n"
        )


def _invoke(args: list[str]) -> int:
    """Run the command ``args`` names; help asked with no arguments at all is not an error."""
    try:
        rv = app(args=args or ["--help"], prog_name="acct", standalone_mode=False)
    except typer.TyperException as e:
        raise usage_error(e) from None
    except typer.Abort:
        # A prompt ended: Ctrl-C (acct's handler saw it) or the end of its input.
        if interrupts.seen:
            raise Interrupted("interrupted") from None
        raise AcctError("the input ended before the answer") from None
    code = rv if isinstance(rv, int) else 0
    if code == EXIT_INTERRUPTED and interrupts.seen:
        sys.stderr.write("acct: interrupted\n")
    return code


def run(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    interrupts.install()
    from acct.app.observe import install

    install()
    try:
        load_for(args)
        if "--json" in _before_separator(args):
            # Errors found before the command runs (usage, config) print the JSON error too.
            from acct.cli.plain import mode

            mode.json = True
        check_config(args)
        status = _invoke(args)
        _settle_lost()
        return status
    except SystemExit as e:
        code = e.code
        if code is None:
            return 0
        if isinstance(code, int):
            if code == EXIT_INTERRUPTED and interrupts.seen:
                sys.stderr.write("acct: interrupted\n")
            return code
        sys.stderr.write(f"{code}\n")
        return 1
    except AcctError as e:
        report(e)
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("acct: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 1
    except OSError as e:
        return _os_error(e)
    except Exception as e:  # noqa: BLE001 - the last resort: a defect, never a traceback
        return internal_error(e)


def _settle_lost() -> None:
    """After a command that used the pool: what the pool took back from this machine while it
    was silent (``acct pool reclaim``), said once; never fails the command."""
    from acct.cli import common

    c = common._ctx
    if c is None or c.__dict__.get("_backends") is None:
        return
    try:
        from acct.app.pool_beat import settle_lost

        messages = settle_lost(c)
    except Exception:  # noqa: BLE001  (the command's own outcome stands)
        return
    from acct.cli.render import warn

    for message in messages:
        warn(message)


DEBUG_VAR = "ACCT_DEBUG"


class InternalError(AcctError):
    code = "internal"


def internal_error(e: BaseException) -> int:
    """One line naming the exception, and how to see the rest (``ACCT_DEBUG=1``)."""
    import os

    if os.environ.get(DEBUG_VAR, "") not in ("", "0"):
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    text = " ".join(str(e).split())
    text = text if len(text) <= 160 else text[:159] + "…"
    report(
        InternalError(
            f"internal error: {type(e).__name__}: {_redacted(text) or '-'}",
            hint=f"this is a bug in acct; {DEBUG_VAR}=1 shows the traceback to report",
        )
    )
    return 1


def _redacted(text: str) -> str:
    """Anything token-shaped in an exception's text, as its fingerprint."""
    import re

    from acct.base.models import fingerprint

    return re.sub(r"sk-ant-[A-Za-z0-9_\-]+", lambda m: f"<token fp {fingerprint(m[0])}>", text)

"""The command-line interface: the only layer that prints or prompts.

Each command module registers its commands on ``app``; ``run`` is the single place where
errors turn into messages and exit statuses.
"""

from __future__ import annotations

import json
import sys

import typer

from acct import __version__
from acct.errors import EXIT_INTERRUPTED, AcctError

app = typer.Typer(
    name="acct",
    help="Keep several Claude accounts, see their quota, and run coding tools on the best one.",
    no_args_is_help=True,
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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
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
}
_MODULE_ORDER = ("login", "accounts", "targets", "exec", "shell")
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
    from acct.cli.render import mode

    text = f"acct: {e.message}"
    if e.hint:
        text += f"; {e.hint}"
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
    if mode.json:
        sys.stdout.write(json.dumps({"version": 1, "kind": "error", "error": e.to_dict()}, indent=2) + "\n")


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


def run(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    interrupts.install()
    try:
        load_for(args)
        app(args=args, prog_name="acct")
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
    return 0

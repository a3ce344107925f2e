"""Shared CLI pieces: the context, reusable option types, account-name completion."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from acct.services.context import Ctx

_ctx: Ctx | None = None


def ctx() -> Ctx:
    """The process's context (environment, paths, store, state)."""
    global _ctx
    if _ctx is None:
        _ctx = Ctx()
    return _ctx


def complete_account(incomplete: str) -> list[str]:
    """Account names for shell completion; never fails (completion must stay quiet)."""
    try:
        from acct.fast.names import account_names

        names = account_names(os.environ)  # the local store's, then the pool's last seen
    except Exception:  # noqa: BLE001  (completion must stay quiet, whatever the store holds)
        return []
    return [n for n in names if n.startswith(incomplete)]


def complete_target(incomplete: str) -> list[str]:
    from acct.services.targets import TARGET_NAMES

    return [n for n in TARGET_NAMES if n.startswith(incomplete)]


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


JsonOpt = Annotated[bool, typer.Option("--json", help="Print a versioned JSON document on stdout.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
AccountArg = Annotated[
    str | None,
    typer.Argument(
        metavar="NAME",
        help="Account name (a picker opens on a terminal when omitted).",
        autocompletion=complete_account,
    ),
]
RequiredAccountArg = Annotated[
    str, typer.Argument(metavar="NAME", help="Account name.", autocompletion=complete_account)
]
TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target", "-t", help="claude-code, opencode or pi.", autocompletion=complete_target
    ),
]

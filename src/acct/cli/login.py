"""``acct login`` and ``acct refresh``."""

from __future__ import annotations

import getpass
import os
import sys
import time
import webbrowser
from typing import Annotated

import typer

from acct.app import accounts as manage
from acct.base.errors import AcctError, HeldByTarget, Interrupted, UsageError
from acct.base.models import Account
from acct.cli import app, documents, render
from acct.cli.common import AccountArg, JsonOpt, ctx, is_interactive
from acct.services import oauth, providers
from acct.services.context import Ctx

TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=0.1,
        metavar="SECONDS",
        help="Seconds to wait for the browser or a pasted code.",
        show_default=True,
    ),
]


def _can_open_browser() -> bool:
    """False when the only browser would take over this terminal (lynx, w3m... without a display)."""
    if os.environ.get("BROWSER"):
        return True
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    foreground = isinstance(browser, webbrowser.GenericBrowser) and not isinstance(
        browser, webbrowser.BackgroundBrowser
    )
    return not foreground


def _show_prompt(prompt: oauth.LoginPrompt, open_browser: bool) -> None:
    render.line("Open this URL in a browser to log in:")
    render.line(prompt.url)
    if prompt.manual and prompt.paste_address:
        render.line(
            "Then paste the address your browser is sent to (it does not load: "
            f"{prompt.redirect_uri}?code=...) here and press Enter:"
        )
    elif prompt.manual:
        render.line("Then paste the code the page shows (CODE#STATE) here and press Enter:")
    elif prompt.paste_address:
        render.line("Or paste the address your browser is sent to here and press Enter.")
    else:
        render.line("Or paste CODE#STATE or the redirect URL here and press Enter.")
    if open_browser and _can_open_browser():
        try:
            webbrowser.open(prompt.url)
        except webbrowser.Error:
            return


def _report(result: manage.LoginResult, json_out: bool) -> None:
    for note in result.notes:
        render.warn(note)
    acc = result.account
    if json_out:
        render.emit_json(
            "login", {"account": documents.login_account(acc), "created": result.created}
        )
    elif acc.kind == "api_key":
        render.out.print(
            f"{'added' if result.created else 'updated'} {acc.name} (api key {acc.fingerprint})",
            markup=False,
        )
    else:
        render.out.print(f"logged in {login_summary(acc)}", markup=False)


def login_summary(acc: Account) -> str:
    """``work (work@example.com, max)``; the email once when it is the name."""
    plan = acc.plan or "plan unknown"
    if not acc.email or acc.email == acc.name:
        return f"{acc.name} ({plan})"
    return f"{acc.name} ({acc.email}, {plan})"


def _read_api_key() -> str:
    """The key from a hidden prompt on a terminal, else all of stdin."""
    if not sys.stdin.isatty():
        from acct.base.inputs import read_stream

        raw = read_stream(sys.stdin.fileno(), what="the API key on stdin")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError("the API key on stdin is not text; nothing was stored") from None
    try:
        return getpass.getpass("API key: ", stream=sys.stderr)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        raise Interrupted("login interrupted; nothing was stored") from None
    except EOFError:
        sys.stderr.write("\n")
        raise UsageError("no API key was typed (input ended); nothing was stored") from None


def _bad_paste() -> None:
    """A paste that does not answer this login; the login keeps waiting for the right one."""
    render.line("acct: that is not CODE#STATE from this login; paste it again")


ProviderOpt = Annotated[
    str | None,
    typer.Option(
        "--provider",
        metavar="PROVIDER",
        help="anthropic (Claude, the default) or chatgpt (ChatGPT, for the Codex CLI); "
        "a stored NAME keeps its own.",
    ),
]


def _provider_for(c: Ctx, name: str | None, given: str | None) -> providers.Provider:
    """The provider to log in with: the one given, else the stored account's, else Anthropic."""
    if given is not None:
        return providers.get(given)
    acc = c.store.read().find(name) if name else None
    return providers.of(acc) if acc is not None else providers.get("anthropic")


def _login_hint(c: Ctx, name: str | None) -> str | None:
    """Re-logging into a stored account pre-fills its email on the login page."""
    if not name:
        return None
    acc = c.store.read().find(name)
    return acc.email if acc is not None and acc.is_oauth else None


@app.command()
def login(
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="Name for the account (default: its email)."),
    ] = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Only print the URL.")] = False,
    manual: Annotated[
        bool,
        typer.Option(
            "--manual", help="Paste the code the page shows (for a browser on another machine)."
        ),
    ] = False,
    timeout: TimeoutOpt = oauth.LOGIN_TIMEOUT,
    api_key: Annotated[
        bool,
        typer.Option(
            "--api-key", help="Store an API key (read from a hidden prompt or stdin) instead."
        ),
    ] = False,
    provider: ProviderOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Log in to a Claude (or, with --provider chatgpt, a ChatGPT) account in the browser
    (OAuth) and store it.

    The browser's answer comes back to a loopback server on this machine, or is pasted here:
    the page's CODE#STATE, or the whole redirect URL. A paste that is not from this login is
    asked again until --timeout; nothing is stored unless the login completes.
    """
    render.mode.json = json_out
    c = ctx()
    chosen = _provider_for(c, name, provider)
    if api_key and chosen.name != "anthropic":
        raise UsageError("--api-key stores an Anthropic API key; it takes no --provider chatgpt")
    if api_key:
        if not name:
            raise UsageError(
                "--api-key needs a NAME for the account", hint="acct login NAME --api-key"
            )
        _report(manage.store_api_key(c, name, _read_api_key()), json_out)
        return
    try:
        answer = oauth.login_flow(
            c,
            name=name,
            manual=manual,
            timeout=timeout,
            paste_fd=sys.stdin.fileno() if sys.stdin is not None and not sys.stdin.closed else None,
            on_prompt=lambda prompt: _show_prompt(prompt, open_browser=not (no_browser or manual)),
            on_bad_paste=_bad_paste,
            login_hint=_login_hint(c, name),
            provider=chosen,
        )
    except KeyboardInterrupt:
        raise Interrupted("login interrupted; nothing was stored") from None
    _report(manage.store_login(c, answer, name=name, provider=chosen.name), json_out)


def _refresh_one(c: Ctx, acc: Account, started: float) -> dict[str, object]:
    seen = acc.tokens.lineage_fingerprint if acc.tokens else None
    result = providers.refresh_result(c, acc.id, force=True, seen=seen, since=started)
    fresh = result.account
    expires_at = fresh.tokens.expires_at if fresh.tokens else None
    obtained_at = fresh.tokens.obtained_at if fresh.tokens else None
    return {
        "name": fresh.name,
        "fingerprint": fresh.fingerprint,
        "expires_at": render.iso(expires_at),
        "expires_at_epoch": render.epoch(expires_at),
        "obtained_at": render.iso(obtained_at),
        "obtained_at_epoch": render.epoch(obtained_at),
        "refreshed_here": result.sent,
        "recovered": result.recovered,
        "already_fresh": result.already_fresh,
    }


def _print_refreshed(row: dict[str, object]) -> None:
    expires, obtained = row["expires_at_epoch"], row["obtained_at_epoch"]
    assert expires is None or isinstance(expires, int)
    assert obtained is None or isinstance(obtained, int)
    if row["refreshed_here"]:
        how = "refreshed"
    elif row["recovered"]:
        how = "stored the tokens an earlier refresh could not store"
    elif row["already_fresh"]:
        age = render.human_duration(max(0.0, time.time() - (obtained or time.time())))
        how = f"token is fresh (obtained {age} ago); not refreshed"
    else:
        how = "refreshed just now by another process"
    render.out.print(
        f"{row['name']}: {how}; expires in {render.until(expires)} ({render.local_time(expires)}), "
        f"token {row['fingerprint']}",
        markup=False,
    )


def _pick(c: Ctx) -> str:
    try:
        from acct.cli.picker import pick_account
    except ModuleNotFoundError as e:
        if e.name != "acct.cli.picker":
            raise
        raise UsageError(
            "name an account: acct refresh NAME", hint="`acct list` shows the names"
        ) from None
    return pick_account(c, "Refresh which account?", filter=lambda row: row.kind == "oauth")


@app.command()
def refresh(  # noqa: C901  (options, then one outcome per account)
    name: AccountArg = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Refresh every OAuth account acct holds.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Refresh an account's access token now (spends its refresh token).

    Several refreshes of one account at once send one request: the others find the new tokens.
    """
    started = time.time()
    render.mode.json = json_out
    c = ctx()
    accounts = c.store.read()
    if all_ and name:
        raise UsageError("give a NAME or --all, not both")
    if all_:
        targets = [a for a in accounts if a.is_oauth and a.enabled]
    else:
        if name is None:
            if not is_interactive():
                raise UsageError(
                    "name an account: acct refresh NAME", hint="`acct list` shows the names"
                )
            name = _pick(c)
        targets = [accounts.get(name)]
    rows: list[dict[str, object]] = []
    failure: AcctError | None = None
    for acc in targets:
        try:
            row = _refresh_one(c, acc, started)
        except HeldByTarget as e:
            if not all_:
                raise
            render.warn(f"skipped {acc.name}: {e.message}")
            continue
        except AcctError as e:
            if not all_:
                raise
            render.warn(f"{acc.name}: {e.message}" + (f"; {e.hint}" if e.hint else ""))
            failure = failure or e
            continue
        rows.append(row)
        if not json_out:
            _print_refreshed(row)
    if json_out:
        render.emit_json("refresh", {"accounts": rows})
    if failure is not None:
        raise typer.Exit(failure.exit_code)

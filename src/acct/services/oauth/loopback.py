"""The browser login: a loopback server for the redirect, pasted answers, and the wait for
whichever comes first. Nothing here prints: the authorize URL goes to a callback the CLI
supplies, and pasted answers come from a file descriptor the CLI passes in."""

from __future__ import annotations

import contextlib
import errno
import html
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from acct.base.endpoints import MANUAL_REDIRECT_URI, LoginPlan
from acct.base.errors import (
    AcctError,
    AuthError,
    UsageError,
)
from acct.base.fsio import ensure_dir
from acct.base.inputs import read_lines
from acct.services.context import Ctx
from acct.services.oauth.client import (
    TokenAnswer,
    authorize_url,
    exchange_code,
    new_pkce,
    new_state,
)
from acct.services.store import validate_name


class _Login(Protocol):
    """What a provider supplies for a browser login (see ``acct.services.providers``)."""

    login: LoginPlan

    def authorize_url(
        self, ctx: Ctx, redirect_uri: str, challenge: str, state: str, login_hint: str | None
    ) -> str: ...

    def exchange_code(
        self, ctx: Ctx, code: str, state: str, verifier: str, redirect_uri: str
    ) -> Any: ...


LOGIN_TIMEOUT = 300.0
_WAIT_SLICE = 0.25  # the login wait wakes this often, so Ctrl-C is seen at once
_HANDLER_TIMEOUT = 5.0  # a loopback connection that sends no request is dropped after this


@dataclass(frozen=True)
class CodeAnswer:
    code: str = field(repr=False)
    state: str | None  # None: the paste carried no state, so it cannot be checked


def parse_pasted(text: str) -> CodeAnswer | None:
    """``CODE#STATE`` or a full redirect URL (``...?code=..&state=..``); None when no code.

    A code without its state comes back with ``state=None``: the caller refuses it, since the
    state is what ties the answer to this login attempt.
    """
    text = text.strip()
    if not text:
        return None
    if "://" in text or text.startswith(("/", "?")):
        query = parse_qs(urlsplit(text).query)
        code = (query.get("code") or [""])[0]
        if not code:
            return None
        states = query.get("state")
        return CodeAnswer(code, states[0] if states else None)
    code, sep, state = text.partition("#")
    if not code.strip():
        return None
    return CodeAnswer(code.strip(), state.strip() if sep and state.strip() else None)


def printable(text: str, limit: int = 100) -> str:
    """``text`` without control characters (they could rewrite the terminal), cut to ``limit``."""
    clean = "".join(c for c in text if c.isprintable())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>acct</title></head>
<body style="font-family: sans-serif; margin: 3em"><p>{message}</p></body></html>
"""


class _CallbackServer(ThreadingHTTPServer):
    """The loopback redirect target; each answer goes into the flow's event queue.

    One thread per connection, none waited for at the end: browsers open idle speculative
    connections to localhost, and one of them must neither block the real callback nor keep
    the login from ending (on time-out or Ctrl-C).
    """

    daemon_threads = True
    block_on_close = False

    def __init__(
        self, events: queue.Queue[tuple[str, Any]], state: str, plan: LoginPlan, port: int
    ) -> None:
        self.events = events
        self.expected_state = state
        self.plan = plan
        super().__init__(("127.0.0.1", port), _CallbackHandler)

    @property
    def redirect_uri(self) -> str:
        return f"http://{self.plan.host}:{self.server_address[1]}{self.plan.callback_path}"


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer
    timeout = _HANDLER_TIMEOUT  # socket timeout: a silent connection is dropped

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the default writes every request to stderr."""

    def _page(self, status: int, message: str) -> None:
        body = _PAGE.format(message=html.escape(message)).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != self.server.plan.callback_path:
            self._page(404, "acct: not found")
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if query.get("state") != self.server.expected_state:
            # Not an answer to this login (another attempt, or some other local program):
            # ignore it and keep waiting for the real one.
            self._page(
                400,
                "acct: this answer belongs to another login attempt and was ignored. "
                "Nothing was stored.",
            )
            return
        if "error" in query:
            error = printable(query["error"])
            self._page(400, f"acct: login failed ({error}). You can close this tab.")
            self.server.events.put(("denied", error))
            return
        if not query.get("code"):
            self._page(400, "acct: this address expects a login answer (no code).")
            return
        self._page(200, "acct: login complete, you can close this tab")
        self.server.events.put(("code", CodeAnswer(query["code"], query["state"])))


@contextlib.contextmanager
def _callback_server(
    events: queue.Queue[tuple[str, Any]], state: str, plan: LoginPlan, port: int
) -> Iterator[_CallbackServer]:
    try:
        server = _CallbackServer(events, state, plan, port)
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise UsageError(
                f"cannot listen on 127.0.0.1:{port} for the login ({e.strerror})"
            ) from None
        raise UsageError(
            f"port {port} on 127.0.0.1 is taken (another login waiting there, such as "
            "`codex login`?); the login needs it for the browser's answer; nothing was stored",
            hint="finish or stop that login, then try again (or use --manual and paste the "
            "address the browser lands on)",
        ) from None
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _read_lines(fd: int, events: queue.Queue[tuple[str, Any]]) -> None:
    """Feed each line read from ``fd`` into ``events`` (bounded: see ``inputs.read_lines``)."""
    for line in read_lines(fd):
        if line.strip():
            events.put(("paste", line.decode("utf-8", "replace")))
    events.put(("eof", None))


@dataclass(frozen=True)
class LoginPrompt:
    """What the user must be shown: the URL to open, and whether a paste is the only way back."""

    url: str
    redirect_uri: str
    manual: bool
    # A paste-only login of a provider without a page that shows CODE#STATE: the user pastes
    # the address the browser was sent to (it does not load: nothing listens there).
    paste_address: bool = False


def _wait_for_code(
    events: queue.Queue[tuple[str, Any]],
    state: str,
    *,
    timeout: float,
    manual: bool,
    on_bad_paste: Callable[[], None],
) -> CodeAnswer:
    """The first answer to this login: a callback with our state, or a paste of CODE#STATE.

    A paste that is not this login's CODE#STATE (no state, another attempt's state, not a code
    at all) is a slip of the clipboard: ``on_bad_paste`` is told and the wait goes on.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AcctError(
                f"no login answer within {timeout:g}s; nothing was stored",
                hint="run `acct login` again (with --manual, paste the code the page shows)",
            )
        try:
            kind, value = events.get(timeout=min(left, _WAIT_SLICE))
        except queue.Empty:
            continue
        if kind == "eof":
            if manual:
                raise UsageError(
                    "no code was pasted (input ended); nothing was stored",
                    hint="run `acct login --manual` again",
                )
            continue
        if kind == "denied":
            raise AuthError(f"the login was not approved ({value}); nothing was stored")
        if kind == "paste":
            pasted = parse_pasted(value)
            if pasted is None or pasted.state != state:
                on_bad_paste()
                continue
            return pasted
        assert isinstance(value, CodeAnswer)
        return value  # a callback's state was checked by the callback server


def login_flow(
    ctx: Ctx,
    *,
    name: str | None = None,
    manual: bool = False,
    timeout: float = LOGIN_TIMEOUT,
    paste_fd: int | None = None,
    on_prompt: Callable[[LoginPrompt], None] = lambda prompt: None,
    on_bad_paste: Callable[[], None] = lambda: None,
    login_hint: str | None = None,
    provider: _Login | None = None,
) -> Any:
    """Log in through the browser: loopback callback or a pasted answer, whichever comes first.

    ``manual`` uses the manual redirect page and waits for a paste only. A paste that is not this
    login's CODE#STATE calls ``on_bad_paste`` and the wait goes on until ``timeout``; a right one
    whose exchange fails ends the login. ``provider`` supplies the URL, the exchange and the
    loopback port (default: Anthropic's). Returns the token answer; storing it is the caller's
    (:func:`acct.app.accounts.store_login`), so nothing is stored unless the whole flow succeeds.
    """
    if name is not None:
        validate_name(name)
    # A store acct cannot read or write would refuse the login at the end: say so before the
    # user goes through the browser.
    ctx.store.read()
    ensure_dir(ctx.paths.accounts_file.parent)
    pkce, state = new_pkce(), new_state()
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    if paste_fd is not None:
        threading.Thread(target=_read_lines, args=(paste_fd, events), daemon=True).start()
    elif manual:
        raise UsageError("--manual needs an input to paste the code into")
    p = provider or _ANTHROPIC
    plan = p.login
    port = plan.port_in(ctx.env)
    with contextlib.ExitStack() as stack:
        if manual:
            redirect_uri = plan.manual_redirect or (
                f"http://{plan.host}:{port}{plan.callback_path}"
            )
        else:
            server = stack.enter_context(_callback_server(events, state, plan, port))
            redirect_uri = server.redirect_uri
        url = p.authorize_url(ctx, redirect_uri, pkce.challenge, state, login_hint)
        on_prompt(
            LoginPrompt(url, redirect_uri, manual, paste_address=plan.manual_redirect is None)
        )
        answer = _wait_for_code(
            events, state, timeout=timeout, manual=manual, on_bad_paste=on_bad_paste
        )
    return p.exchange_code(ctx, answer.code, state, pkce.verifier, redirect_uri)


class _AnthropicLogin:
    """Anthropic's login (the default): any free loopback port, or its code page for a paste."""

    login = LoginPlan(port=0, callback_path="/callback", manual_redirect=MANUAL_REDIRECT_URI)

    def authorize_url(
        self, ctx: Ctx, redirect_uri: str, challenge: str, state: str, login_hint: str | None
    ) -> str:
        return authorize_url(ctx.endpoints, redirect_uri, challenge, state, login_hint)

    def exchange_code(
        self, ctx: Ctx, code: str, state: str, verifier: str, redirect_uri: str
    ) -> TokenAnswer:
        return exchange_code(ctx, code, state, verifier, redirect_uri)


_ANTHROPIC = _AnthropicLogin()

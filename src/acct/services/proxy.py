"""A loopback proxy in front of the Messages API that reads every answer's rate-limit headers.

Every ``/v1/messages`` answer carries the account's live usage in ``anthropic-ratelimit-unified-*``
headers. ``acct exec`` points Claude Code at this proxy (``ANTHROPIC_BASE_URL``); the
proxy forwards each request unchanged to the real upstream (the user's own
``ANTHROPIC_BASE_URL`` when one was set, so proxies chain), streams the answer back as it arrives
and reports what the headers say. That gives acct live usage without polling the throttled usage
endpoint, and tells it that a request was refused for quota even when the tool's words go to a
terminal acct cannot read.

The proxy sees the tool's credentials in transit and keeps none: an observation names the
credential by fingerprint, nothing is logged, and errors name exception types, never values.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from acct.base.errors import AcctError
from acct.base.inputs import read_json_object
from acct.base.models import Window, fingerprint
from acct.base.timefmt import epoch_seconds
from acct.domain.classify import WINDOW_OF_CLAIM

if TYPE_CHECKING:
    import ssl

    import httpx

    from acct.services.context import Ctx
    from acct.base.models import Account

FIRST_PARTY_HOST = "api.anthropic.com"
DEFAULT_UPSTREAM = f"https://{FIRST_PARTY_HOST}"
# Claude Code's own switch (read in 2.1.x): treat ANTHROPIC_BASE_URL as Anthropic's API.
ASSUME_FIRST_PARTY = "_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL"
_UNIFIED = "anthropic-ratelimit-unified-"
# Headers that describe one connection, not the message (RFC 9110 §7.6.1): never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
from acct.services import prompt_state
# A Messages stream may pause for minutes (long thinking); the tool has its own timeout.
_READ_TIMEOUT = 900.0
_CONNECT_TIMEOUT = 15.0
_POLL_INTERVAL = 0.5
_WARM_AFTER = 0.3  # the tools take longer than this to send their first request
PROMPT_EVERY = 10.0  # seconds between prompt-file rewrites from live usage
SETTLE_TIMEOUT = 2.0
STOP_TIMEOUT = 5.0


# --- what the headers say ---------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaSignal:
    """The server refused a request because the plan's window is spent."""

    window: str | None  # "5-hour", "7-day", "Opus weekly"...; None for a claim acct does not know
    reset_at: float | None  # epoch seconds
    claim: str | None


@dataclass(frozen=True)
class Observation:
    """The ``anthropic-ratelimit-unified-*`` headers of one answer. Utilization in percent."""

    at: float
    http_status: int
    status: str | None  # allowed | allowed_warning | rejected
    reset_at: float | None
    five_hour: float | None
    seven_day: float | None
    five_hour_reset: float | None
    seven_day_reset: float | None
    claim: str | None
    overage_status: str | None
    overage_in_use: bool
    credential: str  # fingerprint of the credential the request carried ("-" for none)

    @property
    def quota(self) -> QuotaSignal | None:
        """A refusal for quota; a plan paying for extra usage (overage in use) is not refused."""
        if self.status != "rejected" or self.overage_in_use:
            return None
        return QuotaSignal(WINDOW_OF_CLAIM.get(self.claim or ""), self.reset_at, self.claim)

    def windows(self) -> tuple[Window | None, Window | None]:
        """The 5-hour and 7-day windows; a window's reset defaults to the unified one it claims."""

        def window(pct: float | None, reset: float | None, claim: str) -> Window | None:
            if pct is None:
                return None
            if reset is None and self.claim == claim:
                reset = self.reset_at
            return Window(pct, reset)

        return (
            window(self.five_hour, self.five_hour_reset, "five_hour"),
            window(self.seven_day, self.seven_day_reset, "seven_day"),
        )


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        n = float(text.strip())
    except ValueError:
        return None
    return n if math.isfinite(n) else None


def _epoch(text: str | None) -> float | None:
    n = _number(text)
    if n is None or n <= 0:
        return None
    return epoch_seconds(n)


def _percent(text: str | None) -> float | None:
    n = _number(text)
    return None if n is None or n < 0 else round(n * 100.0, 4)


def credential_of(headers: Mapping[str, str]) -> str:
    """The fingerprint of the credential a request carries (bearer token or API key)."""
    h = {k.lower(): v for k, v in headers.items()}
    auth = h.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return fingerprint(auth[7:].strip())
    return fingerprint(h.get("x-api-key"))


def parse_headers(
    headers: Mapping[str, str], *, http_status: int, credential: str, now: float
) -> Observation | None:
    """An observation from an answer's headers; None when it has no unified headers (a plain
    throttle, an API-key answer, a non-Messages path)."""
    h = {k.lower(): v for k, v in headers.items() if k.lower().startswith(_UNIFIED)}
    if not h:
        return None

    def get(name: str) -> str | None:
        value = h.get(_UNIFIED + name)
        return value.strip() if value is not None and value.strip() else None

    return Observation(
        at=now,
        http_status=http_status,
        status=(get("status") or "").lower() or None,
        reset_at=_epoch(get("reset")),
        five_hour=_percent(get("5h-utilization")),
        seven_day=_percent(get("7d-utilization")),
        five_hour_reset=_epoch(get("5h-reset")),
        seven_day_reset=_epoch(get("7d-reset")),
        claim=get("representative-claim"),
        overage_status=get("overage-status"),
        overage_in_use=(get("overage-in-use") or "").lower() == "true",
        credential=credential,
    )


def upstream_for(env: Mapping[str, str]) -> str:
    """Where the tool would have sent its requests: the user's own base URL, or Anthropic's."""
    return (env.get("ANTHROPIC_BASE_URL") or "").strip().rstrip("/") or DEFAULT_UPSTREAM


# --- where Claude Code sends its requests -----------------------------------------------------

# Claude Code applies the ``env`` block of its settings files over the process environment. These
# variables there decide where its API requests go or how their connection is made: acct cannot
# be sure of the route then.
ROUTE_VARIABLES = frozenset(
    {
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_BEDROCK_BASE_URL",
        "ANTHROPIC_VERTEX_BASE_URL",
        "ANTHROPIC_FOUNDRY_BASE_URL",
        "CLAUDE_CODE_USE_BEDROCK",
        "CLAUDE_CODE_USE_VERTEX",
        "CLAUDE_CODE_USE_FOUNDRY",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "NODE_EXTRA_CA_CERTS",
        "NODE_TLS_REJECT_UNAUTHORIZED",
        "CLAUDE_CODE_CERT_STORE",
        "CLAUDE_CODE_CLIENT_CERT",
        "CLAUDE_CODE_CLIENT_KEY",
        "CLAUDE_CODE_CLIENT_KEY_PASSPHRASE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
# Providers whose requests do not follow ANTHROPIC_BASE_URL at all.
OTHER_PROVIDERS = {
    "CLAUDE_CODE_USE_BEDROCK": "Amazon Bedrock",
    "CLAUDE_CODE_USE_VERTEX": "Google Vertex AI",
    "CLAUDE_CODE_USE_FOUNDRY": "Microsoft Foundry",
}
MANAGED_SETTINGS = {
    "darwin": Path("/Library/Application Support/ClaudeCode/managed-settings.json"),
    "win32": Path("C:/Program Files/ClaudeCode/managed-settings.json"),
}.get(sys.platform, Path("/etc/claude-code/managed-settings.json"))


@dataclass(frozen=True)
class Route:
    """How Claude Code will send its API requests, as far as its environment and settings tell."""

    env: dict[str, str]  # the process environment with the settings' ``env`` blocks applied
    set_by_settings: tuple[tuple[Path, str], ...] = ()  # (settings file, variable) on the route
    provider: str | None = None  # another provider than Anthropic's API (Bedrock, Vertex...)
    unreadable: Path | None = None  # a settings file acct could not read: the route is unknown

    @property
    def base_url_from_settings(self) -> bool:
        return any(var == "ANTHROPIC_BASE_URL" for _, var in self.set_by_settings)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def settings_files(
    env: Mapping[str, str], cwd: Path, managed: Path = MANAGED_SETTINGS
) -> list[Path]:
    """Claude Code's settings files, lowest precedence first: user, project, local, managed."""
    config = env.get("CLAUDE_CONFIG_DIR") or os.path.join(env.get("HOME") or "~", ".claude")
    user = Path(config).expanduser() / "settings.json"
    project = cwd / ".claude"
    return [user, project / "settings.json", project / "settings.local.json", managed]


def _settings_env(path: Path) -> dict[str, str] | None:
    """The ``env`` block of one settings file ({} when it has none or does not exist); None
    when it cannot be read as JSON."""
    try:
        doc = read_json_object(path, what="Claude Code settings")
    except AcctError:  # unparseable, not a regular file, unreadable
        return None
    if doc is None:
        return {}
    block = doc.get("env", {})
    if not isinstance(block, dict):
        return None
    return {str(k): str(v) for k, v in block.items() if v is not None}


def claude_route(
    env: Mapping[str, str], cwd: Path | None = None, *, managed: Path = MANAGED_SETTINGS
) -> Route:
    """Claude Code's route when started with environment ``env`` in ``cwd`` (this process's)."""
    if cwd is None:
        try:
            cwd = Path.cwd()
        except OSError:
            cwd = Path(".")
    merged = dict(env)
    touched: list[tuple[Path, str]] = []
    unreadable: Path | None = None
    for path in settings_files(env, cwd, managed):
        block = _settings_env(path)
        if block is None:
            unreadable = unreadable or path
            continue
        merged.update(block)
        touched += [(path, k) for k in block if k in ROUTE_VARIABLES]
    provider = next((n for var, n in OTHER_PROVIDERS.items() if _truthy(merged.get(var))), None)
    return Route(merged, tuple(touched), provider, unreadable)


# --- the upstream connection, made as Claude Code makes it ------------------------------------


class Unusable(Exception):
    """The upstream connection cannot be set up; the message is safe to show (no values)."""


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of ``names`` that is set (lowercase first, as Claude Code reads them)."""
    for name in names:
        if env.get(name) is not None:
            return name, env[name]
    return None


def no_proxy_hosts(env: Mapping[str, str]) -> list[str]:
    """The union of ``no_proxy`` and ``NO_PROXY`` (comma or space separated), in order."""
    hosts: list[str] = []
    for name in ("no_proxy", "NO_PROXY"):
        for host in re.split(r"[,\s]+", env.get(name) or ""):
            if host and host not in hosts:
                hosts.append(host)
    return hosts


def _bypassed(host: str, port: int, entries: list[str]) -> bool:
    host = host.lower().strip("[]")
    for entry in entries:
        if entry == "*":
            return True
        name, want = entry.lower(), ""
        if re.search(r":\d+$", name):
            name, _, want = name.rpartition(":")
        if want and int(want) != port:
            continue
        name = name.lstrip("*").lstrip(".").strip("[]")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def proxy_for(url: str, env: Mapping[str, str]) -> str | None:
    """The HTTP proxy Claude Code would use for ``url``: ``https_proxy``/``HTTPS_PROXY`` (then
    the HTTP ones) for https, ``http_proxy``/``HTTP_PROXY`` for http, none for a host in
    ``no_proxy``/``NO_PROXY``. ``ALL_PROXY`` is not read (Node does not)."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    names = ("http_proxy", "HTTP_PROXY")
    found = _first(env, *(("https_proxy", "HTTPS_PROXY", *names) if https else names))
    if found is None or not found[1].strip():
        return None
    name, proxy = found[0], found[1].strip()
    if _bypassed(parts.hostname or "", parts.port or (443 if https else 80), no_proxy_hosts(env)):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    scheme = urlsplit(proxy).scheme.lower()
    if scheme not in ("http", "https"):
        raise Unusable(f"{name} names a {scheme} proxy; only HTTP(S) proxies are supported")
    return proxy


def tls_context(env: Mapping[str, str]) -> ssl.SSLContext:
    """The trust Claude Code gives its connections: its bundled roots (certifi here) and the
    system's store (as ``CLAUDE_CODE_CERT_STORE`` selects), ``SSL_CERT_FILE``/``SSL_CERT_DIR``,
    ``NODE_EXTRA_CA_CERTS``; the client certificate of ``CLAUDE_CODE_CLIENT_CERT``/``_KEY``.
    An extra CA file that cannot be read is skipped, as Node skips it."""
    import ssl

    import certifi

    stores = {s.strip().lower() for s in (env.get("CLAUDE_CODE_CERT_STORE") or "").split(",")}
    stores = stores - {""} or {"bundled", "system"}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if "system" in stores:
        context.load_default_certs()
    extras = [("cafile", env.get("SSL_CERT_FILE")), ("capath", env.get("SSL_CERT_DIR"))]
    extras.append(("cafile", env.get("NODE_EXTRA_CA_CERTS")))
    if "bundled" in stores:
        extras.append(("cafile", certifi.where()))
    for kind, where in extras:
        if where:
            with contextlib.suppress(OSError, ssl.SSLError, ValueError):
                context.load_verify_locations(**{kind: where})
    if (env.get("NODE_TLS_REJECT_UNAUTHORIZED") or "").strip() == "0":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = env.get("CLAUDE_CODE_CLIENT_CERT")
    if cert:
        try:
            context.load_cert_chain(
                cert,
                env.get("CLAUDE_CODE_CLIENT_KEY") or None,
                env.get("CLAUDE_CODE_CLIENT_KEY_PASSPHRASE") or None,
            )
        except (OSError, ssl.SSLError, ValueError) as e:
            raise Unusable(
                f"cannot load the client certificate of CLAUDE_CODE_CLIENT_CERT ({type(e).__name__})"
            ) from None
    return context


def reason(error: BaseException) -> str:
    """Why a request could not be forwarded, in words safe to show: the TLS cause when there is
    one, otherwise the exception's type (its text may hold a URL with a password)."""
    import ssl

    if isinstance(error, Unusable):
        return str(error)
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            return f"TLS error: {seen.reason or type(seen).__name__}"
        seen = seen.__cause__ or seen.__context__
    return type(error).__name__


# --- the proxy --------------------------------------------------------------------------------

Callback = Callable[[Observation], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        super().__init__((proxy.host, 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Silent: a traceback on the tool's terminal would help nobody."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each streamed chunk leaves at once

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing is logged: requests carry credentials."""

    def do_GET(self) -> None:
        self._forward()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_exactly(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) != size:
            raise ValueError("the request body ended early")
        return data

    def _read_line(self) -> bytes:
        data = self.rfile.readline(65537)
        if not data.endswith(b"\n"):
            raise ValueError("the request body ended early")
        return data

    def _read_body(self) -> bytes | None:
        """The request's body; None when it has none (no length, not chunked). A body that
        ends before its length or its last chunk raises ``ValueError``: never forwarded."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self._read_line().split(b";")[0].strip(), 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                if size == 0:
                    while self._read_line() not in (b"\r\n", b"\n"):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self._read_exactly(size))
                if self._read_line() not in (b"\r\n", b"\n"):
                    raise ValueError("a chunk is longer than its size")
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        size = int(length)
        if size < 0:
            raise ValueError("negative Content-Length")
        return self._read_exactly(size)

    def _request_headers(self) -> list[tuple[str, str]]:
        named = {t.strip().lower() for t in (self.headers.get("Connection") or "").split(",") if t}
        # Expect: this server already answered ``100 Continue`` and holds the whole body.
        drop = HOP_BY_HOP | named | {"host", "content-length", "expect"}
        return [(k, v) for k, v in self.headers.items() if k.lower() not in drop]

    def _forward(self) -> None:
        import httpx

        proxy = self.server.proxy
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._fail("the request was cut off or malformed", status=400)
            return
        headers = self._request_headers()
        try:
            request = httpx.Request(
                self.command, proxy.upstream + self.path, headers=headers, content=body
            )
            response = proxy.client.send(request, stream=True)
        except Exception as e:  # noqa: BLE001  (every failure gets an answer, never a dropped line)
            # The host only: a base URL may carry a password.
            self._fail(f"cannot reach {urlsplit(proxy.upstream).hostname} ({reason(e)})")
            return
        try:
            proxy.observe(response, credential_of(dict(headers)))
            self._relay(response)
        finally:
            response.close()

    def _relay(self, response: httpx.Response) -> None:
        """Send the answer back as it arrives: headers first, then each chunk as read."""
        import httpx

        status = response.status_code
        bodiless = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        sized = "content-length" in response.headers
        self.send_response_only(status, response.reason_phrase)
        for k, v in response.headers.multi_items():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        chunked = not bodiless and not sized
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        try:
            self.end_headers()
            if bodiless:
                return
            for data in response.iter_raw():
                if data:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (httpx.HTTPError, OSError):
            # The upstream broke off or the tool went away: end this connection as it ended.
            self.close_connection = True

    def _fail(self, message: str, *, status: int = 502) -> None:
        kind = "invalid_request_error" if status == 400 else "api_error"
        error = {"type": kind, "message": f"acct proxy: {message}"}
        body = json.dumps({"type": "error", "error": error}).encode()
        with contextlib.suppress(OSError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


class Proxy:
    """A forwarding HTTP server on ``host`` (a free port); ``on_observation`` gets the unified
    headers of every answer, on the request's thread before its body streams: keep it quick.
    The upstream connection follows the proxy and certificate variables of ``env`` (the
    process environment by default) the way Claude Code reads them.

    Starting costs a bound socket and a thread. The HTTP client (httpx and a TLS context, about
    0.1 s of work) is built a moment later in the background, while the tool starts up, or by
    the first request if that comes sooner; a run that never reaches the API never pays for it.
    """

    def __init__(
        self,
        upstream: str,
        on_observation: Callback,
        *,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.on_observation = on_observation
        self.env = dict(os.environ if env is None else env)
        self.host = host
        self._server: _Server | None = None
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._warm: threading.Timer | None = None

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                if self._stopped:
                    raise RuntimeError("the proxy is stopped")
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> httpx.Client:
        """A client that connects as Claude Code would: its proxy rules and its trust, read from
        ``env`` (never httpx's own reading of the environment)."""
        import httpx

        return httpx.Client(
            timeout=httpx.Timeout(_READ_TIMEOUT, connect=_CONNECT_TIMEOUT),
            follow_redirects=False,
            trust_env=False,
            verify=tls_context(self.env),
            proxy=proxy_for(self.upstream, self.env),
        )

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> Self:
        """Listen on a free port; raises ``ValueError`` for an upstream that is not an HTTP(S)
        URL and ``OSError`` when no port can be had."""
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("ANTHROPIC_BASE_URL is not an http(s) URL")
        self._server = _Server(self)
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name="acct-proxy",
            daemon=True,
        ).start()
        self._warm = threading.Timer(_WARM_AFTER, self._prepare)
        self._warm.daemon = True
        self._warm.start()
        return self

    def _prepare(self) -> None:
        with contextlib.suppress(Exception):
            _ = self.client

    def stop(self) -> None:
        if self._warm is not None:
            self._warm.cancel()
        server, self._server = self._server, None
        if server is not None:
            # shutdown() waits for the serving loop to look at its flag: a connection wakes it
            # at once instead of at the next poll.
            stopper = threading.Thread(target=server.shutdown, daemon=True)
            stopper.start()
            with contextlib.suppress(OSError):
                socket.create_connection((self.host, server.server_address[1]), timeout=1).close()
            stopper.join()
            server.server_close()
        with self._lock:
            self._stopped = True
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def observe(self, response: httpx.Response, credential: str) -> None:
        obs = parse_headers(
            response.headers,
            http_status=response.status_code,
            credential=credential,
            now=time.time(),
        )
        if obs is not None:
            with contextlib.suppress(Exception):
                self.on_observation(obs)


# --- an exec session's view -------------------------------------------------------------------


class Watch:
    """The proxy for one ``acct exec`` session, and what it learns.

    Observations are queued by the proxy and written by one daemon thread with a context of its
    own (an SQLite connection belongs to its thread): each becomes the usage of the account whose
    credential it carried, and the prompt files follow at most every ``PROMPT_EVERY`` seconds. For
    the account of the current run (``begin``) it keeps the last word on quota: a refusal, or
    nothing once a later answer was allowed.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        route: Route | None = None,
        prompt_every: float = PROMPT_EVERY,
    ) -> None:
        self.env = dict(env)
        self.route = route if route is not None else Route(dict(env))
        self.prompt_every = prompt_every
        self.proxy = Proxy(upstream_for(self.route.env), self._submit, env=self.route.env)
        self._queue: queue.SimpleQueue[Observation | None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._submitted = 0
        self._done = 0
        self._account_id: str | None = None
        self._quota: QuotaSignal | None = None
        self._owners: dict[str, str | None] = {}  # credential fingerprint → account id
        self._prompt_at = 0.0
        self._prompt_due = False
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.proxy.url

    def child_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The variables that point a tool run with ``env`` at the proxy.

        Claude Code withholds first-party features (1M context, tool search, some betas) when
        ``ANTHROPIC_BASE_URL`` names another host than api.anthropic.com; when the proxy's
        upstream is that host, and no settings file has a say in the route, its own switch says
        so. Behind the user's HTTP proxy, loopback joins the union of ``NO_PROXY`` and
        ``no_proxy``, set under both names (readers differ in which one they read first), so the
        tool reaches 127.0.0.1 directly.
        """
        out = {"ANTHROPIC_BASE_URL": self.url}
        first_party = urlsplit(self.proxy.upstream).hostname == FIRST_PARTY_HOST
        if first_party and not self.route.set_by_settings:
            out[ASSUME_FIRST_PARTY] = "1"
        if any(env.get(k) for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")):
            hosts = no_proxy_hosts(env)
            joined = ",".join(hosts if "127.0.0.1" in hosts else [*hosts, "127.0.0.1"])
            if env.get("NO_PROXY") != joined or env.get("no_proxy") != joined:
                out["NO_PROXY"] = out["no_proxy"] = joined
        return out

    def start(self) -> Self:
        self.proxy.start()
        self._thread = threading.Thread(target=self._write_loop, name="acct-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the proxy, then let the writer write what it has and end (bounded by
        ``timeout``): a write cut off by the process's exit would leave a temporary file."""
        self.proxy.stop()
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def begin(self, account: Account) -> None:
        """A run on ``account`` starts: what earlier runs saw no longer decides anything."""
        self.settle()
        with self._cond:
            self._account_id = account.id
            self._quota = None

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until what the proxy has seen so far is written (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            while self._done < target and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)

    def quota(self, account_id: str) -> QuotaSignal | None:
        """The refusal that ended ``account_id``'s run, when the last answer it got was one."""
        with self._cond:
            return self._quota if self._account_id == account_id else None

    # --- the writer thread -------------------------------------------------------------------

    def _submit(self, obs: Observation) -> None:
        with self._cond:
            self._submitted += 1
        self._queue.put(obs)

    def _write_loop(self) -> None:
        from acct.services.context import Ctx

        ctx = Ctx(env=self.env)
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            seen = [o for o in batch if o is not None]
            try:
                # A failed cache write must never stop the session (nor reach the terminal).
                with contextlib.suppress(Exception):
                    self._write(ctx, seen)
            finally:
                with contextlib.suppress(Exception):
                    ctx.state.close()  # no connection held open while the tool runs
                with self._cond:
                    self._done += len(seen)
                    self._cond.notify_all()
            if len(seen) < len(batch):
                return

    def _write(self, ctx: Ctx, seen: list[Observation]) -> None:
        from acct.services import usage
        latest: dict[str, Observation] = {}
        for obs in seen:
            owner = self._owner(ctx, obs.credential)
            if owner is None:
                continue
            latest[owner] = obs
            if owner == self._account_id and obs.status is not None:
                with self._cond:
                    self._quota = obs.quota
        for owner, obs in latest.items():
            five_hour, seven_day = obs.windows()
            if five_hour is not None or seven_day is not None:
                usage.record_observed(ctx, owner, five_hour, seven_day, now=obs.at)
                self._prompt_due = True
        self._update_prompt(ctx, force=not seen)

    def _owner(self, ctx: Ctx, credential: str) -> str | None:
        """The account a credential belongs to: the one whose token (acct's copy or its tool
        file's) it is; otherwise the current run's, since the tool refreshes the token acct lent
        it into one acct has not seen yet."""
        if credential == "-":
            return None
        if credential not in self._owners:
            from acct.services.custody import access_token_for

            for acc in ctx.store.read():
                live = fingerprint(access_token_for(ctx, acc)) if acc.is_oauth else "-"
                if credential in (acc.fingerprint, live):
                    self._owners[credential] = acc.id
                    break
        return self._owners.get(credential, self._account_id)

    def _update_prompt(self, ctx: Ctx, *, force: bool) -> None:
        now = time.monotonic()
        if not self._prompt_due or (not force and now - self._prompt_at < self.prompt_every):
            return
        self._prompt_at, self._prompt_due = now, False
        prompt_state.refresh_quietly(ctx)


def start_watch(env: Mapping[str, str]) -> Watch:
    """A started :class:`Watch`; raises ``OSError`` when no loopback port can be had."""
    return Watch(env).start()

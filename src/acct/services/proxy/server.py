"""The forwarding HTTP server on loopback: relays each request to the upstream, streams back."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol, Self
from urllib.parse import urlsplit

from acct.services.proxy.headers import Observation, credential_of, parse_headers
from acct.services.proxy.upstream import proxy_for, reason, tls_context

if TYPE_CHECKING:
    import httpx

    from acct.domain.answers import AnswerUsage

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
# A Messages stream may pause for minutes (long thinking); the tool has its own timeout.
_READ_TIMEOUT = 900.0
_CONNECT_TIMEOUT = 15.0
_POLL_INTERVAL = 0.5
_WARM_AFTER = 0.3  # the tools take longer than this to send their first request
# A kept-alive client connection that sends nothing for this long is closed (its thread ends).
IDLE_TIMEOUT = 300.0
# The Messages API refuses requests over 32 MB; a larger body is never read into memory.
MAX_BODY = 64 * 1024 * 1024
BACKLOG = 1024  # the kernel caps it at net.core.somaxconn
# A request target is a path (origin-form, RFC 9112 §3.2.1), printable ASCII only.
_ORIGIN_FORM = re.compile(rb"/[\x21-\x7e]*")
ERROR_TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    431: "request_too_large",
}

Callback = Callable[[Observation], None]


def error_body(status: int, message: str) -> bytes:
    """An error in the Messages API's own shape, which the tools know how to show."""
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    error = {"type": kind, "message": f"acct proxy: {message}"}
    return json.dumps({"type": "error", "error": error}).encode()


class BodyTooLarge(ValueError):
    """A request body over :data:`MAX_BODY`."""


@dataclass
class Outgoing:
    """A request as it goes upstream: raw headers (no Host, no framing) and the whole body."""

    headers: list[tuple[bytes, bytes]]
    body: bytes | None
    # The account the request is sent for, when it carries the session's credential (acct's
    # broker then decides its token); None: someone else's request, passed on unchanged.
    account_id: str | None = None
    original: Outgoing | None = None  # the request as the tool sent it
    tried: frozenset[str] = frozenset()  # accounts that refused this request already

    @property
    def credential(self) -> str:
        return credential_of({k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers})


class Broker(Protocol):
    """Decides which credential a request carries, and whether a refusal is sent again."""

    def outgoing(self, request: Outgoing) -> Outgoing: ...

    def after(self, obs: Observation | None, sent: Outgoing) -> Outgoing | None: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = BACKLOG

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        super().__init__((proxy.host, 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Silent: a traceback on the tool's terminal would help nobody."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each streamed chunk leaves at once

    def setup(self) -> None:
        super().setup()
        # Idle kept-alive connections end (a thread each otherwise, forever).
        self.connection.settimeout(self.server.proxy.idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing is logged: requests carry credentials."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The HTTP server's own refusals (a malformed request line, headers too long...) in the
        Messages API's JSON error shape, never an HTML page."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # never answered without a status line
        self._answer(code, message or self.responses.get(code, ("error",))[0])

    def do_GET(self) -> None:
        self._forward()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_CONNECT = do_GET

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

    def _read_chunked(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self._read_line().split(b";")[0].strip(), 16)
            if size < 0:
                raise ValueError("negative chunk size")
            if size == 0:
                while self._read_line() not in (b"\r\n", b"\n"):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > limit:
                raise BodyTooLarge("the request body is too large")
            chunks.append(self._read_exactly(size))
            if self._read_line() not in (b"\r\n", b"\n"):
                raise ValueError("a chunk is longer than its size")

    def _read_body(self) -> bytes | None:
        """The request's body; None when it has none (no length, not chunked). A body that
        ends before its length or its last chunk raises ``ValueError``: never forwarded; one
        over the limit raises :class:`BodyTooLarge` before it is read."""
        limit = self.server.proxy.max_body
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        if not length.strip().isdigit():
            raise ValueError("a malformed Content-Length")
        size = int(length)
        if size > limit:
            raise BodyTooLarge("the request body is too large")
        return self._read_exactly(size)

    def _request_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers to forward, byte for byte (http.server decoded them as Latin-1)."""
        from acct.domain.answers import readable_accept_encoding

        named = {t.strip().lower() for t in (self.headers.get("Connection") or "").split(",") if t}
        # Expect: this server already answered ``100 Continue`` and holds the whole body.
        drop = HOP_BY_HOP | named | {"host", "content-length", "expect"}
        # Only codings the token meter reads, of those the tool offered (acct.domain.answers),
        # in the place of the tool's first Accept-Encoding.
        offered = self.headers.get_all("Accept-Encoding") or []
        accept = readable_accept_encoding(", ".join(offered) if offered else None)
        out: list[tuple[bytes, bytes]] = []
        for k, v in self.headers.items():
            name = k.lower()
            if name == "accept-encoding":
                v, accept = accept, ""
                if not v:
                    continue
            elif name in drop:
                continue
            out.append((k.encode("latin-1"), v.encode("latin-1")))
        if accept:
            out.append((b"Accept-Encoding", accept.encode("latin-1")))
        return out

    def _target(self) -> httpx.URL | None:
        """The upstream URL for this request's target, or None when the target is not a path
        (absolute-form, authority-form, ``*``, or anything that could name another host)."""
        import httpx

        # The target as sent: http.server folds a leading ``//`` of ``self.path`` into one.
        words = self.requestline.split()
        raw = (words[1] if len(words) == 3 else self.path).encode("latin-1", "replace")
        if self.command == "CONNECT" or not _ORIGIN_FORM.fullmatch(raw):
            return None
        base = self.server.proxy.base_url
        try:
            url = base.copy_with(raw_path=base.raw_path.rstrip(b"/") + raw)
        except (httpx.InvalidURL, ValueError):
            return None
        same = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
        return url if same else None

    def _forward(self) -> None:
        proxy = self.server.proxy
        if self.request_version == "HTTP/1.0":
            self.close_connection = True
        url = self._target()
        if url is None:
            self.close_connection = True
            self._answer(400, "the request target must be a path starting with /")
            return
        try:
            body = self._read_body()
        except BodyTooLarge:
            self.close_connection = True
            self._answer(413, f"request bodies over {proxy.max_body} bytes are refused")
            return
        except (ValueError, OSError):
            self.close_connection = True
            self._answer(400, "the request was cut off or malformed")
            return
        from acct.services.proxy import cancel

        with cancel.exchange(self.connection):
            self._exchange(url, Outgoing(self._request_headers(), body))

    def _exchange(self, url: httpx.URL, request: Outgoing) -> None:
        """Send the request, sending it again while the broker says so; relay the last answer."""
        proxy = self.server.proxy
        out = proxy.broker.outgoing(request) if proxy.broker is not None else request
        while True:
            response = self._send(url, out)
            if response is None:
                return
            try:
                obs = proxy.observe(response, out.credential)
                again = proxy.broker.after(obs, out) if proxy.broker is not None else None
                if again is None:
                    self._relay(response, out.credential)
                    return
            finally:
                response.close()
            out = again

    def _send(self, url: httpx.URL, out: Outgoing) -> httpx.Response | None:
        import httpx

        proxy = self.server.proxy
        try:
            request = httpx.Request(self.command, url, headers=out.headers, content=out.body)
            return proxy.client.send(request, stream=True)
        except Exception as e:  # noqa: BLE001  (every failure gets an answer, never a dropped line)
            from acct.services.proxy.cancel import Departed

            if isinstance(e, Departed) or _departed(e):
                self.close_connection = True
                return None
            # The host only: a base URL may carry a password.
            self._answer(502, f"cannot reach {url.host} ({reason(e)})")
            return None

    def _relay(self, response: httpx.Response, credential: str = "-") -> None:
        """Send the answer back as it arrives: headers first (their bytes as received), then
        each piece as read. An answer framed by chunks (even one that also names a length) is
        re-chunked; an HTTP/1.0 client gets it unframed, ended by closing the connection."""
        import httpx

        from acct.services.accounting import metered  # token accounting, once there is an answer

        status = response.status_code
        bodiless = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        names = {k.lower() for k, _ in response.headers.raw}
        sized = b"content-length" in names and b"transfer-encoding" not in names
        chunked = not bodiless and not sized and self.request_version != "HTTP/1.0"
        if not bodiless and not sized and not chunked:
            self.close_connection = True
        lines = [
            b"%s %d %s\r\n"
            % (
                self.protocol_version.encode(),
                status,
                response.reason_phrase.encode("latin-1", "replace"),
            )
        ]
        for k, v in response.headers.raw:
            name = k.decode("latin-1").lower()
            if name in HOP_BY_HOP or (name == "content-length" and not sized):
                continue
            lines.append(k + b": " + v + b"\r\n")
        if chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        if self.close_connection:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        try:
            self.wfile.write(b"".join(lines))
            if bodiless:
                return
            proxy = self.server.proxy
            for data in metered(response, lambda u: proxy.answered(credential, u)):
                if data:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (httpx.HTTPError, OSError):
            # The upstream broke off or the tool went away: end this connection as it ended.
            self.close_connection = True

    def _answer(self, status: int, message: str) -> None:
        body = error_body(status, message)
        with contextlib.suppress(OSError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)


def _departed(error: BaseException) -> bool:
    from acct.services.proxy.cancel import Departed

    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, Departed):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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
        broker: Broker | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        max_body: int = MAX_BODY,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.broker = broker
        self.idle_timeout = idle_timeout
        self.max_body = max_body
        self.on_observation = on_observation
        # Each answer's token usage, once its body has been relayed (acct.services.accounting).
        self.on_answer: Callable[[str, AnswerUsage | None], None] | None = None
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

        from acct.services.proxy.cancel import Backend

        transport = httpx.HTTPTransport(
            verify=tls_context(self.env), proxy=proxy_for(self.upstream, self.env)
        )
        # Streams a departing client can cut (acct.services.proxy.cancel).
        transport._pool._network_backend = Backend()
        return httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(_READ_TIMEOUT, connect=_CONNECT_TIMEOUT),
            follow_redirects=False,
            trust_env=False,
        )

    @property
    def base_url(self) -> httpx.URL:
        import httpx

        return httpx.URL(self.upstream)

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

    def answered(self, credential: str, usage: AnswerUsage | None) -> None:
        """An answer's body has been relayed: hand its usage on (never fails the relay)."""
        if self.on_answer is not None:
            with contextlib.suppress(Exception):
                self.on_answer(credential, usage)

    def observe(self, response: httpx.Response, credential: str) -> Observation | None:
        obs = parse_headers(
            response.headers,
            http_status=response.status_code,
            credential=credential,
            now=time.time(),
        )
        if obs is not None:
            with contextlib.suppress(Exception):
                self.on_observation(obs)
        return obs

"""The forwarding HTTP server on loopback: relays each request to the upstream, streams back."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from acct.services.proxy.headers import Observation, credential_of, parse_headers
from acct.services.proxy.upstream import proxy_for, reason, tls_context

if TYPE_CHECKING:
    import httpx

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


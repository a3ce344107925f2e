"""The usage proxy under requests and answers a well-behaved client never sends: each test is a
defect once measured on the proxy, reproduced against a raw upstream on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from acct.services.proxy import Proxy
from acct.services.proxy.server import _Server

PING = b"event: ping\ndata: {}\n\n"


class RawUpstream:
    """An HTTP/1.1 server on raw sockets: it records each request's head (bytes) and body and
    answers by path. ``/both``: Content-Length and chunked at once; ``/chunky``: chunked only;
    ``/utf8``: UTF-8 bytes in a header; ``/hang``: no answer; ``/silence``: headers and one
    event, then nothing. For the last two it notes when the proxy closes the connection."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.heads: list[bytes] = []
        self.waiting = threading.Event()  # a /hang or /silence request is being held
        self.closed = threading.Event()  # ... and the proxy closed its connection
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                self.heads.append(head)
                path = head.split(b" ")[1]
                if not self._answer(conn, path, head):
                    return

    def _held(self, conn: socket.socket) -> bool:
        self.waiting.set()
        conn.settimeout(60)
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass
        self.closed.set()
        return False

    def _answer(self, conn: socket.socket, path: bytes, head: bytes) -> bool:
        if path.startswith(b"/hang"):
            return self._held(conn)
        if path.startswith(b"/silence"):
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(PING), PING)
            )
            return self._held(conn)
        if path.startswith(b"/both"):
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
            )
            return True
        if path.startswith(b"/chunky"):
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                b"\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
            )
            return True
        body = json.dumps({"head": head.decode("latin-1")}).encode()
        extra = (
            b"X-Name: caf\xc3\xa9\r\nX-Smile: \xf0\x9f\x98\x80\r\n"
            if path.startswith(b"/utf8")
            else b""
        )
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + extra
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        return True

    def stop(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def upstream() -> Iterator[RawUpstream]:
    u = RawUpstream()
    try:
        yield u
    finally:
        u.stop()


@pytest.fixture
def proxy(upstream: RawUpstream) -> Iterator[Proxy]:
    with Proxy(upstream.url, lambda obs: None, env={}) as p:
        yield p


def raw(url: str, request: bytes, *, timeout: float = 30) -> bytes:
    """Send ``request`` on a fresh socket; everything answered until the proxy closes."""
    port = int(url.rsplit(":", 1)[1])
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        while data := sock.recv(65536):
            answer += data
    return answer


def json_error(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


# --- the request target -------------------------------------------------------------------------


@pytest.fixture
def canaried() -> Iterator[tuple[RawUpstream, RawUpstream]]:
    """An upstream on port P and a canary on port P*10+1, where ``1/v1/messages`` after the
    upstream's URL once led."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(1100, 6553)
        if _free(port) and _free(port * 10 + 1):
            break
    else:
        pytest.skip("no pair of free ports")
    up, canary = RawUpstream(port), RawUpstream(port * 10 + 1)
    try:
        yield up, canary
    finally:
        up.stop()
        canary.stop()


@pytest.mark.parametrize(
    "request_line",
    [
        b"POST 1/v1/messages HTTP/1.1",
        b"POST @127.0.0.1:{canary}/v1/messages HTTP/1.1",
        b"POST .evil.example/v1/messages HTTP/1.1",
        b"POST http://127.0.0.1:{canary}/v1/messages HTTP/1.1",
        b"CONNECT 127.0.0.1:{canary} HTTP/1.1",
        b"OPTIONS * HTTP/1.1",
    ],
)
def test_a_target_that_is_not_a_path_is_a_400_and_reaches_no_host(canaried, request_line) -> None:
    up, canary = canaried
    line = request_line.replace(b"{canary}", str(canary.port).encode())
    body = b'{"model": "m"}'
    with Proxy(up.url, lambda obs: None, env={}) as p:
        answer = raw(
            p.url,
            line + b"\r\nHost: x\r\nAuthorization: Bearer sk-ant-oat01-secret\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body,
        )
    status, doc = json_error(answer)
    assert status == 400 and doc["type"] == "error"
    assert doc["error"]["type"] == "invalid_request_error"
    assert up.heads == [] and canary.heads == []


def test_an_origin_form_path_keeps_the_upstreams_host_and_port(upstream, proxy) -> None:
    answer = raw(
        proxy.url,
        b"GET //127.0.0.1:1/@x/v1/models?a=b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    head = upstream.heads[0]
    assert head.startswith(b"GET //127.0.0.1:1/@x/v1/models?a=b HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:%d" % upstream.port in head


# --- framing ------------------------------------------------------------------------------------


def test_an_answer_with_both_length_and_chunks_is_framed_by_its_chunks(upstream, proxy) -> None:
    with httpx.Client(timeout=30) as client:
        first = client.get(proxy.url + "/both")
        second = client.get(proxy.url + "/echo")  # the same connection, still in step
    assert first.content == b"abcdefg"
    assert "content-length" not in first.headers
    assert second.status_code == 200 and second.json()["head"].startswith("GET /echo ")


def test_an_http_1_0_client_gets_no_chunked_body(upstream, proxy) -> None:
    answer = raw(proxy.url, b"GET /chunky HTTP/1.0\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"abcdefg"


# --- bytes in headers ---------------------------------------------------------------------------


def test_utf8_bytes_in_a_request_header_pass_instead_of_a_502(upstream, proxy) -> None:
    answer = raw(
        proxy.url,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
    assert b"\r\nX-Name: caf\xc3\xa9\r\n" in upstream.heads[0] + b"\r\n"


def test_utf8_bytes_in_a_response_header_are_kept_as_sent(upstream, proxy) -> None:
    answer = raw(proxy.url, b"GET /utf8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = answer.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nX-Name: caf\xc3\xa9\r\n" in head + b"\r\n"
    assert b"\r\nX-Smile: \xf0\x9f\x98\x80" in head


# --- the client leaving -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/hang", "/silence"])
def test_a_client_that_leaves_ends_the_upstream_request(upstream, proxy, path) -> None:
    port = int(proxy.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}" % path.encode())
    assert upstream.waiting.wait(30)
    seen = b""
    while path == "/silence" and b"event: ping" not in seen:
        seen += sock.recv(65536)
    sock.close()
    # Before, the upstream request ran on until the proxy's 900 s read timeout.
    assert upstream.closed.wait(20)


# --- limits -------------------------------------------------------------------------------------


def test_idle_client_connections_are_closed() -> None:
    with Proxy("http://127.0.0.1:9", lambda obs: None, env={}, idle_timeout=0.2) as p:
        port = int(p.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            assert sock.recv(1) == b""  # closed by the proxy, long before this socket's timeout


def test_a_burst_of_100_connections_is_queued_not_dropped() -> None:
    """With the server not accepting at all, every connection of a burst still completes its
    handshake (a backlog of 64 dropped the rest, which then waited a second to retry)."""
    proxy = Proxy("http://127.0.0.1:9", lambda obs: None, env={})
    server = _Server(proxy)
    port = server.server_address[1]
    socks = [socket.socket() for _ in range(100)]
    try:
        for s in socks:
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
        import select
        import time

        poller = select.poll()
        by_fd = {s.fileno(): s for s in socks}
        for fd in by_fd:
            poller.register(fd, select.POLLOUT)
        connected = 0
        deadline = time.monotonic() + 3  # a dropped handshake is retried after 1 s, then 3 s
        while by_fd and (left := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(int(left * 1000)):
                poller.unregister(fd)
                sock = by_fd.pop(fd)
                connected += sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        assert connected == 100
    finally:
        for s in socks:
            s.close()
        server.server_close()


def test_a_huge_content_length_is_a_413_not_a_memory_error(upstream, proxy) -> None:
    answer = raw(
        proxy.url,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000\r\n\r\n{}",
    )
    status, doc = json_error(answer)
    assert status == 413 and doc["error"]["type"] == "request_too_large"
    assert upstream.heads == []


@pytest.mark.parametrize(
    "sent, status",
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501),
        (b"GET /echo HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"GET /echo HTTP/3.0\r\nHost: x\r\n\r\n", 505),
    ],
)
def test_errors_of_the_http_server_itself_are_json_not_html(upstream, proxy, sent, status) -> None:
    got, doc = json_error(raw(proxy.url, sent))
    assert got == status
    assert doc["type"] == "error" and doc["error"]["message"].startswith("acct proxy: ")
    assert upstream.heads == []

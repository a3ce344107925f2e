"""The loopback usage proxy (acct.services.proxy): in front of the fake Anthropic server in-process, in
front of a small streaming server of the test's own, and inside ``acct exec`` as a real process."""

from __future__ import annotations

import gzip
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from acct.base.models import Usage, Window
from acct.services.context import Ctx
from acct.services.proxy import (
    Observation,
    Proxy,
    Route,
    Unusable,
    Watch,
    claude_route,
    parse_headers,
    proxy_for,
    upstream_for,
)
from acct.services.usage import observed_usage
from tests.conftest import assert_no_secrets, seed_account, store_secrets
from tests.e2e.mitm import Certs, ProxyUnavailable, TlsProxy, make_certs
from tests.fake_anthropic.client import FakeAnthropic
from tests.test_exec import bench_of, events

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


def oauth_headers(access: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {access}",
        "anthropic-beta": "oauth-2025-04-20",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }


class Seen:
    """A callback that keeps every observation."""

    def __init__(self) -> None:
        self.items: list[Observation] = []

    def __call__(self, obs: Observation) -> None:
        self.items.append(obs)


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def proxy(fake: FakeAnthropic, seen: Seen) -> Iterator[Proxy]:
    with Proxy(fake.base_url, seen) as p:
        yield p


@pytest.fixture
def account(fake: FakeAnthropic) -> dict[str, Any]:
    fa = fake.add_account(email="p@example.com")
    fa["access"] = fake.mint(fa["uuid"])["access_token"]
    return fa


def post(
    base: str, access: str, *, stream: bool = False, path: str = "/v1/messages?beta=true"
) -> httpx.Response:
    body = {**BODY, "stream": stream}
    return httpx.post(base + path, json=body, headers=oauth_headers(access), timeout=30)


def comparable(r: httpx.Response) -> tuple[int, dict[str, str], str]:
    """Status, headers and body, without what differs per answer (ids, dates, framing)."""
    varying = {"request-id", "date", "server", "content-length", "transfer-encoding", "connection"}
    headers = {k: v for k, v in r.headers.items() if k not in varying}
    text = r.text
    for line in text.splitlines():
        if '"id":"msg_' in line.replace(" ", ""):
            text = text.replace(line, "")
    if r.headers.get("content-type", "").startswith("application/json"):
        doc = r.json()
        if isinstance(doc, dict):
            doc.pop("id", None)
        text = json.dumps(doc, sort_keys=True)
    return r.status_code, headers, text


# --- forwarding -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", ["ok", "quota", "throttle", "unauthorized"])
def test_answers_through_the_proxy_are_the_fakes_own(fake, proxy, account, stream, mode) -> None:
    fake.set_usage(account["uuid"], five_hour=37, seven_day=12)
    fake.set_messages(account["uuid"], mode, reset_epoch=int(time.time()) + 3600)
    direct = post(fake.base_url, account["access"], stream=stream)
    proxied = post(proxy.url, account["access"], stream=stream)
    assert comparable(proxied) == comparable(direct)
    assert [e["path"] for e in fake.log("messages")] == ["/v1/messages"] * 2


def test_other_paths_errors_and_queries_pass_through(fake, proxy, account) -> None:
    for path in ("/api/oauth/profile", "/nowhere?x=1"):
        headers = oauth_headers(account["access"])
        direct = httpx.get(fake.base_url + path, headers=headers)
        proxied = httpx.get(proxy.url + path, headers=headers)
        assert comparable(proxied) == comparable(direct)
    count = httpx.post(
        proxy.url + "/v1/messages/count_tokens?beta=true",
        json={"model": "m", "messages": [{"role": "user", "content": "hello"}]},
        headers=oauth_headers(account["access"]),
    )
    assert count.status_code == 200 and count.json()["input_tokens"] >= 1


GZIPPED = gzip.compress(b'{"compressed": true, "pad": "' + b"x" * 2000 + b'"}')


class Upstream:
    """A small HTTP server of the test's own: echoes requests, streams an SSE answer whose
    second half waits until the client has read the first, answers ``GET /gzip`` compressed
    and ``HEAD`` with a length but no body."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.waited: list[bool] = []
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                outer.requests.append({"path": self.path, "headers": list(self.headers.items())})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1234")
                self.end_headers()

            def do_GET(self) -> None:
                outer.requests.append({"path": self.path, "headers": list(self.headers.items())})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(GZIPPED)))
                self.end_headers()
                self.wfile.write(GZIPPED)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                outer.requests.append(
                    {"path": self.path, "headers": list(self.headers.items()), "body": body}
                )
                if self.path.startswith("/sse"):
                    self._sse()
                    return
                out = b'{"echo":true}'
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.send_header("X-Custom", "a")
                self.send_header("X-Custom", "b")
                self.send_header("anthropic-ratelimit-unified-status", "allowed_warning")
                self.send_header("anthropic-ratelimit-unified-5h-utilization", "1.25")
                self.end_headers()
                self.wfile.write(out)

            def _sse(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def chunk(data: bytes) -> None:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()

                chunk(b"event: message_start\ndata: {}\n\n")
                outer.waited.append(outer.released.wait(10))
                chunk(b"event: message_stop\ndata: {}\n\n")
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    u = Upstream()
    try:
        yield u
    finally:
        u.stop()


def test_requests_are_forwarded_byte_for_byte(upstream, seen) -> None:
    body = b'{"z": 1,   "a": "\xc3\xa9"}'
    with Proxy(upstream.url + "/", seen) as p:
        r = httpx.post(
            p.url + "/echo/v1/messages?beta=true&x=%2F",
            content=body,
            headers={
                "x-api-key": "sk-ant-api03-secret",
                "X-Trace": "t1",
                "Connection": "keep-alive, X-Drop",
                "X-Drop": "1",
            },
        )
    assert r.status_code == 201 and r.json() == {"echo": True}
    assert r.headers.get_list("x-custom") == ["a", "b"]
    got = upstream.requests[0]
    assert got["path"] == "/echo/v1/messages?beta=true&x=%2F"
    assert got["body"] == body
    headers = {k.lower(): v for k, v in got["headers"]}
    assert headers["host"] == upstream.url.removeprefix("http://")
    assert headers["x-trace"] == "t1" and headers["x-api-key"] == "sk-ant-api03-secret"
    assert "x-drop" not in headers and headers.get("connection", "keep-alive") == "keep-alive"
    assert headers["content-length"] == str(len(body))
    (obs,) = seen.items
    assert obs.status == "allowed_warning" and obs.five_hour == 125.0 and obs.http_status == 201


def test_sse_streams_chunk_by_chunk(upstream, seen) -> None:
    with (
        Proxy(upstream.url, seen) as p,
        httpx.Client(timeout=30) as client,
        client.stream("POST", p.url + "/sse", json=BODY) as r,
    ):
        chunks = r.iter_raw()
        first = next(chunks)
        assert b"message_start" in first and b"message_stop" not in first
        upstream.released.set()
        rest = b"".join(chunks)
    assert b"message_stop" in rest
    assert upstream.waited == [True]  # the first chunk arrived before the last was sent


def test_an_unreachable_upstream_is_a_502_naming_no_secret(seen, capfd) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with Proxy(f"http://127.0.0.1:{port}", seen) as p:
        r = post(p.url, "sk-ant-oat01-very-secret-token")
    assert r.status_code == 502 and r.json()["error"]["message"].startswith(
        "acct proxy: cannot reach"
    )
    out, err = capfd.readouterr()
    assert_no_secrets([r.text, out, err], ["sk-ant-oat01-very-secret-token"])
    assert seen.items == []


def test_a_failing_callback_does_not_break_the_answer(fake, account, capfd) -> None:
    def boom(obs: Observation) -> None:
        raise RuntimeError(f"callback failed for {obs!r}")

    with Proxy(fake.base_url, boom) as p:
        r = post(p.url, account["access"])
    assert r.status_code == 200
    out, err = capfd.readouterr()
    assert_no_secrets([out, err], [account["access"]])


def test_an_invalid_upstream_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="ANTHROPIC_BASE_URL"):
        Proxy("ftp://example.com", lambda o: None).start()


def test_upstream_is_the_users_own_base_url_when_set() -> None:
    assert upstream_for({}) == "https://api.anthropic.com"
    assert upstream_for({"ANTHROPIC_BASE_URL": "http://gw.local:8080/anthropic/"}) == (
        "http://gw.local:8080/anthropic"
    )


@pytest.fixture
def dead_url() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` where nothing listens: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def raw_exchange(
    url: str,
    head: bytes,
    body: bytes = b"",
    *,
    wait_continue: bool = False,
    half_close: bool = False,
) -> bytes:
    """One request on a plain socket (for what httpx will not send); returns all the proxy
    answered until it closed the connection. ``half_close`` ends the sending side after the
    body (a cut-off body); the proxy takes a client that stops sending for one that left."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        answer = b""
        if wait_continue:
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(4096)
        sock.sendall(body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        while data := sock.recv(65536):
            answer += data
    return answer


def test_gzip_answers_pass_through_unchanged(upstream, seen) -> None:
    with (
        Proxy(upstream.url, seen, env={}) as p,
        httpx.Client(timeout=30) as client,
        client.stream("GET", p.url + "/gzip", headers={"accept-encoding": "gzip"}) as r,
    ):
        raw = b"".join(r.iter_raw())
    assert r.headers["content-encoding"] == "gzip"
    assert raw == GZIPPED  # the compressed bytes, as sent: the tool decodes them itself
    headers = {k.lower(): v for k, v in upstream.requests[0]["headers"]}
    assert headers["accept-encoding"] == "gzip"


def test_chunked_request_bodies_arrive_whole(upstream, seen) -> None:
    parts = [b'{"model": ', b'"m", ', b'"x": "' + b"y" * 5000 + b'"}']
    with Proxy(upstream.url, seen, env={}) as p:
        r = httpx.post(p.url + "/v1/messages", content=iter(parts), timeout=30)
    assert r.status_code == 201
    got = upstream.requests[0]
    headers = {k.lower(): v for k, v in got["headers"]}
    assert got["body"] == b"".join(parts)
    assert headers["content-length"] == str(len(got["body"]))
    assert "transfer-encoding" not in headers


def test_head_answers_carry_headers_and_no_body(upstream, seen) -> None:
    with Proxy(upstream.url, seen, env={}) as p, httpx.Client(timeout=30) as client:
        head = client.head(p.url + "/v1/models")
        after = client.post(p.url + "/echo", content=b"{}")  # the connection is still in step
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "1234"
    assert after.status_code == 201 and after.json() == {"echo": True}


def test_expect_100_continue_is_answered_here_and_not_forwarded(upstream, seen) -> None:
    body = b'{"hello": "world"}'
    with Proxy(upstream.url, seen, env={}) as p:
        answer = raw_exchange(
            p.url,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body),
            body,
            wait_continue=True,
        )
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 ")
    got = upstream.requests[0]
    assert got["body"] == body
    assert "expect" not in {k.lower() for k, _ in got["headers"]}


@pytest.mark.parametrize(
    "head, body",
    [
        (b"Transfer-Encoding: chunked", b'5\r\n{"a":\r\n'),  # the last chunk never came
        (b"Transfer-Encoding: chunked", b'9\r\n{"a":'),  # a chunk shorter than its size
        (b"Content-Length: 40", b'{"a": 1'),  # shorter than its length
        (b"Content-Length: -3", b""),
        (b"Transfer-Encoding: chunked", b"zz\r\n"),
    ],
)
def test_a_cut_off_or_malformed_body_is_refused_never_forwarded(upstream, seen, head, body) -> None:
    with Proxy(upstream.url, seen, env={}) as p:
        answer = raw_exchange(
            p.url, b"POST /echo HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\n", body, half_close=True
        )
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert b"acct proxy:" in answer
    assert upstream.requests == []


def test_the_tools_proxy_rules_not_httpx_ones() -> None:
    https, http = "https://api.anthropic.com/v1", "http://gw.local:8080"
    assert proxy_for(https, {}) is None
    assert proxy_for(https, {"ALL_PROXY": "socks5://h:1", "all_proxy": "x"}) is None
    assert proxy_for(https, {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:1"}) == (
        "http://low:1"
    )
    assert proxy_for(https, {"HTTP_PROXY": "corp:3128"}) == "http://corp:3128"  # https falls back
    assert proxy_for(http, {"HTTPS_PROXY": "http://corp:3128"}) is None
    corp = {"HTTPS_PROXY": "http://corp:3128", "HTTP_PROXY": "http://corp:3128"}
    for no_proxy in ("anthropic.com", ".anthropic.com", "*.anthropic.com", "x, api.anthropic.com"):
        assert proxy_for(https, {**corp, "no_proxy": no_proxy}) is None, no_proxy
    assert proxy_for(https, {**corp, "NO_PROXY": "*"}) is None
    assert proxy_for(https, {**corp, "NO_PROXY": "api.anthropic.com:8443"}) == "http://corp:3128"
    assert proxy_for(https, {**corp, "NO_PROXY": "api.anthropic.com:443"}) is None
    assert proxy_for(https, {**corp, "NO_PROXY": "notanthropic.com"}) == "http://corp:3128"
    assert proxy_for(http, {**corp, "NO_PROXY": "gw.local"}) is None
    with pytest.raises(Unusable, match="socks5 proxy"):
        proxy_for(https, {"HTTPS_PROXY": "socks5://127.0.0.1:1080"})


def test_the_proxy_goes_through_the_users_http_proxy_unless_no_proxy_says(
    upstream, seen, dead_url
) -> None:
    via = {"HTTP_PROXY": dead_url}
    with Proxy(upstream.url, seen, env=via) as p:
        r = httpx.post(p.url + "/echo", content=b"{}", timeout=30)
    assert r.status_code == 502 and "ConnectError" in r.json()["error"]["message"]
    assert upstream.requests == []
    with Proxy(upstream.url, seen, env={**via, "no_proxy": "127.0.0.1"}) as p:
        assert httpx.post(p.url + "/echo", content=b"{}", timeout=30).status_code == 201


@pytest.mark.parametrize(
    "variables, words",
    [
        ({"HTTPS_PROXY": "socks5://127.0.0.1:1", "HTTP_PROXY": "socks5://127.0.0.1:1"}, "socks5"),
        ({"CLAUDE_CODE_CLIENT_CERT": "/nonexistent/cert.pem"}, "client certificate"),
    ],
)
def test_failures_of_any_kind_are_answered_with_a_502(upstream, seen, variables, words) -> None:
    with Proxy(upstream.url, seen, env=variables) as p:
        r = httpx.post(p.url + "/echo", content=b"{}", timeout=30)
    assert r.status_code == 502 and words in r.json()["error"]["message"]
    assert "/nonexistent" not in r.text


def test_unreadable_extra_ca_files_are_skipped_as_node_skips_them(upstream, seen, tmp_path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    env = {"SSL_CERT_FILE": str(bad), "NODE_EXTRA_CA_CERTS": "/nonexistent", "ALL_PROXY": "x"}
    with Proxy(upstream.url, seen, env=env) as p:
        assert httpx.post(p.url + "/echo", content=b"{}", timeout=30).status_code == 201


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    try:
        return make_certs(tmp_path_factory.mktemp("certs"))
    except ProxyUnavailable as exc:
        pytest.skip(f"no openssl to make a test CA: {exc}")


@pytest.fixture
def tls_inspecting(fake: FakeAnthropic, certs: Certs) -> Iterator[TlsProxy]:
    """A company proxy that re-signs TLS with its own CA (which the tool trusts by
    NODE_EXTRA_CA_CERTS), in front of api.anthropic.com (the fake)."""
    proxy = TlsProxy(fake.port, certs).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_behind_a_tls_inspecting_proxy_the_tools_trust_is_used(
    fake, account, seen, tls_inspecting
) -> None:
    fake.set_usage(account["uuid"], five_hour=37, seven_day=12)
    env = tls_inspecting.env()
    with Proxy("https://api.anthropic.com", seen, env=env) as p:
        r = post(p.url, account["access"])
    assert r.status_code == 200, r.text
    assert seen.items[-1].five_hour == 37.0
    assert tls_inspecting.connects  # it went through the company proxy

    untrusted = {k: v for k, v in env.items() if k != "NODE_EXTRA_CA_CERTS"}
    with Proxy("https://api.anthropic.com", seen, env=untrusted) as p:
        r = post(p.url, account["access"])
    assert r.status_code == 502
    message = r.json()["error"]["message"]
    assert "api.anthropic.com" in message and "certificate verify failed" in message
    assert_no_secrets([r.text], {account["access"]})


def test_watch_stop_writes_what_was_seen_and_ends_its_writer(fake, ctx) -> None:
    a = seed_account(fake, ctx, "a", five_hour=37, seven_day=12)
    cached(ctx, a, five_hour=5, seven_day=5)
    env = {**ctx.env, "ANTHROPIC_BASE_URL": fake.base_url}
    w = Watch(env, prompt_every=3600).start()
    w.begin(a)
    post(w.url, a.tokens.access)
    w.stop()  # no settle(): stop itself waits for the writer
    assert not any(t.name == "acct-watch" and t.is_alive() for t in threading.enumerate())
    assert ctx.state.usage(a.id).usage.five_hour.utilization == 37.0
    assert json.loads(ctx.paths.prompt_state_file.read_text())["targets"] is not None
    assert not [f for f in os.listdir(ctx.paths.state_dir) if f.endswith(".tmp")]
    w.stop()  # twice is harmless


# --- observations -----------------------------------------------------------------------------


def test_observations_tell_usage_quota_throttle_and_overage(fake, proxy, seen, account) -> None:
    uuid = account["uuid"]
    five_reset = int(time.time()) + 2 * 3600
    fake.set_usage(uuid, five_hour=37, seven_day=12, five_hour_resets_at=five_reset)
    post(proxy.url, account["access"], stream=True)
    ok = seen.items[-1]
    assert (ok.status, ok.five_hour, ok.seven_day, ok.quota) == ("allowed", 37.0, 12.0, None)
    assert ok.five_hour_reset == five_reset and ok.http_status == 200
    assert ok.credential == fake.sha8(account["access"]) and account["access"] not in repr(ok)

    reset = int(time.time()) + 5 * 86400
    fake.set_messages(uuid, "quota", reset_epoch=reset, claim="seven_day")
    post(proxy.url, account["access"])
    q = seen.items[-1].quota
    assert q is not None and (q.window, q.reset_at, q.claim) == ("7-day", reset, "seven_day")

    n = len(seen.items)
    fake.set_messages(uuid, "throttle")
    assert post(proxy.url, account["access"]).status_code == 429
    assert len(seen.items) == n  # a plain throttle carries no unified headers: no observation

    fake.set_messages(uuid, "overage", reset_epoch=reset)
    assert post(proxy.url, account["access"]).status_code == 200
    over = seen.items[-1]
    assert over.status == "rejected" and over.overage_in_use and over.quota is None


def test_parse_headers_reads_fractions_and_epochs() -> None:
    h = {
        "Anthropic-Ratelimit-Unified-Status": "rejected",
        "anthropic-ratelimit-unified-reset": "1800000000000",  # milliseconds
        "anthropic-ratelimit-unified-5h-utilization": "1.02",
        "anthropic-ratelimit-unified-7d-utilization": "nonsense",
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
        "other": "x",
    }
    obs = parse_headers(h, http_status=429, credential="-", now=1.0)
    assert obs is not None
    assert (obs.five_hour, obs.seven_day, obs.reset_at) == (102.0, None, 1800000000.0)
    assert obs.windows() == (Window(102.0, 1800000000.0), None)
    assert obs.quota is not None and obs.quota.window == "5-hour"
    assert parse_headers({"retry-after": "0"}, http_status=429, credential="-", now=1.0) is None


def test_observed_usage_keeps_what_the_headers_do_not_tell() -> None:
    now = 1000.0
    prev = Usage(Window(10, 5000), Window(20, 900), (("Opus", 50.0, 9000.0),), True)
    u = observed_usage(prev, Window(37, None), None, now)
    assert u.five_hour == Window(37, 5000)  # the last poll's reset, still ahead
    assert u.seven_day == Window(20, 900)
    assert u.scoped == prev.scoped and u.extra_usage_enabled is True
    assert observed_usage(prev, None, Window(12, None), now).seven_day == Window(12, None)


def test_watch_writes_usage_for_the_account_whose_token_it_saw(fake, ctx) -> None:
    a = seed_account(fake, ctx, "a", five_hour=37, seven_day=12)
    b = seed_account(fake, ctx, "b", five_hour=60, seven_day=70)
    env = {**ctx.env, "ANTHROPIC_BASE_URL": fake.base_url}
    with Watch(env) as w:
        w.begin(a)
        post(w.url, a.tokens.access)
        post(w.url, b.tokens.access)
        w.settle()
        assert w.quota(a.id) is None
        fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 600)
        post(w.url, a.tokens.access)
        w.settle()
        assert w.quota(a.id) is not None and w.quota(b.id) is None
    usage = {n: ctx.state.usage(acc.id).usage for n, acc in (("a", a), ("b", b))}
    assert (usage["a"].five_hour.utilization, usage["a"].seven_day.utilization) == (37.0, 12.0)
    assert (usage["b"].five_hour.utilization, usage["b"].seven_day.utilization) == (60.0, 70.0)
    assert fake.stats().get("usage", 0) == 0


# --- inside acct exec -------------------------------------------------------------------------


def cached(ctx: Ctx, *accounts: Any, five_hour: float, seven_day: float) -> None:
    """Usage in the cache, polled a while ago: exec has no account to probe."""
    for acc in accounts:
        ctx.state.put_usage(
            acc.id, Usage(Window(five_hour, None), Window(seven_day, None)), now=time.time() - 120
        )


def on_terminal(xenv: dict[str, str], *args: str) -> tuple[int, str]:
    """``acct exec ARGS`` with stdout and stderr on a pseudo-terminal: acct cannot read them."""
    import pexpect

    term = pexpect.spawn(
        sys.executable,
        ["-m", "acct", "exec", *args],
        env=xenv,
        cwd=xenv["HOME"],
        timeout=60,
        encoding="utf-8",
    )
    term.expect(pexpect.EOF)
    term.close()
    return term.exitstatus, term.before


def test_on_a_terminal_the_proxy_sees_the_quota_and_its_exact_reset(
    fake, ctx, xenv, tool_log
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, b, five_hour=5, seven_day=5)
    reset = int(time.time()) + 3 * 3600 + 17
    fake.set_messages(a.uuid, "quota", reset_epoch=reset, claim="five_hour")
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    fake.reset_log()
    status, out = on_terminal(xenv, "--account", "a", "--", "claude", "-p", "hi")
    assert status == 0, out
    assert "a hit its 5-hour limit" in out and "switching to b in flight" in out
    assert "Hello from b@example.com" in out
    assert len(events(tool_log, "start")) == 1  # answered in flight: no second run
    bench = bench_of(ctx, "a")
    assert bench is not None and bench.kind == "quota" and bench.until == reset
    assert fake.stats().get("usage", 0) == 0  # no usage request: the answer's headers told it
    rec = ctx.state.usage(a.id)
    assert rec.usage.five_hour == Window(100.0, reset)


def test_without_the_proxy_a_terminal_run_asks_the_usage_endpoint(fake, ctx, xenv) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, b, five_hour=5, seven_day=5)
    reset = int(time.time()) + 3 * 3600
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    fake.reset_log()
    status, out = on_terminal(xenv, "--no-proxy", "--account", "a", "--", "claude", "-p", "hi")
    assert status == 0, out
    assert "switching to b" in out
    assert fake.stats().get("usage", 0) >= 1


def test_a_run_leaves_live_usage_in_the_cache_and_prompt_without_polling(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=37, seven_day=12)
    cached(ctx, a, five_hour=5, seven_day=5)
    fake.reset_log()
    p = run("exec", "--", "claude", "-p", "hi")
    assert p.returncode == 0, p.stderr
    rec = ctx.state.usage(a.id)
    assert (rec.usage.five_hour.utilization, rec.usage.seven_day.utilization) == (37.0, 12.0)
    assert rec.fetched_at > time.time() - 60
    assert fake.stats().get("usage", 0) == 0 and fake.stats()["messages"] == 1
    doc = json.loads(ctx.paths.prompt_state_file.read_text())
    assert doc["targets"]["claude-code"]["five_hour"] == 37.0
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_no_proxy_leaves_the_cache_alone(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=37, seven_day=12)
    cached(ctx, a, five_hour=5, seven_day=5)
    p = run("exec", "--no-proxy", "--", "claude", "-p", "hi")
    assert p.returncode == 0, p.stderr
    assert ctx.state.usage(a.id).usage.five_hour.utilization == 5


def test_proxy_false_in_the_config_turns_it_off_and_the_flag_wins(fake, ctx, run) -> None:
    a = seed_account(fake, ctx, "a", five_hour=37, seven_day=12)
    ctx.paths.config_dir.mkdir(parents=True, exist_ok=True)
    ctx.paths.config_file.write_text("proxy = false\n")
    cached(ctx, a, five_hour=5, seven_day=5)
    p = run("exec", "--", "claude", "-p", "hi")
    assert p.returncode == 0, p.stderr
    assert ctx.state.usage(a.id).usage.five_hour.utilization == 5, "no proxy: nothing observed"
    p = run("exec", "--proxy", "--", "claude", "-p", "hi")
    assert p.returncode == 0, p.stderr
    assert ctx.state.usage(a.id).usage.five_hour.utilization == 37, "--proxy wins over the config"


def test_the_users_base_url_is_chained_and_restored_for_no_proxy(fake, ctx, run, tool_log) -> None:
    """The fake tool reaches the fake only through ANTHROPIC_BASE_URL: both ways work."""
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    fake.set_usage(a.uuid, five_hour=37, seven_day=12)
    cached(ctx, a, five_hour=5, seven_day=5)
    for flag in ("--proxy", "--no-proxy"):
        p = run("exec", flag, "--", "claude", "-p", "hi")
        assert p.returncode == 0 and "Hello from a@example.com" in p.stdout, p.stderr
        if flag == "--proxy":  # the answer's headers reached the cache: the proxy was on the path
            assert ctx.state.usage(a.id).usage.five_hour.utilization == 37.0
    assert fake.stats()["messages"] == 2
    assert fake.stats().get("usage", 0) == 0


def test_a_proxy_that_cannot_start_warns_once_and_runs_without(fake, ctx, run) -> None:
    seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    p = run("exec", "--", "claude", "-p", "hi", env={"ANTHROPIC_BASE_URL": "ftp://nowhere.invalid"})
    warnings = [ln for ln in p.stderr.splitlines() if "usage proxy" in ln]
    assert len(warnings) == 1 and "running without it" in warnings[0]
    assert p.returncode == 1  # the tool itself got the unusable URL, as it would alone
    assert fake.stats().get("messages", 0) == 0


def test_a_refusal_usage_does_not_explain_still_ends_the_run_as_quota(
    fake, ctx, xenv, tool_log
) -> None:
    """A per-model weekly cap: the 5-hour and 7-day figures show room, so only the proxy's
    word tells the terminal run was refused for quota (without it acct would not rotate)."""
    a = seed_account(fake, ctx, "a", five_hour=40, seven_day=50)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, b, five_hour=5, seven_day=5)
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 86400, claim="seven_day_opus")
    status, out = on_terminal(xenv, "--no-proxy", "--account", "a", "--", "claude", "-p", "hi")
    assert status == 1 and "switching" not in out
    assert bench_of(ctx, "a") is None
    status, out = on_terminal(xenv, "--account", "a", "--", "claude", "-p", "hi")
    assert status == 0, out
    assert "a hit its Opus weekly limit" in out and "switching to b in flight" in out
    assert "Hello from b@example.com" in out
    bench = bench_of(ctx, "a")  # one model's cap: a rests for the cooloff, not a whole day
    assert bench is not None and bench.kind == "cooloff"
    assert bench.until < time.time() + 1000


def test_the_tools_environment_points_at_the_proxy() -> None:
    home = {"HOME": "/nonexistent"}
    own = Watch({**home, "ANTHROPIC_BASE_URL": "http://gw.local:8080"}).start()
    anthropic = Watch(home).start()
    try:
        assert own.child_env({}) == {"ANTHROPIC_BASE_URL": own.url}
        # Anthropic's own API behind the proxy: Claude Code keeps its first-party features.
        assert anthropic.child_env({}) == {
            "ANTHROPIC_BASE_URL": anthropic.url,
            "_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL": "1",
        }
        # One union under both names: a reader of either keeps corp.local and skips loopback.
        behind = own.child_env({"HTTPS_PROXY": "http://corp:3128", "NO_PROXY": "corp.local"})
        assert behind["NO_PROXY"] == behind["no_proxy"] == "corp.local,127.0.0.1"
        both = own.child_env(
            {"https_proxy": "x", "no_proxy": "a.local b.local", "NO_PROXY": "b.local,c.local"}
        )
        assert both["NO_PROXY"] == both["no_proxy"] == "a.local,b.local,c.local,127.0.0.1"
        assert "NO_PROXY" not in own.child_env(
            {"HTTPS_PROXY": "x", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        )
    finally:
        own.stop()
        anthropic.stop()


# --- Claude Code's settings ---------------------------------------------------------------------


def write_settings(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_the_route_reads_every_settings_file_in_claude_codes_order(tmp_path) -> None:
    home, project, managed = tmp_path / "home", tmp_path / "project", tmp_path / "managed.json"
    env = {"HOME": str(home), "ANTHROPIC_BASE_URL": "http://env:1", "TERM": "x"}
    assert claude_route(env, project, managed=managed) == Route(env)

    user = write_settings(home / ".claude/settings.json", {"env": {"HTTPS_PROXY": "http://u:1"}})
    write_settings(project / ".claude/settings.json", {"env": {"ANTHROPIC_BASE_URL": "http://p:1"}})
    local = write_settings(
        project / ".claude/settings.local.json", {"env": {"ANTHROPIC_BASE_URL": "http://l:1"}}
    )
    write_settings(managed, {"env": {"DISABLE_TELEMETRY": "1"}, "permissions": {}})
    route = claude_route(env, project, managed=managed)
    assert route.env["ANTHROPIC_BASE_URL"] == "http://l:1"  # local over project over env
    assert route.env["HTTPS_PROXY"] == "http://u:1" and route.env["DISABLE_TELEMETRY"] == "1"
    assert (user, "HTTPS_PROXY") in route.set_by_settings
    assert route.set_by_settings[-1] == (local, "ANTHROPIC_BASE_URL")
    assert route.base_url_from_settings and route.provider is None and route.unreadable is None

    write_settings(managed, {"env": {"ANTHROPIC_BASE_URL": "http://m:1"}})
    assert claude_route(env, project, managed=managed).env["ANTHROPIC_BASE_URL"] == "http://m:1"

    # CLAUDE_CONFIG_DIR moves the user's settings.
    moved = write_settings(tmp_path / "cfg/settings.json", {"env": {"NODE_EXTRA_CA_CERTS": "/ca"}})
    route = claude_route({**env, "CLAUDE_CONFIG_DIR": str(moved.parent)}, tmp_path, managed=managed)
    assert (moved, "NODE_EXTRA_CA_CERTS") in route.set_by_settings


def test_a_route_acct_cannot_know_is_reported(tmp_path) -> None:
    home, managed = tmp_path / "home", tmp_path / "managed.json"
    env = {"HOME": str(home)}
    bad = write_settings(tmp_path / ".claude/settings.json", "{not json")
    assert claude_route(env, tmp_path, managed=managed).unreadable == bad
    write_settings(bad, {"env": ["not", "a", "mapping"]})
    assert claude_route(env, tmp_path, managed=managed).unreadable == bad
    bad.unlink()
    assert claude_route({**env, "CLAUDE_CODE_USE_BEDROCK": "1"}, tmp_path).provider == (
        "Amazon Bedrock"
    )
    assert claude_route({**env, "CLAUDE_CODE_USE_VERTEX": "0"}, tmp_path, managed=managed) == (
        Route({**env, "CLAUDE_CODE_USE_VERTEX": "0"})
    )
    write_settings(managed, {"env": {"CLAUDE_CODE_USE_VERTEX": "true"}})
    assert claude_route(env, tmp_path, managed=managed).provider == "Google Vertex AI"


def test_settings_on_the_route_withhold_the_first_party_switch(tmp_path) -> None:
    path = tmp_path / "settings.json"
    env = {"HOME": "/nonexistent", "HTTPS_PROXY": "http://corp:3128"}
    w = Watch(env, route=Route(env, ((path, "HTTPS_PROXY"),))).start()
    try:
        out, url = w.child_env(env), w.url
    finally:
        w.stop()
    assert (
        out["ANTHROPIC_BASE_URL"] == url and "_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL" not in out
    )


def test_a_base_url_in_the_settings_keeps_the_proxy_out_unless_asked(
    fake, ctx, run, xenv, dead_url
) -> None:
    """By default acct stays off a route the tool's settings decide; ``--proxy`` forwards to
    the settings' base URL (the fake tool reads only its environment, so it reaches the fake
    only through the proxy here)."""
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    fake.set_usage(a.uuid, five_hour=37, seven_day=12)
    cached(ctx, a, five_hour=5, seven_day=5)
    settings = write_settings(
        Path(xenv["HOME"]) / ".claude/settings.json", {"env": {"ANTHROPIC_BASE_URL": fake.base_url}}
    )
    p = run("exec", "--", "claude", "-p", "hi")
    notes = [ln for ln in p.stderr.splitlines() if "usage proxy" in ln]
    assert len(notes) == 1 and str(settings) in notes[0] and "ANTHROPIC_BASE_URL" in notes[0]
    assert p.returncode == 0, p.stderr
    assert ctx.state.usage(a.id).usage.five_hour.utilization == 5  # nothing observed

    p = run("exec", "--proxy", "--", "claude", "-p", "hi", env={"ANTHROPIC_BASE_URL": dead_url})
    assert p.returncode == 0 and "Hello from a@example.com" in p.stdout, p.stderr
    assert ctx.state.usage(a.id).usage.five_hour.utilization == 37.0


@pytest.mark.parametrize(
    "settings, variables, words",
    [
        ("{broken", {}, "cannot read"),
        ('{"env": {"HTTPS_PROXY": "http://corp:3128"}}', {}, "sets HTTPS_PROXY"),
        ("{}", {"CLAUDE_CODE_USE_BEDROCK": "1"}, "uses Amazon Bedrock"),
    ],
)
def test_an_unknown_route_runs_without_the_proxy_in_one_line(
    fake, ctx, run, xenv, settings, variables, words
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=37, seven_day=12)
    cached(ctx, a, five_hour=5, seven_day=5)
    write_settings(Path(xenv["HOME"]) / "project/.claude/settings.local.json", settings)
    p = run("exec", "--", "claude", "-p", "hi", env=variables, cwd=Path(xenv["HOME"]) / "project")
    assert p.returncode == 0, p.stderr
    said = [ln for ln in p.stderr.splitlines() if "proxy" in ln]
    assert len(said) == 1 and words in said[0] and "without the usage proxy" in said[0], said
    assert ctx.state.usage(a.id).usage.five_hour.utilization == 5

"""The "refresh goes on the wire" hook (acct.base.wire): it runs once the connection is up,
right before the request's headers are written, and never for a request that was not sent."""

from __future__ import annotations

import socket
import socketserver
import threading

import httpx
import pytest

from acct.base import wire
from tests.conftest import Silent
from tests.fake_anthropic.client import FakeAnthropic


def _post(url: str, seen: list[str], timeout: float = 5.0) -> httpx.Response:
    with wire.on_sending(lambda: seen.append("sending")), httpx.Client(timeout=timeout) as c:
        return c.post(url, json={"grant_type": "refresh_token"}, extensions={"trace": wire.trace})


def test_the_hook_runs_once_before_a_request_that_reaches_the_server(fake: FakeAnthropic) -> None:
    seen: list[str] = []
    answer = _post(fake.token_url, seen)
    assert answer.status_code >= 400  # a refresh without a token, refused
    assert seen == ["sending"]
    assert len(fake.log()) == 1


def test_the_hook_does_not_run_while_connecting_or_when_the_connection_fails(
    silent: Silent,
) -> None:
    seen: list[str] = []
    with pytest.raises(httpx.ConnectTimeout):  # stuck in the TLS handshake: nothing was sent
        _post(f"https://127.0.0.1:{silent.port}/v1/oauth/token", seen, timeout=0.5)
    assert silent.accepted == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        _post(f"http://127.0.0.1:{closed}/v1/oauth/token", seen)
    assert seen == []


def test_a_hook_that_refuses_stops_the_request_before_it_is_written(fake: FakeAnthropic) -> None:
    def refuse() -> None:
        raise RuntimeError("the pool is unreachable")

    with wire.on_sending(refuse), httpx.Client(timeout=5) as c, pytest.raises(RuntimeError):
        c.post(fake.token_url, json={"grant_type": "refresh_token"},
               extensions={"trace": wire.trace})  # fmt: skip
    assert fake.log() == []


def test_a_hook_belongs_to_its_own_context_not_to_other_threads(fake: FakeAnthropic) -> None:
    """The proxy's worker threads start with contexts of their own: a refresh's hook set in one
    thread never runs for a request another thread sends."""
    seen: list[str] = []
    done: list[int] = []

    def other_thread() -> None:
        with httpx.Client(timeout=5) as c:
            done.append(
                c.post(fake.token_url, json={}, extensions={"trace": wire.trace}).status_code
            )

    with wire.on_sending(lambda: seen.append("sending")):
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert done and done[0] >= 400 and seen == []


class _Refusing(socketserver.StreamRequestHandler):
    """An HTTP proxy that refuses every tunnel (407)."""

    def handle(self) -> None:
        self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        self.wfile.write(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b"Proxy-Authenticate: Basic\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )


def test_a_chatgpt_refresh_a_proxy_refuses_sent_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy's CONNECT carries the refresh's trace too (the mark is committed there), but a
    refused tunnel reached no token endpoint: "nothing was sent", never "may be spent"."""
    from acct.base.errors import NetworkError
    from acct.base.models import Tokens
    from acct.services.providers import chatgpt

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Refusing) as proxy:
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        endpoints = chatgpt.ChatGPTEndpoints.from_env(
            {"ACCT_CHATGPT_AUTH_BASE": "https://auth.invalid"}
        )
        seen: list[str] = []
        try:
            with wire.on_sending(lambda: seen.append("sending")), pytest.raises(NetworkError) as e:
                chatgpt.refresh(endpoints, Tokens("at", "rt", 0, ()), timeout=5)
        finally:
            proxy.shutdown()
    assert "nothing was sent" in e.value.message
    assert seen == ["sending"]  # the mark was committed at the CONNECT; the caller clears it

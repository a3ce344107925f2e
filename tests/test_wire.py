"""The "refresh goes on the wire" hook (acct.base.wire): it runs once the connection is up,
right before the request's headers are written, and never for a request that was not sent."""

from __future__ import annotations

import socket

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


def test_outside_a_refresh_the_trace_calls_nothing(fake: FakeAnthropic) -> None:
    with httpx.Client(timeout=5) as c:
        assert c.get(fake.base_url + "/", extensions={"trace": wire.trace}).status_code >= 200

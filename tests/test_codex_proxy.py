"""The usage proxy in front of the Codex CLI: the route, the ``-c`` provider that points Codex at
it, and how it reads the ChatGPT Responses API's answers (in front of the real fake server)."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from acct.services.proxy import Observation, Proxy
from acct.services.proxy.headers import read_codex
from acct.services.targets.codex import PROXY_URL_VAR, Codex, proxy_config
from tests.fake_chatgpt.client import FakeChatGPT

BASE = "http://127.0.0.1:9/backend-api/codex"
TABLE = (
    f'model_providers.acct={{name="acct",base_url="{BASE}",wire_api="responses",'
    "requires_openai_auth=true}"
)
PROVIDER = ["-c", "model_provider=acct", "-c", TABLE]


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["codex", "exec", "--json", "hi"], ["codex", *PROVIDER, "exec", "--json", "hi"]),
        (
            ["codex", "exec", "resume", "--last", "go on"],
            ["codex", *PROVIDER, "exec", "resume", "--last", "go on"],
        ),
        (["codex", "fix the tests"], ["codex", *PROVIDER, "fix the tests"]),
        (["codex"], ["codex", *PROVIDER]),
        (
            ["codex", "-m", "o3", "resume", "--last"],
            ["codex", *PROVIDER, "-m", "o3", "resume", "--last"],
        ),
        (["codex", "login"], ["codex", "login"]),
        (["codex", "mcp", "list"], ["codex", "mcp", "list"]),
        (["/opt/wrapper", "exec", "hi"], ["/opt/wrapper", "exec", "hi"]),  # not Codex itself
    ],
)
def test_codex_gets_the_proxys_provider_before_its_subcommand(argv, want) -> None:
    assert Codex().proxy_argv(argv, {PROXY_URL_VAR: BASE}) == want
    assert proxy_config(BASE) == PROVIDER


def test_without_the_proxys_address_codex_runs_as_given() -> None:
    assert Codex().proxy_argv(["codex", "exec", "hi"], {}) == ["codex", "exec", "hi"]


def test_codex_route_is_the_chatgpt_api_codex_path(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    route = Codex().route(env, tmp_path)
    assert route.base_url == "https://chatgpt.com/backend-api/codex" and route.usable
    moved = Codex().route(
        {**env, "ACCT_CHATGPT_API_BASE": "http://127.0.0.1:5/backend-api"}, tmp_path
    )
    assert moved.upstream == "http://127.0.0.1:5" and moved.path == "/backend-api/codex"
    assert moved.via("http://127.0.0.1:7") == "http://127.0.0.1:7/backend-api/codex"


def test_a_provider_of_the_users_own_keeps_the_proxy_out(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    config = tmp_path / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text('model_provider = "ollama"\n')
    route = Codex().route(env, tmp_path)
    assert not route.usable and "ollama" in (route.beyond or "")
    config.write_text('model_provider = "openai"\n')
    assert Codex().route(env, tmp_path).usable
    config.write_text("model_provider = [\n")
    assert Codex().route(env, tmp_path).unreadable == config


def test_codex_proxy_env_carries_the_address_and_bypasses_the_users_http_proxy() -> None:
    env = {"HTTPS_PROXY": "http://127.0.0.1:1"}
    got = Codex().proxy_env(BASE, env)
    assert got[PROXY_URL_VAR] == BASE and "127.0.0.1" in got["NO_PROXY"].split(",")


# --- reading the answers --------------------------------------------------------------------

HEADERS = {
    "x-codex-primary-used-percent": "42.0",
    "x-codex-primary-window-minutes": "300",
    "x-codex-primary-reset-at": "1800003600",
    "x-codex-secondary-used-percent": "7.5",
    "x-codex-secondary-window-minutes": "10080",
    "x-codex-secondary-reset-at": "1800500000",
}
LIMIT = {
    "error": {
        "type": "usage_limit_reached",
        "plan_type": "plus",
        "resets_at": 1_800_007_200,
        "resets_in_seconds": 7200,
    }
}


def test_x_codex_headers_are_live_usage_in_acct_columns() -> None:
    obs = read_codex(HEADERS, 200, None, "fp", 1_800_000_000.0)
    assert obs is not None and obs.status == "allowed" and obs.quota is None
    assert (obs.five_hour, obs.seven_day) == (42.0, 7.5)
    five, seven = obs.windows()
    assert five is not None and five.resets_at == 1_800_003_600
    assert seven is not None and seven.resets_at == 1_800_500_000


def test_a_usage_limit_body_is_a_refusal_with_its_reset() -> None:
    body = json.dumps(LIMIT).encode()
    obs = read_codex({**HEADERS, "x-codex-primary-used-percent": "100"}, 429, body, "fp", 0.0)
    assert obs is not None and obs.status == "rejected"
    assert obs.quota is not None and obs.quota.reset_at == 1_800_007_200
    assert obs.quota.window == "5-hour"
    zipped = read_codex({"content-encoding": "gzip"}, 429, gzip.compress(body), "fp", 0.0)
    assert zipped is not None and zipped.quota is not None  # no headers, the body alone


def test_a_429_throttle_says_nothing_about_the_quota() -> None:
    throttle = json.dumps({"error": {"type": "rate_limit_exceeded"}}).encode()
    obs = read_codex(HEADERS, 429, throttle, "fp", 0.0)
    assert obs is not None and obs.status is None and obs.quota is None
    assert read_codex({}, 429, throttle, "fp", 0.0) is None
    assert read_codex({}, 429, b"not json", "fp", 0.0) is None


# --- in front of the fake ChatGPT server ----------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeChatGPT]:
    with FakeChatGPT() as server:
        yield server


@pytest.fixture
def seen() -> list[Observation]:
    return []


@pytest.fixture
def proxy(fake: FakeChatGPT, seen: list[Observation]) -> Iterator[Proxy]:
    with Proxy(fake.base_url, seen.append, env={}, provider="chatgpt") as p:
        yield p


def turn(proxy: Proxy, token: str, account_id: str) -> httpx.Response:
    return httpx.post(
        proxy.url + "/backend-api/codex/responses",
        json={"model": "gpt-5.5", "stream": True, "input": []},
        headers={
            "authorization": f"Bearer {token}",
            "chatgpt-account-id": account_id,
            "accept": "text/event-stream",
        },
        trust_env=False,
        timeout=30,
    )


def test_responses_stream_through_and_their_headers_are_observed(fake, proxy, seen) -> None:
    a = fake.add_account(plan_type="plus")
    fake.set_usage(a["account_id"], primary=30, secondary=4)
    t = fake.mint(a["account_id"])
    r = turn(proxy, t["access_token"], a["account_id"])
    assert r.status_code == 200 and "response.completed" in r.text
    assert [(o.status, o.five_hour, o.seven_day) for o in seen] == [("allowed", 30.0, 4.0)]
    assert fake.log("responses")[-1]["token_sha8"] == fake.sha8(t["access_token"])


def test_a_limit_refusal_reaches_the_tool_whole_and_is_seen_as_quota(fake, proxy, seen) -> None:
    a = fake.add_account(plan_type="plus")
    t = fake.mint(a["account_id"])
    fake.set_responses(a["account_id"], "limit", resets_in_seconds=3600)
    before = time.time()
    r = turn(proxy, t["access_token"], a["account_id"])
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "usage_limit_reached"  # the body the proxy read, relayed
    quota = seen[-1].quota
    assert quota is not None and quota.reset_at is not None
    assert before + 3500 < quota.reset_at < time.time() + 3700


def test_the_proxy_relays_to_the_chatgpt_host_only(fake, proxy) -> None:
    port = int(proxy.url.rsplit(":", 1)[1])

    def first_line(target: str) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: evil.example\r\n\r\n".encode())
            return s.recv(4096).split(b"\r\n")[0]

    for target in ("http://evil.example/x", "evil.example:443"):
        assert first_line(target) == b"HTTP/1.1 400 Bad Request", target
    # A path that looks like an authority is still a path on the ChatGPT host.
    assert first_line("//evil.example/x") == b"HTTP/1.1 404 Not Found"
    assert [e["path"].lstrip("/") for e in fake.log("not_found")] == ["evil.example/x"]

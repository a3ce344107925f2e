"""Tests of the fake Anthropic server itself: the other tests rely on its fidelity."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.fake_anthropic import CLAUDE_CODE_SCOPES, CLIENT_ID, MANUAL_REDIRECT_URI, OAUTH_BETA
from tests.fake_anthropic.client import REPO_ROOT, FakeAnthropic, FakeAnthropicError
from tests.fake_anthropic.pytest_plugin import fake_anthropic  # noqa: F401  (fixture)

LOOPBACK = "http://localhost:54545/callback"
ISO_MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


# ----- helpers -----


@pytest.fixture
def fake(fake_anthropic: FakeAnthropic) -> FakeAnthropic:  # noqa: F811
    return fake_anthropic


@pytest.fixture
def http(fake: FakeAnthropic) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, timeout=10) as client:
        yield client


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(challenge: str, state: str, redirect_uri: str = LOOPBACK) -> dict[str, str]:
    return {
        "code": "true",
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": " ".join(CLAUDE_CODE_SCOPES),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
    }


def login(http: httpx.Client, redirect_uri: str = LOOPBACK) -> dict[str, str]:
    """Authorize in the 'browser'; returns code, state, verifier and redirect_uri."""
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(24)
    r = http.get("/oauth/authorize", params=authorize_params(challenge, state, redirect_uri))
    if redirect_uri == MANUAL_REDIRECT_URI:
        assert r.status_code == 200
        code, _, echoed = r.headers["X-Fake-Code"].partition("#")
    else:
        assert r.status_code == 302
        query = parse_qs(urlsplit(r.headers["Location"]).query)
        code, echoed = query["code"][0], query["state"][0]
    assert echoed == state
    return {"code": code, "state": state, "code_verifier": verifier, "redirect_uri": redirect_uri}


def exchange(http: httpx.Client, grant: dict[str, str], **override: str) -> httpx.Response:
    body = {"grant_type": "authorization_code", "client_id": CLIENT_ID, **grant, **override}
    return http.post("/v1/oauth/token", json=body)


def refresh(http: httpx.Client, token: str, **extra: str) -> httpx.Response:
    body = {"grant_type": "refresh_token", "refresh_token": token, "client_id": CLIENT_ID}
    return http.post("/v1/oauth/token", json={**body, **extra})


def oauth_headers(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}", "anthropic-beta": OAUTH_BETA}


def messages_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


# ----- process -----


@pytest.mark.parametrize(
    "command",
    [["-m", "tests.fake_anthropic"], ["tests/fake_anthropic/server.py"]],
    ids=["module", "script"],
)
def test_server_prints_its_port_and_serves(command: list[str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, *command, "--port", "0"], cwd=REPO_ROOT, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert re.fullmatch(r"PORT \d+\n", line)
        port = int(line.split()[1])
        r = httpx.get(f"http://127.0.0.1:{port}/_admin/stats", timeout=5)
        assert r.status_code == 200
    finally:
        proc.kill()
        proc.wait()


def test_client_exposes_urls_and_env(fake: FakeAnthropic) -> None:
    assert fake.base_url == f"http://127.0.0.1:{fake.port}"
    assert fake.env() == {
        "ACCT_API_BASE": fake.base_url,
        "ACCT_TOKEN_URL": fake.base_url + "/v1/oauth/token",
        "ACCT_AUTHORIZE_URL": fake.base_url + "/oauth/authorize",
    }
    fake.stop()
    assert not fake.running


# ----- authorize + code exchange -----


def test_pkce_login_with_loopback_redirect(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account(email="work@example.com", plan="claude_max")
    grant = login(http)
    r = exchange(http, grant)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["token_type"] == "Bearer"
    assert answer["access_token"].startswith("sk-ant-oat01-")
    assert answer["refresh_token"].startswith("sk-ant-ort01-")
    assert answer["expires_in"] == 28800
    assert answer["scope"] == " ".join(CLAUDE_CODE_SCOPES)
    assert answer["account"] == {"uuid": account["uuid"], "email_address": "work@example.com"}
    assert answer["organization"] == {"uuid": account["org_uuid"], "name": account["org_name"]}
    # The code is single use.
    again = exchange(http, grant)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert fake.stats()["token_code"] == 2


def test_manual_flow_shows_code_hash_state(fake: FakeAnthropic, http: httpx.Client) -> None:
    fake.add_account(email="a@example.com")
    verifier, challenge = pkce()
    r = http.get(
        "/oauth/authorize", params=authorize_params(challenge, "st4te", MANUAL_REDIRECT_URI)
    )
    assert r.status_code == 200
    pasted = r.headers["X-Fake-Code"]
    assert pasted.endswith("#st4te")
    assert pasted in r.text.splitlines()
    code = pasted.split("#")[0]
    grant = {
        "code": code,
        "state": "st4te",
        "code_verifier": verifier,
        "redirect_uri": MANUAL_REDIRECT_URI,
    }
    assert exchange(http, grant).status_code == 200


@pytest.mark.parametrize(
    "override",
    [
        {"code_verifier": "x" * 50},
        {"redirect_uri": "http://localhost:1/callback"},
        {"state": "not-the-state"},
        {"code": "no-such-code"},
    ],
    ids=["verifier", "redirect_uri", "state", "code"],
)
def test_code_exchange_refuses_mismatches(
    fake: FakeAnthropic, http: httpx.Client, override: dict[str, str]
) -> None:
    fake.add_account()
    grant = login(http)
    r = exchange(http, grant, **override)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"
    # A refused attempt does not spend the code.
    assert exchange(http, grant).status_code == 200


def test_token_endpoint_refuses_unknown_client(fake: FakeAnthropic, http: httpx.Client) -> None:
    fake.add_account()
    r = exchange(http, login(http), client_id="someone-else")
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "change",
    [
        {"client_id": "nope"},
        {"code": None},
        {"code_challenge_method": "plain"},
        {"state": None},
        {"redirect_uri": "https://evil.example/callback"},
    ],
    ids=["client_id", "code=true", "method", "state", "redirect_uri"],
)
def test_authorize_validates_parameters(
    fake: FakeAnthropic, http: httpx.Client, change: dict[str, Any]
) -> None:
    fake.add_account()
    params: dict[str, Any] = {**authorize_params(pkce()[1], "s"), **change}
    r = http.get("/oauth/authorize", params={k: v for k, v in params.items() if v is not None})
    assert r.status_code == 400
    assert "invalid authorization request" in r.text


def test_next_login_and_login_hint_choose_the_account(
    fake: FakeAnthropic, http: httpx.Client
) -> None:
    first = fake.add_account(email="first@example.com")
    second = fake.add_account(email="second@example.com")
    assert exchange(http, login(http)).json()["account"]["uuid"] == first["uuid"]

    hinted = fake.authorize_code(
        redirect_uri=LOOPBACK, code_challenge=pkce()[1], state="s", login_hint="second@example.com"
    )
    assert hinted["account_uuid"] == second["uuid"]

    fake.next_login(second["uuid"])
    assert exchange(http, login(http)).json()["account"]["uuid"] == second["uuid"]


def test_authorize_code_admin_and_open_authorize(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    verifier, challenge = pkce()
    got = fake.authorize_code(redirect_uri=LOOPBACK, code_challenge=challenge, state="abc")
    grant = {
        "code": got["code"],
        "state": "abc",
        "code_verifier": verifier,
        "redirect_uri": LOOPBACK,
    }
    assert exchange(http, grant).json()["account"]["uuid"] == account["uuid"]

    # open_authorize acts as the browser for a URL on any host (e.g. the real one).
    verifier, challenge = pkce()
    url = "https://claude.com/cai/oauth/authorize?" + urlencode(
        authorize_params(challenge, "xyz", MANUAL_REDIRECT_URI)
    )
    seen = fake.open_authorize(url)
    assert seen["state"] == "xyz" and seen["paste"] == f"{seen['code']}#xyz"
    with pytest.raises(FakeAnthropicError):
        fake.authorize_code(redirect_uri=LOOPBACK, code_challenge=challenge)  # no state


# ----- refresh: rotation and reuse -----


def test_refresh_rotates_tokens(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    first = fake.mint(account["uuid"])
    r = refresh(http, first["refresh_token"], scope=" ".join(CLAUDE_CODE_SCOPES))
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["account"]["uuid"] == account["uuid"]
    lineage = fake.lineage(uuid=account["uuid"])
    assert lineage["revoked"] is False
    assert lineage["live_refresh_sha8"] == fake.sha8(second["refresh_token"])
    assert lineage["refresh_count"] == 1
    assert fake.lineage(refresh_token=first["refresh_token"])["lineage_id"] == lineage["lineage_id"]
    # The new refresh token rotates in turn.
    assert refresh(http, second["refresh_token"]).status_code == 200
    assert http.get("/api/oauth/profile", headers=oauth_headers(second["access_token"])).is_success


def test_reusing_a_spent_refresh_token_revokes_the_whole_chain(
    fake: FakeAnthropic, http: httpx.Client
) -> None:
    account = fake.add_account()
    first = fake.mint(account["uuid"])
    newest = refresh(http, first["refresh_token"]).json()
    assert http.get("/api/oauth/usage", headers=oauth_headers(newest["access_token"])).is_success

    reuse = refresh(http, first["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    assert "error_description" in reuse.json()

    # Everything of the chain is dead now, the newest pair included.
    assert refresh(http, newest["refresh_token"]).json()["error"] == "invalid_grant"
    r = http.get("/api/oauth/usage", headers=oauth_headers(newest["access_token"]))
    assert r.status_code == 401
    assert r.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Invalid bearer token"},
    }
    lineage = fake.lineage(uuid=account["uuid"])
    assert lineage["revoked"] is True and lineage["live_refresh_sha8"] is None
    # A second login starts a new, healthy lineage.
    fresh = fake.mint(account["uuid"])
    assert refresh(http, fresh["refresh_token"]).status_code == 200


def test_two_holders_refreshing_at_once_kill_the_lineage(
    fake: FakeAnthropic, http: httpx.Client
) -> None:
    account = fake.add_account()
    token = fake.mint(account["uuid"])["refresh_token"]
    statuses: list[int] = []

    def spend() -> None:
        with httpx.Client(base_url=fake.base_url, timeout=10) as client:
            statuses.append(refresh(client, token).status_code)

    threads = [threading.Thread(target=spend) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 400]
    assert fake.lineage(uuid=account["uuid"])["revoked"] is True


def test_unknown_refresh_token_and_form_encoding(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    assert refresh(http, "sk-ant-ort01-unknown").json()["error"] == "invalid_grant"
    token = fake.mint(account["uuid"])["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": CLIENT_ID}
    r = http.post("/v1/oauth/token", data=form)
    assert r.status_code == 200
    entry = fake.log("token_refresh")[-1]
    assert entry["grant_type"] == "refresh_token"
    assert entry["token_sha8"] == fake.sha8(token)
    assert entry["account_uuid"] == account["uuid"]


def test_refresh_scope_beyond_the_grant_is_refused(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    token = fake.mint(account["uuid"], scopes=["user:inference", "user:profile"])["refresh_token"]
    r = refresh(http, token, scope="user:inference org:create_api_key")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    fake.configure(reject_refresh_scope=True)
    assert refresh(http, token, scope="user:inference").json()["error"] == "invalid_scope"
    assert refresh(http, token).status_code == 200


def test_answer_without_refresh_token_keeps_the_old_one_live(
    fake: FakeAnthropic, http: httpx.Client
) -> None:
    account = fake.add_account()
    token = fake.mint(account["uuid"])["refresh_token"]
    fake.configure(omit_refresh_token=True, expires_in=60)
    answer = refresh(http, token).json()
    assert "refresh_token" not in answer and answer["expires_in"] == 60
    assert refresh(http, token).status_code == 200


def test_configured_token_failures_are_transient(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    token = fake.mint(account["uuid"])["refresh_token"]
    fake.configure(token_fail_status=503, token_fail_times=1)
    assert refresh(http, token).status_code == 503
    assert refresh(http, token).status_code == 200  # the token was not spent by the failure
    assert fake.stats()["token_refresh"] == 2


# ----- usage and profile -----


def test_usage_default_shape(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    access = fake.mint(account["uuid"])["access_token"]
    doc = http.get("/api/oauth/usage", headers=oauth_headers(access)).json()
    assert set(doc) == {
        "five_hour",
        "seven_day",
        "seven_day_opus",
        "seven_day_sonnet",
        "seven_day_oauth_apps",
        "extra_usage",
        "limits",
    }
    assert doc["seven_day_opus"] is None and doc["seven_day_sonnet"] is None
    assert doc["five_hour"]["utilization"] == 0.0
    assert ISO_MICRO.match(doc["five_hour"]["resets_at"])
    assert ISO_MICRO.match(doc["seven_day"]["resets_at"])
    assert doc["extra_usage"] == {
        "is_enabled": False,
        "monthly_limit": None,
        "used_credits": None,
        "utilization": None,
    }
    assert [limit["kind"] for limit in doc["limits"]] == ["session", "weekly_all"]


def test_usage_values_and_resets_jitter(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    access = fake.mint(account["uuid"])["access_token"]
    reset = datetime(2030, 1, 1, 12, 0, 0, 288792, tzinfo=UTC)
    fake.set_usage(
        account["uuid"],
        five_hour=19.0,
        seven_day=40.0,
        five_hour_resets_at=reset,
        seven_day_resets_at=None,
        weekly_scoped={"Opus": 100},
    )
    seen = []
    for _ in range(5):
        doc = http.get("/api/oauth/usage", headers=oauth_headers(access)).json()
        assert doc["five_hour"]["utilization"] == 19.0
        assert doc["seven_day"] == {"utilization": 40.0, "resets_at": None}
        seen.append(datetime.fromisoformat(doc["five_hour"]["resets_at"]))
        assert doc["limits"][0] == {
            "kind": "session",
            "percent": 19,
            "resets_at": doc["five_hour"]["resets_at"],
        }
        assert doc["limits"][2]["scope"] == {"model": {"display_name": "Opus"}}
    assert all(abs(s - reset) <= timedelta(seconds=1) for s in seen)
    assert len(set(seen)) > 1


def test_usage_variants(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    access = fake.mint(account["uuid"])["access_token"]
    fake.set_usage(account["uuid"], five_hour=7, seven_day=72, variant="limits_only")
    doc = http.get("/api/oauth/usage", headers=oauth_headers(access)).json()
    assert set(doc) == {"limits"}
    assert [(x["kind"], x["percent"]) for x in doc["limits"]] == [
        ("session", 7),
        ("weekly_all", 72),
    ]
    fake.set_usage(account["uuid"], variant="nulls")
    doc = http.get("/api/oauth/usage", headers=oauth_headers(access)).json()
    assert doc["five_hour"] is None and doc["seven_day"] is None
    fake.set_usage(account["uuid"], document={"five_hour": None})
    assert http.get("/api/oauth/usage", headers=oauth_headers(access)).json() == {"five_hour": None}


def test_usage_is_throttled_per_account(fake: FakeAnthropic, http: httpx.Client) -> None:
    a, b = fake.add_account(), fake.add_account()
    access_a = fake.mint(a["uuid"])["access_token"]
    access_b = fake.mint(b["uuid"])["access_token"]
    fake.configure(usage_limit=3)
    for _ in range(3):
        assert http.get("/api/oauth/usage", headers=oauth_headers(access_a)).status_code == 200
    r = http.get("/api/oauth/usage", headers=oauth_headers(access_a))
    assert r.status_code == 429
    assert r.headers["retry-after"] == "0"
    assert r.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Rate limited"},
    }
    # Another lineage of the same account shares the budget; another account does not.
    other_lineage = fake.mint(a["uuid"])["access_token"]
    assert http.get("/api/oauth/usage", headers=oauth_headers(other_lineage)).status_code == 429
    assert http.get("/api/oauth/usage", headers=oauth_headers(access_b)).status_code == 200
    fake.reset_throttle(a["uuid"])
    assert http.get("/api/oauth/usage", headers=oauth_headers(access_a)).status_code == 200
    assert fake.stats()["usage"] == 7


def test_usage_throttle_window_slides(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    access = fake.mint(account["uuid"])["access_token"]
    fake.configure(usage_limit=1, usage_window_s=0.5)
    assert http.get("/api/oauth/usage", headers=oauth_headers(access)).status_code == 200
    assert http.get("/api/oauth/usage", headers=oauth_headers(access)).status_code == 429
    time.sleep(0.6)
    assert http.get("/api/oauth/usage", headers=oauth_headers(access)).status_code == 200


def test_usage_needs_the_beta_header_and_both_need_a_valid_token(
    fake: FakeAnthropic, http: httpx.Client
) -> None:
    account = fake.add_account()
    access = fake.mint(account["uuid"])["access_token"]
    assert (
        http.get("/api/oauth/usage", headers={"Authorization": f"Bearer {access}"}).status_code
        == 400
    )
    # The real Claude Code fetches the profile with a bare bearer token, and it works.
    assert (
        http.get("/api/oauth/profile", headers={"Authorization": f"Bearer {access}"}).status_code
        == 200
    )
    for path in ("/api/oauth/usage", "/api/oauth/profile"):
        assert http.get(path, headers=oauth_headers("sk-ant-oat01-bogus")).status_code == 401
    expired = fake.mint(account["uuid"], expires_in=0)["access_token"]
    r = http.get("/api/oauth/usage", headers=oauth_headers(expired))
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"


def test_setup_token_gets_403_on_usage_and_profile(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    setup = fake.mint(account["uuid"], scopes=["user:inference"])
    assert setup["scope"] == "user:inference"
    for path in ("/api/oauth/usage", "/api/oauth/profile"):
        r = http.get(path, headers=oauth_headers(setup["access_token"]))
        assert r.status_code == 403
        assert r.json()["error"]["type"] == "permission_error"
    # It still works for inference.
    r = http.post(
        "/v1/messages", headers=oauth_headers(setup["access_token"]), json=messages_body()
    )
    assert r.status_code == 200


def test_profile_shape(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account(email="pro@example.com", plan="claude_pro", display_name="Pro")
    access = fake.mint(account["uuid"])["access_token"]
    r = http.get("/api/oauth/profile", headers=oauth_headers(access))
    assert r.json() == {
        "account": {"uuid": account["uuid"], "email": "pro@example.com", "display_name": "Pro"},
        "organization": {
            "uuid": account["org_uuid"],
            "name": account["org_name"],
            "organization_type": "claude_pro",
            "rate_limit_tier": account["rate_limit_tier"],
        },
    }
    assert fake.stats()["profile"] == 1


def test_usage_failures_latency_and_hang(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    access = fake.mint(account["uuid"])["access_token"]
    fake.configure(usage_fail_status=500, usage_fail_times=2)
    codes = [
        http.get("/api/oauth/usage", headers=oauth_headers(access)).status_code for _ in range(3)
    ]
    assert codes == [500, 500, 200]

    # Latency is served by concurrent threads: requests answered while a slow one is still
    # pending prove it, with no clock in the assertion.
    fake.configure(usage_latency_ms=3000)
    results: list[int] = []

    def poll() -> None:
        results.append(
            httpx.get(
                fake.base_url + "/api/oauth/usage", headers=oauth_headers(access), timeout=10
            ).status_code
        )

    arrived = len(fake.log("usage"))
    slow = threading.Thread(target=poll)
    slow.start()
    while len(fake.log("usage")) == arrived:  # the log records a request when it arrives
        time.sleep(0.02)
    fake.configure(usage_latency_ms=0)
    assert http.get("/api/oauth/usage", headers=oauth_headers(access)).status_code == 200
    assert slow.is_alive(), "a fast request had to wait for the slow one"
    slow.join()
    assert results == [200]

    fake.configure(usage_latency_ms=0, usage_hang_s=5)
    with pytest.raises(httpx.TimeoutException):
        httpx.get(fake.base_url + "/api/oauth/usage", headers=oauth_headers(access), timeout=0.3)


# ----- /v1/messages -----


def test_messages_ok_carries_unified_headers(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account(email="ok@example.com")
    access = fake.mint(account["uuid"])["access_token"]
    fake.set_usage(account["uuid"], five_hour=19.0, seven_day=40.0)
    r = http.post("/v1/messages?beta=true", headers=oauth_headers(access), json=messages_body())
    assert r.status_code == 200
    message = r.json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": "Hello from ok@example.com"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] > 0
    assert r.headers["anthropic-ratelimit-unified-status"] == "allowed"
    assert float(r.headers["anthropic-ratelimit-unified-5h-utilization"]) == 0.19
    assert float(r.headers["anthropic-ratelimit-unified-7d-utilization"]) == 0.40
    assert r.headers["anthropic-ratelimit-unified-representative-claim"] == "five_hour"
    assert int(r.headers["anthropic-ratelimit-unified-reset"]) > time.time()

    entry = fake.log("messages")[-1]
    assert entry["account_uuid"] == account["uuid"]
    assert entry["token_sha8"] == fake.sha8(access)
    assert entry["path"] == "/v1/messages" and entry["status"] == 200
    assert abs(entry["t"] - time.time()) < 5
    assert fake.stats()["messages"] == 1


def test_messages_stream_is_a_faithful_sse_sequence(
    fake: FakeAnthropic, http: httpx.Client
) -> None:
    account = fake.add_account(email="sse@example.com")
    access = fake.mint(account["uuid"])["access_token"]
    r = http.post("/v1/messages", headers=oauth_headers(access), json=messages_body(stream=True))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in r.text.strip().split("\n\n"):
        name_line, data_line = block.split("\n")
        name = name_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append(data)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == "Hello from sse@example.com"
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] > 0


def test_messages_quota_rejection(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    access = fake.mint(account["uuid"])["access_token"]
    fake.set_messages(account["uuid"], "quota", reset_epoch=2_000_000_000)
    r = http.post("/v1/messages", headers=oauth_headers(access), json=messages_body())
    assert r.status_code == 429
    assert r.headers["anthropic-ratelimit-unified-status"] == "rejected"
    assert r.headers["anthropic-ratelimit-unified-reset"] == "2000000000"
    assert r.headers["anthropic-ratelimit-unified-representative-claim"] == "five_hour"
    assert r.json()["error"]["type"] == "rate_limit_error"

    fake.set_messages(account["uuid"], "quota", claim="seven_day")
    r = http.post("/v1/messages", headers=oauth_headers(access), json=messages_body())
    assert r.headers["anthropic-ratelimit-unified-representative-claim"] == "seven_day"
    assert abs(int(r.headers["anthropic-ratelimit-unified-reset"]) - (time.time() + 3600)) < 10


def test_messages_throttle_has_no_unified_headers(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    access = fake.mint(account["uuid"])["access_token"]
    fake.set_messages(account["uuid"], "throttle")
    r = http.post("/v1/messages", headers=oauth_headers(access), json=messages_body())
    assert r.status_code == 429
    assert r.headers["retry-after"] == "0"
    assert not [h for h in r.headers if h.startswith("anthropic-ratelimit-unified")]
    assert r.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Server is temporarily limiting requests"},
    }


def test_messages_auth(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account(email="key@example.com")
    access = fake.mint(account["uuid"])["access_token"]
    r = http.post("/v1/messages", headers=oauth_headers("sk-ant-oat01-nope"), json=messages_body())
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"

    key = fake.api_key(account["uuid"])
    r = http.post("/v1/messages", headers={"x-api-key": key}, json=messages_body())
    assert r.status_code == 200 and "key@example.com" in r.json()["content"][0]["text"]
    # An OAuth token is not an API key.
    assert (
        http.post("/v1/messages", headers={"x-api-key": access}, json=messages_body()).status_code
        == 401
    )

    fake.set_messages(account["uuid"], "unauthorized")
    r = http.post("/v1/messages", headers=oauth_headers(access), json=messages_body())
    assert r.status_code == 401

    fake.set_messages(account["uuid"], "ok")
    fake.revoke(account["uuid"])
    r = http.post("/v1/messages", headers=oauth_headers(access), json=messages_body())
    assert r.status_code == 401


def test_messages_overage_answers_200_with_status_rejected(
    fake: FakeAnthropic, http: httpx.Client
) -> None:
    account = fake.add_account()
    access = fake.mint(account["uuid"])["access_token"]
    fake.set_messages(account["uuid"], "overage")
    r = http.post("/v1/messages", headers=oauth_headers(access), json=messages_body())
    assert r.status_code == 200
    assert r.headers["anthropic-ratelimit-unified-status"] == "rejected"
    assert r.headers["anthropic-ratelimit-unified-overage-in-use"] == "true"


# ----- admin -----


def test_admin_rejects_unknown_settings(fake: FakeAnthropic) -> None:
    with pytest.raises(FakeAnthropicError, match="unknown config keys"):
        fake.configure(usage_limt=3)
    with pytest.raises(FakeAnthropicError, match="404"):
        fake.mint("no-such-account")
    with pytest.raises(FakeAnthropicError, match="mode must be one of"):
        account = fake.add_account()
        fake.set_messages(account["uuid"], "sideways")


def test_log_and_reset_log(fake: FakeAnthropic, http: httpx.Client) -> None:
    account = fake.add_account()
    grant = login(http)
    exchange(http, grant)
    kinds = [e["kind"] for e in fake.log()]
    assert kinds == ["authorize", "token_code"]
    assert fake.log()[0]["account_uuid"] == account["uuid"]
    fake.reset_log()
    assert fake.log() == []
    assert fake.stats() == {
        "token_refresh": 0,
        "token_code": 0,
        "usage": 0,
        "profile": 0,
        "messages": 0,
    }

"""Tests of the fake ChatGPT server itself: the ChatGPT tests rely on its fidelity."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.fake_chatgpt import AUTH_CLAIM, CLIENT_ID
from tests.fake_chatgpt.client import FakeChatGPT, FakeChatGPTError

REDIRECT = "http://localhost:1455/auth/callback"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeChatGPT]:
    with FakeChatGPT() as server:
        yield server


@pytest.fixture
def http(fake: FakeChatGPT) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, timeout=10) as client:
        yield client


@pytest.fixture
def account(fake: FakeChatGPT) -> dict[str, Any]:
    return fake.add_account(email=f"{secrets.token_hex(4)}@example.com", plan_type="plus")


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def refresh(http: httpx.Client, token: str) -> httpx.Response:
    body = {"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": token}
    return http.post("/oauth/token", json=body)


def bearer(tokens: dict[str, Any], account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}", "ChatGPT-Account-Id": account_id}


# ----- OAuth -----


def test_login_with_pkce_gives_tokens_whose_id_token_names_the_account(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    fake.next_login(account["account_id"])
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "openid profile email offline_access",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        "state": "st-123",
    }
    got = fake.open_authorize("https://auth.openai.com/oauth/authorize?" + urlencode(params))
    assert got["status"] == 302 and got["state"] == "st-123"
    assert got["location"].startswith(REDIRECT + "?")
    body = {
        "grant_type": "authorization_code",
        "code": got["code"],
        "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
    }
    answer = http.post("/oauth/token", data=body)
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    c = claims(doc["id_token"])
    assert c["email"] == account["email"]
    assert c[AUTH_CLAIM]["chatgpt_account_id"] == account["account_id"]
    assert c[AUTH_CLAIM]["chatgpt_plan_type"] == "plus"
    assert claims(doc["access_token"])["exp"] > time.time()
    # the code is single-use
    assert http.post("/oauth/token", data=body).json()["error"]["code"] == "invalid_grant"


def test_code_exchange_with_a_wrong_verifier_is_refused(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    fake.next_login(account["account_id"])
    challenge = base64.urlsafe_b64encode(hashlib.sha256(b"x" * 43).digest()).rstrip(b"=")
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
        "state": "s",
    }
    got = fake.open_authorize("http://x/oauth/authorize?" + urlencode(params))
    body = {
        "grant_type": "authorization_code",
        "code": got["code"],
        "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID,
        "code_verifier": "y" * 43,
    }
    answer = http.post("/oauth/token", data=body)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_grant"


def test_authorize_without_pkce_or_with_another_client_is_refused(fake: FakeChatGPT) -> None:
    base = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "state": "s",
    }
    assert fake.open_authorize("http://x/?" + urlencode(base))["status"] == 400
    other = {
        **base,
        "client_id": "app_other",
        "code_challenge": "a" * 43,
        "code_challenge_method": "S256",
    }
    assert fake.open_authorize("http://x/?" + urlencode(other))["status"] == 400


def test_refresh_rotates_and_the_spent_token_is_single_use(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    first = fake.mint(account["account_id"])
    second = refresh(http, first["refresh_token"])
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    assert fake.lineage(refresh_token=first["refresh_token"])["refresh_count"] == 1


def test_reusing_a_spent_refresh_token_revokes_the_whole_chain(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    first = fake.mint(account["account_id"])
    second = refresh(http, first["refresh_token"]).json()
    reused = refresh(http, first["refresh_token"])
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "refresh_token_reused"
    assert fake.lineage(refresh_token=first["refresh_token"])["revoked"] is True
    # the newest refresh token and its access token die with the chain
    after = refresh(http, second["refresh_token"])
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "refresh_token_invalidated"
    usage = http.get("/backend-api/wham/usage", headers=bearer(second, account["account_id"]))
    assert usage.status_code == 401


def test_configured_token_failure_answers_5xx_then_recovers(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    first = fake.mint(account["account_id"])
    fake.configure(token_fail_status=503, token_fail_times=1)
    assert refresh(http, first["refresh_token"]).status_code == 503
    assert refresh(http, first["refresh_token"]).status_code == 200


def test_unknown_admin_setting_is_an_error(fake: FakeChatGPT) -> None:
    with pytest.raises(FakeChatGPTError):
        fake.configure(no_such_setting=1)


# ----- usage -----


def test_wham_usage_has_two_windows_with_their_lengths(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    tokens = fake.mint(account["account_id"])
    fake.set_usage(account["account_id"], primary=42.0, secondary=7.5)
    doc = http.get("/backend-api/wham/usage", headers=bearer(tokens, account["account_id"])).json()
    assert doc["plan_type"] == "plus"
    primary, secondary = doc["rate_limit"]["primary_window"], doc["rate_limit"]["secondary_window"]
    assert (primary["used_percent"], primary["limit_window_seconds"]) == (42.0, 18000)
    assert (secondary["used_percent"], secondary["limit_window_seconds"]) == (7.5, 604800)
    assert primary["reset_at"] > time.time()


def test_wham_usage_needs_the_account_header_of_the_token(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    tokens = fake.mint(account["account_id"])
    headers = bearer(tokens, "someone-else")
    assert http.get("/backend-api/wham/usage", headers=headers).status_code == 403


def test_wham_usage_is_throttled_per_account(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    other = fake.add_account(plan_type="pro")
    mine, theirs = fake.mint(account["account_id"]), fake.mint(other["account_id"])
    fake.configure(usage_limit=2)
    try:
        url = "/backend-api/wham/usage"
        codes = [
            http.get(url, headers=bearer(mine, account["account_id"])).status_code for _ in range(3)
        ]
        assert codes == [200, 200, 429]
        assert http.get(url, headers=bearer(theirs, other["account_id"])).status_code == 200
    finally:
        fake.configure(usage_limit=30)


def test_accounts_check_names_the_tokens_workspace_with_an_https_origin(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    """The workspace routing discovery of the interactive Codex: exactly one entry with the
    login's account id, a bare https origin and a known routing override."""
    tokens = fake.mint(account["account_id"])
    url = "/backend-api/wham/accounts/check"
    doc = http.get(url, headers=bearer(tokens, account["account_id"])).json()
    mine = [e for e in doc["accounts"] if e["id"] == account["account_id"]]
    assert len(mine) == 1
    assert mine[0]["workspace_backend_origin"] == "https://chatgpt.com"
    assert mine[0]["account_routing_override"] in ("NO_CONSTRAINT", "us", "us_cr")
    assert doc["account_ordering"] == [account["account_id"]]


def test_accounts_check_refuses_a_missing_bearer_or_another_workspace(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    url = "/backend-api/wham/accounts/check"
    assert http.get(url).status_code == 401
    tokens = fake.mint(account["account_id"])
    assert http.get(url, headers=bearer(tokens, "someone-else")).status_code == 403


# ----- Responses API -----


def test_responses_stream_sse_with_live_usage_headers(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    tokens = fake.mint(account["account_id"])
    fake.set_usage(account["account_id"], primary=12.0, secondary=3.0)
    r = http.post(
        "/backend-api/codex/responses",
        headers=bearer(tokens, account["account_id"]),
        json={"model": "gpt-5.5", "input": [], "stream": True},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert r.headers["x-codex-primary-used-percent"] == "12.0"
    assert r.headers["x-codex-primary-window-minutes"] == "300"
    assert r.headers["x-codex-secondary-window-minutes"] == "10080"
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"


def test_responses_on_a_limit_answer_429_usage_limit_reached(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    tokens = fake.mint(account["account_id"])
    fake.set_usage(account["account_id"], primary=100.0)
    fake.set_responses(account["account_id"], "limit", resets_in_seconds=600)
    r = http.post(
        "/backend-api/codex/responses",
        headers=bearer(tokens, account["account_id"]),
        json={"model": "gpt-5.5"},
    )
    assert r.status_code == 429
    err = r.json()["error"]
    assert err["type"] == "usage_limit_reached" and err["resets_in_seconds"] == 600
    assert abs(err["resets_at"] - (time.time() + 600)) < 60
    assert r.headers["x-codex-primary-used-percent"] == "100.0"
    fake.set_responses(account["account_id"], "throttle")
    r = http.post(
        "/backend-api/codex/responses",
        headers=bearer(tokens, account["account_id"]),
        json={"model": "gpt-5.5"},
    )
    assert r.status_code == 429 and r.json()["error"]["type"] != "usage_limit_reached"


def test_the_log_never_holds_a_token(
    fake: FakeChatGPT, http: httpx.Client, account: dict[str, Any]
) -> None:
    tokens = fake.mint(account["account_id"])
    http.get("/backend-api/wham/usage", headers=bearer(tokens, account["account_id"]))
    refresh(http, tokens["refresh_token"])
    dumped = json.dumps(fake.log())
    for secret in (tokens["access_token"], tokens["refresh_token"]):
        assert secret not in dumped
    assert fake.sha8(tokens["access_token"]) in dumped

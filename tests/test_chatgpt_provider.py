"""The ChatGPT provider (acct.services.providers.chatgpt) against the fake ChatGPT server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from acct.base.errors import AuthError, NeedsLogin, NetworkError, RateLimited
from acct.base.models import Tokens
from acct.services.oauth import new_pkce, new_state
from acct.services.providers import chatgpt
from acct.services.providers.chatgpt import ChatGPTEndpoints
from tests.fake_chatgpt.client import FakeChatGPT


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeChatGPT]:
    with FakeChatGPT() as server:
        yield server


@pytest.fixture
def endpoints(fake: FakeChatGPT) -> ChatGPTEndpoints:
    return ChatGPTEndpoints.from_env(fake.env())


@pytest.fixture
def account(fake: FakeChatGPT) -> dict[str, Any]:
    return fake.add_account(email="work@example.com", plan_type="pro")


def stored(minted: dict[str, Any]) -> Tokens:
    return Tokens(
        minted["access_token"],
        minted["refresh_token"],
        int(time.time()) + 3600,
        extra={"id_token": minted["id_token"]},
    )


def test_endpoints_default_to_openai_and_move_with_the_environment() -> None:
    d = ChatGPTEndpoints.from_env({})
    assert d.token_url == "https://auth.openai.com/oauth/token"
    assert d.usage_url == "https://chatgpt.com/backend-api/wham/usage"
    moved = ChatGPTEndpoints.from_env(
        {
            "ACCT_CHATGPT_AUTH_BASE": "http://127.0.0.1:9/",
            "ACCT_CHATGPT_API_BASE": "http://127.0.0.1:9/b",
        }
    )
    assert moved.authorize_url == "http://127.0.0.1:9/oauth/authorize"
    assert moved.usage_url == "http://127.0.0.1:9/b/wham/usage"


def test_authorize_url_carries_pkce_and_a_state_apart_from_the_verifier(
    endpoints: ChatGPTEndpoints,
) -> None:
    pkce, state = new_pkce(), new_state()
    url = chatgpt.authorize_url(endpoints, pkce.challenge, state)
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q["client_id"] == chatgpt.CLIENT_ID
    assert q["redirect_uri"] == "http://localhost:1455/auth/callback"
    assert q["code_challenge"] == pkce.challenge and q["code_challenge_method"] == "S256"
    assert q["state"] == state and pkce.verifier not in url
    assert "offline_access" in q["scope"].split()


def test_login_round_trip_gives_tokens_and_identity(
    fake: FakeChatGPT, endpoints: ChatGPTEndpoints, account: dict[str, Any]
) -> None:
    fake.next_login(account["account_id"])
    pkce, state = new_pkce(), new_state()
    got = fake.open_authorize(chatgpt.authorize_url(endpoints, pkce.challenge, state))
    assert got["state"] == state
    answer = chatgpt.exchange_code(endpoints, got["code"], pkce.verifier)
    assert answer.account_id == account["account_id"]
    assert answer.claims.email == "work@example.com" and answer.claims.plan_type == "pro"
    tokens = answer.tokens()
    assert tokens.refresh and tokens.extra["id_token"] == answer.id_token
    assert tokens.expires_at > time.time() + 3600


def test_a_refused_code_is_an_auth_error(
    fake: FakeChatGPT, endpoints: ChatGPTEndpoints, account: dict[str, Any]
) -> None:
    fake.next_login(account["account_id"])
    pkce = new_pkce()
    got = fake.open_authorize(chatgpt.authorize_url(endpoints, pkce.challenge, new_state()))
    with pytest.raises(AuthError, match="refused"):
        chatgpt.exchange_code(endpoints, got["code"], new_pkce().verifier)


def test_refresh_rotates_and_keeps_the_id_token(
    fake: FakeChatGPT, endpoints: ChatGPTEndpoints, account: dict[str, Any]
) -> None:
    minted = fake.mint(account["account_id"])
    new = chatgpt.refresh(endpoints, stored(minted))
    assert new.refresh and new.refresh != minted["refresh_token"]
    assert new.account_id == account["account_id"]
    assert fake.lineage(refresh_token=minted["refresh_token"])["revoked"] is False


def test_refresh_with_a_spent_token_is_needs_login_and_the_chain_is_dead(
    fake: FakeChatGPT, endpoints: ChatGPTEndpoints, account: dict[str, Any]
) -> None:
    minted = fake.mint(account["account_id"])
    chatgpt.refresh(endpoints, stored(minted))
    with pytest.raises(NeedsLogin, match="refresh_token_reused"):
        chatgpt.refresh(endpoints, stored(minted))
    assert fake.lineage(refresh_token=minted["refresh_token"])["revoked"] is True


def test_refresh_5xx_is_a_network_error_and_spends_nothing(
    fake: FakeChatGPT, endpoints: ChatGPTEndpoints, account: dict[str, Any]
) -> None:
    minted = fake.mint(account["account_id"])
    fake.configure(token_fail_status=503, token_fail_times=1)
    with pytest.raises(NetworkError):
        chatgpt.refresh(endpoints, stored(minted))
    assert fake.lineage(refresh_token=minted["refresh_token"])["refresh_count"] == 0


def test_an_unreachable_token_endpoint_is_a_network_error() -> None:
    dead = ChatGPTEndpoints("http://127.0.0.1:9", "http://127.0.0.1:9")
    with pytest.raises(NetworkError, match="nothing was sent"):
        chatgpt.refresh(dead, Tokens("a", "r", 0), timeout=2)


def test_usage_reads_both_windows_with_their_labels(
    fake: FakeChatGPT, endpoints: ChatGPTEndpoints, account: dict[str, Any]
) -> None:
    minted = fake.mint(account["account_id"])
    fake.set_usage(account["account_id"], primary=55.0, secondary=20.0)
    got = chatgpt.fetch_usage(endpoints, minted["access_token"], account["account_id"])
    assert got.usage.five_hour is not None and got.usage.five_hour.utilization == 55.0
    assert got.usage.seven_day is not None and got.usage.seven_day.utilization == 20.0
    assert got.labels == {"five_hour": "5-hour", "seven_day": "7-day"}
    assert got.plan_type == "pro"
    sent = fake.log("usage")[-1]["headers"]
    assert sent["chatgpt-account-id"] == account["account_id"]


def test_usage_throttle_is_rate_limited_not_a_quota(
    fake: FakeChatGPT, endpoints: ChatGPTEndpoints, account: dict[str, Any]
) -> None:
    minted = fake.mint(account["account_id"])
    fake.configure(usage_limit=0)
    try:
        with pytest.raises(RateLimited) as caught:
            chatgpt.fetch_usage(endpoints, minted["access_token"], account["account_id"])
        assert caught.value.retry_after == 60
    finally:
        fake.configure(usage_limit=30)


def test_usage_with_a_revoked_token_is_an_auth_error(
    fake: FakeChatGPT, endpoints: ChatGPTEndpoints, account: dict[str, Any]
) -> None:
    minted = fake.mint(account["account_id"])
    fake.revoke(account["account_id"])
    with pytest.raises(AuthError):
        chatgpt.fetch_usage(endpoints, minted["access_token"], account["account_id"])


def test_a_refresh_answer_lost_after_sending_is_unanswered_not_a_plain_network_error(
    fake: FakeChatGPT, endpoints: ChatGPTEndpoints, account: dict[str, Any]
) -> None:
    minted = fake.mint(account["account_id"])
    fake.configure(token_delay_ms=3000)
    try:
        with pytest.raises(chatgpt.Unanswered, match="may be spent"):
            chatgpt.refresh(endpoints, stored(minted), timeout=0.5)
    finally:
        fake.configure(token_delay_ms=0)
    # ...and indeed the server rotated the lineage: the token in hand is spent.
    assert fake.lineage(refresh_token=minted["refresh_token"])["refresh_count"] == 1

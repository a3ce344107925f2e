"""acct.services.oauth in-process, against the fake Anthropic server (no mocks)."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from acct.app import accounts
from acct.base.endpoints import CLIENT_ID, MANUAL_REDIRECT_URI, SCOPES, Endpoints
from acct.base.errors import AuthError, NeedsLogin, NetworkError, UsageError
from acct.base.models import Tokens
from acct.services import oauth
from acct.services.context import Ctx
from tests.conftest import seed_account
from tests.fake_anthropic.client import FakeAnthropic


def test_pkce_pair_and_state() -> None:
    pair = oauth.new_pkce()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,128}", pair.verifier)
    digest = hashlib.sha256(pair.verifier.encode()).digest()
    assert pair.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert "=" not in pair.challenge and len(pair.challenge) == 43
    state = oauth.new_state()
    assert state != pair.verifier and state != oauth.new_state()
    assert pair.verifier not in repr(pair)


def test_authorize_url_has_exactly_the_claude_code_parameters() -> None:
    url = oauth.authorize_url(Endpoints(), "http://localhost:1234/callback", "CH", "ST")
    parts = urlsplit(url)
    assert (
        f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://claude.com/cai/oauth/authorize"
    )
    params = parse_qs(parts.query)
    assert {k: v[0] for k, v in params.items()} == {
        "code": "true",
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": "http://localhost:1234/callback",
        "scope": " ".join(SCOPES),
        "code_challenge": "CH",
        "code_challenge_method": "S256",
        "state": "ST",
    }
    hinted = parse_qs(
        urlsplit(oauth.authorize_url(Endpoints(), MANUAL_REDIRECT_URI, "CH", "ST", "a@b.c")).query
    )
    assert hinted["login_hint"] == ["a@b.c"]


@pytest.mark.parametrize(
    ("text", "code", "state"),
    [
        ("abc#def", "abc", "def"),
        ("  abc#def \n", "abc", "def"),
        ("http://localhost:5/callback?code=abc&state=def", "abc", "def"),
        ("https://platform.claude.com/oauth/code/callback?code=abc&state=def", "abc", "def"),
    ],
)
def test_parse_pasted(text: str, code: str, state: str) -> None:
    answer = oauth.parse_pasted(text)
    assert answer is not None and (answer.code, answer.state) == (code, state)


@pytest.mark.parametrize("text", ["abc", "abc#", "abc#  ", "http://localhost:5/callback?code=abc"])
def test_a_pasted_code_without_a_state_carries_none_to_check(text: str) -> None:
    """The caller refuses these: without the state nothing ties the code to this login."""
    answer = oauth.parse_pasted(text)
    assert answer is not None and answer.code == "abc" and answer.state is None


@pytest.mark.parametrize("text", ["", "   ", "http://localhost:5/callback?state=x", "#x"])
def test_parse_pasted_refuses_what_has_no_code(text: str) -> None:
    assert oauth.parse_pasted(text) is None


def test_token_answer_keeps_the_old_refresh_token_when_none_comes_back() -> None:
    answer = oauth.parse_token_answer(
        {"access_token": "a2", "expires_in": 100}, default_scopes=("s",), now=1000
    )
    old = Tokens("a1", "r1", 10, ("s",))
    assert answer.tokens(old) == Tokens("a2", "r1", 1100, ("s",), obtained_at=1000)


def test_printable_strips_control_characters() -> None:
    assert oauth.printable("access_denied\x1b[2J\x07\r\nx") == "access_denied[2Jx"
    assert len(oauth.printable("e" * 500)) == 100


def test_exchange_code_and_profile(fake: FakeAnthropic, ctx: Ctx) -> None:
    account = fake.add_account(email="p@example.com", plan="claude_team")
    pkce, state = oauth.new_pkce(), oauth.new_state()
    redirect = "http://localhost:4242/callback"
    grant = fake.authorize_code(redirect_uri=redirect, code_challenge=pkce.challenge, state=state)
    answer = oauth.exchange_code(ctx, grant["code"], state, pkce.verifier, redirect)
    assert (answer.account_uuid, answer.email, answer.org_uuid) == (
        account["uuid"],
        "p@example.com",
        account["org_uuid"],
    )
    assert answer.refresh and answer.expires_at > time.time() + 3600
    profile = oauth.fetch_profile(ctx, answer.access)
    assert (profile.uuid, profile.email, profile.plan, profile.organization_type) == (
        account["uuid"],
        "p@example.com",
        "team",
        "claude_team",
    )
    assert profile.tier == account["rate_limit_tier"]


def test_exchange_with_another_redirect_uri_is_refused(fake: FakeAnthropic, ctx: Ctx) -> None:
    fake.add_account(email="p@example.com")
    pkce, state = oauth.new_pkce(), oauth.new_state()
    grant = fake.authorize_code(
        redirect_uri="http://localhost:4242/callback", code_challenge=pkce.challenge, state=state
    )
    with pytest.raises(AuthError, match="invalid_grant"):
        oauth.exchange_code(
            ctx, grant["code"], state, pkce.verifier, "http://localhost:4343/callback"
        )


def test_profile_of_a_setup_token_is_forbidden(fake: FakeAnthropic, ctx: Ctx) -> None:
    token = fake.mint_setup_token(fake.add_account(email="s@example.com")["uuid"])
    with pytest.raises(oauth.ProfileForbidden):
        oauth.fetch_profile(ctx, token)


def test_unreachable_token_endpoint_is_a_network_error(
    fake: FakeAnthropic, env: dict[str, str]
) -> None:
    c = Ctx(env={**env, "ACCT_TOKEN_URL": "http://127.0.0.1:9/v1/oauth/token"})
    acc = seed_account(fake, c, "work")
    with pytest.raises(NetworkError) as e:
        oauth.refresh(c, acc.id, force=True)
    assert "nothing was sent" in e.value.message and e.value.hint == "try again later"
    assert not isinstance(e.value, oauth.RefreshUnanswered)
    assert c.store.read().get("work").tokens == acc.tokens


def test_ensure_fresh_sends_nothing_while_the_token_is_fresh(fake: FakeAnthropic, ctx: Ctx) -> None:
    acc = seed_account(fake, ctx, "work")
    fake.reset_log()
    assert oauth.ensure_fresh(ctx, acc.id, 1800).tokens == acc.tokens
    assert fake.stats()["token_refresh"] == 0


def test_ensure_fresh_refreshes_a_token_about_to_expire(fake: FakeAnthropic, ctx: Ctx) -> None:
    acc = seed_account(fake, ctx, "work", expires_in=60)
    fake.reset_log()
    fresh = oauth.ensure_fresh(ctx, acc.id, 1800)
    assert fresh.tokens and fresh.tokens.fresh_for(1800)
    assert fake.stats()["token_refresh"] == 1
    assert ctx.store.read().get("work").tokens == fresh.tokens


def test_refresh_sends_nothing_when_someone_else_refreshed_since(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    acc = seed_account(fake, ctx, "work")
    assert acc.tokens
    first = oauth.refresh(ctx, acc.id, force=True, seen=acc.tokens.lineage_fingerprint)
    fake.reset_log()
    result = oauth.refresh_result(ctx, acc.id, force=True, seen=acc.tokens.lineage_fingerprint)
    assert not result.sent and result.account.tokens == first.tokens
    assert fake.stats()["token_refresh"] == 0


def test_refresh_keeps_the_refresh_token_when_the_answer_has_none(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    acc = seed_account(fake, ctx, "work")
    assert acc.tokens
    fake.configure(omit_refresh_token=True)
    fresh = oauth.refresh(ctx, acc.id, force=True)
    assert (
        fresh.tokens
        and fresh.tokens.refresh == acc.tokens.refresh
        and fresh.tokens.access != acc.tokens.access
    )
    assert not fake.lineage(refresh_token=acc.tokens.refresh)["revoked"]


def test_refresh_retries_without_scope_when_the_server_refuses_it(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    acc = seed_account(fake, ctx, "work")
    fake.configure(reject_refresh_scope=True)
    fake.reset_log()
    fresh = oauth.refresh(ctx, acc.id, force=True)
    statuses = [e["status"] for e in fake.log("token_refresh")]
    assert statuses == [400, 200]
    assert fresh.tokens and acc.tokens and fresh.tokens.scopes == acc.tokens.scopes


def test_a_setup_token_cannot_be_refreshed(fake: FakeAnthropic, ctx: Ctx) -> None:
    acc = seed_account(fake, ctx, "setup", scopes=["user:inference"], expires_in=60)
    with ctx.store.transaction() as accounts:
        a = accounts.get("setup")
        assert a.tokens
        accounts.put(
            a.copy(tokens=Tokens(a.tokens.access, None, a.tokens.expires_at, a.tokens.scopes))
        )
    with pytest.raises(NeedsLogin, match="no refresh token"):
        oauth.ensure_fresh(ctx, acc.id, 1800)


def test_store_api_key_refuses_an_oauth_name(fake: FakeAnthropic, ctx: Ctx) -> None:
    seed_account(fake, ctx, "work")
    with pytest.raises(UsageError):
        accounts.store_api_key(ctx, "work", "sk-ant-api03-x")


def _set_obtained_at(ctx: Ctx, name: str, when: int | None) -> None:
    with ctx.store.transaction() as accounts:
        a = accounts.get(name)
        assert a.tokens
        accounts.put(a.copy(tokens=replace(a.tokens, obtained_at=when)))


def test_a_forced_refresh_right_after_another_sends_nothing(fake: FakeAnthropic, ctx: Ctx) -> None:
    acc = seed_account(fake, ctx, "work")
    first = oauth.refresh_result(ctx, acc.id, force=True)
    assert first.sent and first.account.tokens and first.account.tokens.obtained_at
    again = oauth.refresh_result(ctx, acc.id, force=True)  # looked at the store after the first
    assert not again.sent and again.account.tokens == first.account.tokens
    assert fake.stats()["token_refresh"] == 1


def test_a_forced_refresh_of_older_tokens_is_sent(fake: FakeAnthropic, ctx: Ctx) -> None:
    acc = seed_account(fake, ctx, "work")
    _set_obtained_at(ctx, "work", int(time.time()) - 3600)
    assert oauth.refresh_result(ctx, acc.id, force=True).sent
    assert fake.stats()["token_refresh"] == 1


def test_tokens_obtained_after_the_caller_began_are_not_refreshed_again(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    acc = seed_account(fake, ctx, "work")
    now = int(time.time())
    _set_obtained_at(ctx, "work", now - 300)  # older than a minute, younger than the caller
    result = oauth.refresh_result(ctx, acc.id, force=True, since=now - 600)
    assert not result.sent and fake.stats()["token_refresh"] == 0


def test_a_refresh_left_unanswered_says_it_may_have_gone_through(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    acc = seed_account(fake, ctx, "work")
    fake.configure(token_delay_ms=3000)
    with pytest.raises(oauth.RefreshUnanswered) as e:
        oauth.refresh(ctx, acc.id, force=True, timeout=0.5)
    assert "did not answer within 0.5s" in e.value.message
    assert "may have gone through" in e.value.message
    assert e.value.hint == "if the next refresh fails, run `acct login work`"
    assert "try again later" not in str(e.value.hint)
    assert ctx.store.read().get("work").tokens == acc.tokens


def test_refresh_waits_a_minute_for_its_answer() -> None:
    assert oauth.REFRESH_TIMEOUT >= 60 and oauth.STORE_WAIT > oauth.REFRESH_TIMEOUT

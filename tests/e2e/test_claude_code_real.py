"""``acct exec`` around the real Claude Code (npm, pinned) talking to the fake Anthropic.

The fake answers ``/v1/messages`` for the account whose token arrives, so its request log shows
which account Claude Code ran on; acct's store and state show what acct made of the run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from acct.base.models import Account, Tokens
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.e2e.conftest import dead_login_words, refresh_spends
from tests.fake_anthropic.client import FakeAnthropic

pytestmark = pytest.mark.e2e

FOREIGN = {
    "mcpOAuth": {"github|4f1c": {"accessToken": "mcp-secret-token", "expiresAt": 0}},
    "pluginSecrets": {"some-plugin": {"key": "plugin-secret"}},
    "trustedDeviceToken": "device-secret",
}


def credentials_file(env: dict[str, str]) -> Path:
    return Path(env["HOME"]) / ".claude" / ".credentials.json"


def messages(fake: FakeAnthropic) -> list[dict[str, Any]]:
    """The fake's /v1/messages requests (Claude Code adds ``?beta=true``; the log keeps the path)."""
    return fake.log("messages")


def sha8s(fake: FakeAnthropic) -> list[str]:
    return [e["token_sha8"] for e in messages(fake)]


def stored(ctx: Ctx, name: str) -> Account:
    return ctx.store.read().get(name)


def listing(run_acct: AcctRunner) -> dict[str, dict[str, Any]]:
    p = run_acct("list", "--json", check=True)
    doc = json.loads(p.stdout)
    assert doc["kind"] == "accounts"
    return {row["name"]: row for row in doc["accounts"]}


def no_leaks(ctx: Ctx, run_acct: AcctRunner) -> None:
    texts = [p.stdout for p in run_acct.calls] + [p.stderr for p in run_acct.calls]
    assert_no_secrets(texts, store_secrets(ctx))


def test_claude_runs_on_the_chosen_account(fake, ctx, run_acct, claude_env, workdir) -> None:
    seed_account(fake, ctx, "busy", five_hour=70, seven_day=20)
    idle = seed_account(fake, ctx, "idle", five_hour=5, seven_day=10)

    p = run_acct("exec", "--", "claude", "-p", "hi", cwd=workdir, timeout=120)

    assert p.returncode == 0, p.stderr
    assert "Hello from idle@example.com" in p.stdout
    calls = messages(fake)
    assert [c["account_uuid"] for c in calls] == [idle.uuid]
    assert calls[0]["stream"] is True  # the real client streams; it read the fake's SSE
    # The token Claude Code sent is the one acct lent it, which acct holds again afterwards.
    after = stored(ctx, "idle")
    assert sha8s(fake) == [fake.sha8(after.tokens.access)]
    entry = json.loads(credentials_file(claude_env).read_text())["claudeAiOauth"]
    assert entry["accessToken"] == after.tokens.access
    no_leaks(ctx, run_acct)


def test_quota_rotates_to_the_next_account(fake, ctx, run_acct, claude_env, workdir) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    run_acct("list", "--usage", check=True)  # acct's usage cache: a has the most room
    reset = int(time.time()) + 2 * 3600
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)

    # The exit-based loop (through the proxy b answers in flight: test_proxy_real.py).
    p = run_acct(
        "exec", "--no-proxy", "--", "claude", "-p", "write the report", cwd=workdir, timeout=180
    )

    assert p.returncode == 0, p.stderr
    # The real client's words, passed through (2.1.332 names the window "5-hour").
    assert any(w in p.stdout for w in ("You've hit your session limit", "You've hit your 5-hour"))
    assert "Hello from b@example.com" in p.stdout
    calls = messages(fake)
    assert [c["account_uuid"] for c in calls] == [a.uuid, b.uuid]
    assert [c["status"] for c in calls] == [429, 200]
    assert sha8s(fake) == [
        fake.sha8(stored(ctx, "a").tokens.access),
        fake.sha8(stored(ctx, "b").tokens.access),
    ]
    assert "→ switching to b" in p.stderr
    rows = listing(run_acct)
    assert rows["a"]["state"] == "benched"
    assert rows["a"]["bench"]["kind"] == "quota"
    assert abs(rows["a"]["bench"]["until_at_epoch"] - reset) <= 60
    assert rows["b"]["bench"] is None
    no_leaks(ctx, run_acct)


def test_throttle_is_not_a_quota(fake, ctx, run_acct, claude_env, workdir) -> None:
    a = seed_account(fake, ctx, "a", five_hour=1, seven_day=1)
    seed_account(fake, ctx, "b", five_hour=50, seven_day=50)
    fake.set_messages(a.uuid, "throttle")

    # 2.1.332 retries a plain 429 for about 3 minutes before it exits; one try tells the same.
    retries = {"CLAUDE_CODE_MAX_RETRIES": "0"}
    p = run_acct("exec", "--", "claude", "-p", "hi", cwd=workdir, env=retries, timeout=120)

    assert p.returncode == 1
    assert "not your usage limit" in p.stdout
    assert [c["account_uuid"] for c in messages(fake)] == [a.uuid]  # no rotation
    assert ctx.state.benches() == {}


def test_foreign_keys_in_the_credentials_file_survive(
    fake, ctx, run_acct, claude_env, workdir
) -> None:
    path = credentials_file(claude_env)
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_text(json.dumps(FOREIGN))
    os.chmod(path, 0o600)
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    run_acct("list", "--usage", check=True)
    fake.set_messages(a.uuid, "quota", reset_epoch=int(time.time()) + 3600)
    fake.set_usage(a.uuid, five_hour=100)

    # A rotation that lends b into the file: the exit-based loop's (the proxy keeps b out).
    p = run_acct("exec", "--no-proxy", "--", "claude", "-p", "hi", cwd=workdir, timeout=180)

    assert p.returncode == 0, p.stderr
    doc = json.loads(path.read_text())
    for key, value in FOREIGN.items():
        assert doc[key] == value
    assert doc["claudeAiOauth"]["accessToken"] == stored(ctx, "b").tokens.access
    assert path.stat().st_mode & 0o777 == 0o600


def expire_at_server(fake: FakeAnthropic, ctx: Ctx, name: str) -> Account:
    """Give the account a new lineage whose access token the server has already expired, while
    acct's store counts it fresh for hours.

    acct lends it as it is (no refresh of its own), so Claude Code meets the 401 and refreshes
    at its fixed token URL, which the TLS proxy hands to the fake.
    """
    acc = stored(ctx, name)
    minted = fake.mint(acc.uuid, expires_in=-60)
    tokens = Tokens(
        access=minted["access_token"],
        refresh=minted["refresh_token"],
        expires_at=int(time.time()) + 8 * 3600,
        scopes=tuple(minted["scope"].split()),
    )
    with ctx.store.transaction() as accounts:
        return accounts.put(dataclasses.replace(acc, tokens=tokens))


def test_a_refresh_by_claude_code_comes_back_to_the_store(
    fake, ctx, run_acct, claude_env_tls, workdir
) -> None:
    seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    run_acct("list", "--usage", check=True)  # cached: acct has no reason to use the token itself
    a = expire_at_server(fake, ctx, "a")
    assert a.tokens is not None

    p = run_acct("exec", "--", "claude", "-p", "hi", cwd=workdir, timeout=180)

    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout
    assert refresh_spends(fake) == [(200, fake.sha8(a.tokens.refresh))]
    calls = messages(fake)
    assert [(c["account_uuid"], c["status"]) for c in calls] == [(a.uuid, 401), (a.uuid, 200)]
    # acct took the rotated pair back: it holds the lineage's one live refresh token.
    after = stored(ctx, "a")
    assert after.tokens is not None and after.tokens.refresh != a.tokens.refresh
    lineage = fake.lineage(refresh_token=after.tokens.refresh)
    assert not lineage["revoked"]
    assert lineage["live_refresh_sha8"] == fake.sha8(after.tokens.refresh)
    assert calls[1]["token_sha8"] == fake.sha8(after.tokens.access)
    assert ctx.state.benches() == {}
    no_leaks(ctx, run_acct)


def test_a_dead_login_rotates_and_marks_the_account(
    fake, ctx, run_acct, claude_env_tls, workdir, claude_client
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    run_acct("list", "--usage", check=True)
    fake.revoke(a.uuid)  # the lineage dies at the server: refresh answers invalid_grant

    p = run_acct("exec", "--", "claude", "-p", "hi", cwd=workdir, timeout=180)

    assert p.returncode == 0, p.stderr
    # Claude Code's refresh got invalid_grant and it gave up, in its version's words.
    assert dead_login_words(claude_client) in p.stdout
    assert "Hello from b@example.com" in p.stdout
    assert "a needs a new login → switching to b" in p.stderr
    assert a.tokens is not None
    assert set(refresh_spends(fake)) == {(400, fake.sha8(a.tokens.refresh))}
    calls = messages(fake)
    assert [(c["token_sha8"], c["status"]) for c in calls] == [
        (fake.sha8(a.tokens.access), 401),
        (fake.sha8(stored(ctx, "b").tokens.access), 200),
    ]
    rows = listing(run_acct)
    assert rows["a"]["state"] == "needs_login"
    assert rows["b"]["state"] in ("ok", "held")
    no_leaks(ctx, run_acct)

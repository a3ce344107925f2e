"""The real Claude Code through acct's usage proxy (acct.services.proxy), chained to the fake Anthropic.

``claude_env`` already points ``ANTHROPIC_BASE_URL`` at the fake: that is the case of a user's
own base URL, which the proxy must forward to.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from acct.base.models import Usage, Window
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets

pytestmark = pytest.mark.e2e


def cached(ctx: Ctx, *accounts, five_hour: float, seven_day: float) -> None:
    """Usage in the cache, polled a while ago: exec has no account to probe."""
    for acc in accounts:
        ctx.state.put_usage(
            acc.id, Usage(Window(five_hour, None), Window(seven_day, None)), now=time.time() - 120
        )


def test_claude_runs_through_the_proxy_and_its_answers_feed_the_cache(
    fake, ctx, run_acct, workdir
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=37, seven_day=12)
    cached(ctx, a, five_hour=5, seven_day=5)
    fake.reset_log()

    p = run_acct("exec", "--proxy", "--", "claude", "-p", "hi", cwd=workdir, timeout=120)

    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout
    calls = fake.log("messages")
    assert [c["account_uuid"] for c in calls] == [a.uuid]
    assert calls[0]["stream"] is True  # the real client streamed its answer through the proxy
    rec = ctx.state.usage(a.id)
    assert (rec.usage.five_hour.utilization, rec.usage.seven_day.utilization) == (37.0, 12.0)
    assert fake.stats().get("usage", 0) == 0
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_a_quota_refusal_rotates_with_the_exact_reset(fake, ctx, run_acct, workdir) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    cached(ctx, a, five_hour=10, seven_day=10)
    cached(ctx, b, five_hour=30, seven_day=30)
    reset = int(time.time()) + 2 * 3600 + 37  # not on a minute: the tool's words round it
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    fake.reset_log()

    p = run_acct("exec", "--", "claude", "-p", "write the report", cwd=workdir, timeout=180)

    assert p.returncode == 0, p.stderr
    assert "Hello from b@example.com" in p.stdout
    assert [c["status"] for c in fake.log("messages")] == [429, 200]
    assert "→ switching to b" in p.stderr
    bench = ctx.state.benches().get(a.id)
    assert bench is not None and bench.kind == "quota" and bench.until == reset
    assert fake.stats().get("usage", 0) == 0
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_behind_a_tls_inspecting_proxy_claude_goes_through_acct_proxy(
    fake, ctx, claude_env_tls, tls_proxy, workdir
) -> None:
    """No base URL of the user's: the proxy forwards to api.anthropic.com itself, through the
    company's HTTPS proxy, trusting its CA as Claude Code does (NODE_EXTRA_CA_CERTS)."""
    env = dict(claude_env_tls)
    del env["ANTHROPIC_BASE_URL"]
    a = seed_account(fake, ctx, "a", five_hour=37, seven_day=12)
    cached(ctx, a, five_hour=5, seven_day=5)
    fake.reset_log()

    p = AcctRunner(env)("exec", "--", "claude", "-p", "hi", cwd=workdir, timeout=120)

    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout
    assert [c["status"] for c in fake.log("messages")] == [200]
    rec = ctx.state.usage(a.id)  # the proxy read the answer: it was on the path
    assert (rec.usage.five_hour.utilization, rec.usage.seven_day.utilization) == (37.0, 12.0)
    assert "api.anthropic.com:443" in tls_proxy.connects
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_a_base_url_in_claudes_settings_keeps_the_proxy_off_its_route(
    fake, ctx, claude_env, workdir
) -> None:
    """Claude Code applies its settings' env over the process's: a gateway set there wins over
    the proxy's address, so acct leaves the route alone (and claims no first-party API)."""
    env = dict(claude_env)
    settings = Path(env["HOME"]) / ".claude" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"env": {"ANTHROPIC_BASE_URL": env.pop("ANTHROPIC_BASE_URL")}}))
    a = seed_account(fake, ctx, "a", five_hour=37, seven_day=12)
    cached(ctx, a, five_hour=5, seven_day=5)
    fake.reset_log()

    p = AcctRunner(env)("exec", "--", "claude", "-p", "hi", cwd=workdir, timeout=120)

    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout
    assert "without the usage proxy" in p.stderr and str(settings) in p.stderr
    assert [c["status"] for c in fake.log("messages")] == [200]
    assert ctx.state.usage(a.id).usage.five_hour.utilization == 5  # not observed: not proxied

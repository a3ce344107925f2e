"""``acct exec`` around the real Pi (npm, pinned) talking to the fake Anthropic."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from acct.services.context import Ctx
from acct.services.state import Bench
from tests.conftest import assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic

pytestmark = pytest.mark.e2e

PI_ARGS = ("pi", "--provider", "anthropic", "--model", "claude-sonnet-4-5", "-p")


def auth_file(env: dict[str, str]) -> Path:
    return Path(env["HOME"]) / ".pi" / "agent" / "auth.json"


def messages(fake: FakeAnthropic) -> list[dict[str, Any]]:
    return fake.log("messages")


def test_pi_runs_on_the_chosen_account(fake, ctx, run_acct_pi, pi_env, workdir) -> None:
    seed_account(fake, ctx, "busy", five_hour=70, seven_day=20)
    idle = seed_account(fake, ctx, "idle", five_hour=5, seven_day=10)

    p = run_acct_pi("exec", "--", *PI_ARGS, "hi", cwd=workdir, timeout=120)

    assert p.returncode == 0, p.stderr
    assert "Hello from idle@example.com" in p.stdout
    after = ctx.store.read().get("idle")
    assert after.tokens is not None
    assert [(c["account_uuid"], c["token_sha8"]) for c in messages(fake)] == [
        (idle.uuid, fake.sha8(after.tokens.access))
    ]
    entry = json.loads(auth_file(pi_env).read_text())["anthropic"]
    assert entry["type"] == "oauth" and entry["access"] == after.tokens.access
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_pi_quota_rotates_to_the_next_account(fake, ctx, run_acct_pi, pi_env, workdir) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    run_acct_pi("list", "--usage", check=True)
    reset = int(time.time()) + 2 * 3600
    fake.set_messages(a.uuid, "quota", reset_epoch=reset)
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)

    # The exit-based loop (through the proxy b answers in flight: test_rotation_real.py).
    p = run_acct_pi(
        "exec", "--no-proxy", "--", *PI_ARGS, "write the report", cwd=workdir, timeout=180
    )

    assert p.returncode == 0, p.stderr
    assert '429 {"type":"error"' in p.stderr  # Pi's own words, passed through
    assert "Hello from b@example.com" in p.stdout
    calls = messages(fake)
    assert [(c["account_uuid"], c["status"]) for c in calls] == [(a.uuid, 429), (b.uuid, 200)]
    assert "→ switching to b" in p.stderr
    bench = _bench(ctx, "a")
    assert bench is not None and bench.kind == "quota" and abs(bench.until - reset) <= 60
    assert _bench(ctx, "b") is None
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def _bench(ctx: Ctx, name: str) -> Bench | None:
    return ctx.state.benches().get(ctx.store.read().get(name).id)

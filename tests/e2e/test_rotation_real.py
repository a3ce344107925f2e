"""The real OpenCode and Pi under ``acct exec``, account A at its limit and B healthy: the task
finishes on B with exit 0, without ``acct doctor --fix``, and no refresh-token chain is revoked.

Both tools run behind acct's usage proxy (OpenCode through an OPENCODE_CONFIG_CONTENT overlay,
Pi through acct's extension), which chains to the base URL their own settings name: the fake.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic

pytestmark = pytest.mark.e2e

# The task is done on B in well under 30 s (measured: Pi about 5 s, OpenCode about 22 s, most of
# it OpenCode starting twice on a loaded 2-core machine); no timed assertion here, only a guard
# against a tool left sleeping on the refusal (hours, on a real quota answer).
HANG_GUARD_S = 90
PI_ARGS = ("pi", "--provider", "anthropic", "--model", "claude-sonnet-4-5", "-p")
OPENCODE_ARGS = ("opencode", "run", "--model", "anthropic/claude-sonnet-4-5")


def calls(fake: FakeAnthropic) -> list[tuple[str, int]]:
    return [(c["account_uuid"], c["status"]) for c in fake.log("messages")]


def a_at_its_limit(fake: FakeAnthropic, ctx: Any) -> tuple[Any, Any, int]:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    b = seed_account(fake, ctx, "b", five_hour=30, seven_day=30)
    reset = int(time.time()) + 2 * 3600
    fake.set_messages(a.uuid, "quota", reset_epoch=reset, claim="five_hour")
    fake.set_usage(a.uuid, five_hour=100, five_hour_resets_at=reset)
    return a, b, reset


def no_chain_revoked(fake: FakeAnthropic, *accounts: Any) -> None:
    refreshes = fake.log("token_refresh")
    assert all(r["status"] == 200 for r in refreshes), refreshes
    for acc in accounts:
        lineages = fake.lineage(uuid=acc.uuid).get("lineages") or [fake.lineage(uuid=acc.uuid)]
        assert not any(ln["revoked"] for ln in lineages), acc.name


def test_opencode_finishes_on_b_when_a_is_at_its_limit(
    fake, ctx, run_acct_opencode, opencode_env, workdir: Path
) -> None:
    a, b, _ = a_at_its_limit(fake, ctx)
    config = Path(opencode_env["HOME"]) / ".config" / "opencode" / "opencode.json"
    plugins = json.loads(config.read_text())["plugin"]

    p = run_acct_opencode(
        "exec",
        "--account",
        "a",
        "--",
        *OPENCODE_ARGS,
        "write the report",
        cwd=workdir,
        env={"PWD": str(workdir)},
        timeout=HANG_GUARD_S,
    )

    assert p.returncode == 0, p.stderr
    assert "Hello from b@example.com" in p.stdout
    seen = calls(fake)
    assert (a.uuid, 429) in seen and seen[-1] == (b.uuid, 200), seen
    assert json.loads(config.read_text())["plugin"] == plugins  # no doctor --fix, no new entry
    no_chain_revoked(fake, a, b)
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_pi_finishes_on_b_when_a_is_at_its_limit_without_doctor_fix(
    fake, ctx, run_acct_pi, pi_env, workdir: Path
) -> None:
    a, b, reset = a_at_its_limit(fake, ctx)
    settings = Path(pi_env["HOME"]) / ".pi" / "agent" / "settings.json"
    settings.unlink()  # Pi's own retry settings, as a user who never ran `acct doctor --fix`

    p = run_acct_pi(
        "exec",
        "--account",
        "a",
        "--",
        *PI_ARGS,
        "write the report",
        cwd=workdir,
        timeout=HANG_GUARD_S,
    )

    assert p.returncode == 0, p.stderr
    assert "Hello from b@example.com" in p.stdout
    seen = calls(fake)
    assert (a.uuid, 429) in seen and seen[-1] == (b.uuid, 200), seen
    assert not settings.exists()
    bench = ctx.state.benches().get(a.id)
    assert bench is not None and abs(bench.until - reset) <= 60
    no_chain_revoked(fake, a, b)
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_pi_goes_through_accts_proxy_to_the_base_url_of_its_models_json(
    fake, ctx, run_acct_pi, pi_env, workdir: Path
) -> None:
    a = seed_account(fake, ctx, "a", five_hour=10, seven_day=10)
    fake.set_usage(a.uuid, five_hour=37, seven_day=12)
    models = Path(pi_env["HOME"]) / ".pi" / "agent" / "models.json"
    before = models.read_bytes()

    p = run_acct_pi("exec", "--", *PI_ARGS, "hi", cwd=workdir, timeout=120)

    assert p.returncode == 0, p.stderr
    assert "Hello from a@example.com" in p.stdout
    rec = ctx.state.usage(a.id)  # the answer's headers, read by the proxy on the way
    assert rec is not None and rec.usage is not None and rec.usage.five_hour.utilization == 37.0
    assert fake.stats().get("usage", 0) <= 1  # one probe of the never-polled account at most
    assert models.read_bytes() == before

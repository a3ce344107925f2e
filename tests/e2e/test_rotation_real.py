"""The real OpenCode and Pi under ``acct exec``, account A at its limit and B healthy: the task
finishes on B with exit 0 in the same run (the proxy sends A's refused request again on B, in
flight: no end, no resume), without ``acct doctor --fix``, and no refresh-token chain is revoked.

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


def answered_in_flight(fake: FakeAnthropic, a: Any, b: Any, stderr: str) -> None:
    """Every request A refused was sent again, byte for byte, and answered for B; the run was
    neither ended nor resumed (the exit-based loop says ``switching to b`` without ``in
    flight``, and ``ending the run`` first)."""
    log = fake.log("messages")
    seen = [(c["account_uuid"], c["status"]) for c in log]
    refused = [i for i, c in enumerate(log) if c["account_uuid"] == a.uuid]
    assert refused and all(log[i]["status"] == 429 for i in refused), seen
    for i in refused:
        nxt = log[i + 1] if i + 1 < len(log) else None
        assert nxt is not None and (nxt["account_uuid"], nxt["status"]) == (b.uuid, 200), seen
        assert nxt["body_sha8"] == log[i]["body_sha8"], "not the same request"
        assert nxt["header_names"] == log[i]["header_names"], (log[i], nxt)
        # Neither tool names the account in the body (Claude Code does, in metadata.user_id).
        assert log[i].get("metadata_keys") is None and nxt.get("metadata_keys") is None, log[i]
    assert seen[-1] == (b.uuid, 200), seen
    switches = [ln for ln in stderr.splitlines() if "switching to" in ln]
    assert switches == [switches[0]] and switches[0].endswith("switching to b in flight"), stderr
    assert "ending the run" not in stderr, stderr


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


def test_opencode_finishes_on_b_in_flight_when_a_is_at_its_limit(
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
    answered_in_flight(fake, a, b, p.stderr)
    assert json.loads(config.read_text())["plugin"] == plugins  # no doctor --fix, no new entry
    no_chain_revoked(fake, a, b)
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_pi_finishes_on_b_in_flight_when_a_is_at_its_limit_without_doctor_fix(
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
    answered_in_flight(fake, a, b, p.stderr)
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

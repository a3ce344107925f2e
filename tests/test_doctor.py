"""`acct doctor` as a real process: files, environment, Pi's retry and OpenCode's plugin."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from acct.services.context import Ctx
from tests.conftest import AcctRunner, seed_account
from tests.fake_anthropic.client import FakeAnthropic


def test_doctor_all_good_when_nothing_is_set_up(acct: AcctRunner) -> None:
    p = acct("doctor")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not set up" in p.stdout


def test_doctor_reports_overriding_env(acct: AcctRunner) -> None:
    p = acct("doctor", env={"CLAUDE_CODE_OAUTH_TOKEN": "x", "ANTHROPIC_OAUTH_TOKEN": "y"})
    assert p.returncode == 1
    assert "CLAUDE_CODE_OAUTH_TOKEN is set" in p.stdout


def test_doctor_fixes_pi_retry_keeping_other_keys(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, home: Path
) -> None:
    seed_account(fake, ctx, "work")
    acct("use", "work", "-t", "pi", check=True)
    settings = home / ".pi" / "agent" / "settings.json"
    settings.write_text(
        json.dumps({"theme": "dark", "retry": {"enabled": True, "baseDelayMs": 500}})
    )
    p = acct("doctor")
    assert p.returncode == 1 and "maxRetries" in p.stdout
    assert "PROBLEM pi: ~/.pi/agent/settings.json: Pi retries a 429" in p.stdout
    p = acct("doctor", "--fix", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    assert doc["ok"] and any(c["fixed"] for c in doc["checks"])
    (fixed,) = [c for c in doc["checks"] if c["fixed"]]
    assert fixed["path"] == str(settings)  # JSON keeps the absolute path
    got = json.loads(settings.read_text())
    assert got == {
        "theme": "dark",
        "retry": {"enabled": False, "baseDelayMs": 500, "provider": {"maxRetries": 0}},
    }
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    assert acct("doctor").returncode == 0


def test_doctor_opencode_plugin(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, home: Path
) -> None:
    seed_account(fake, ctx, "work")
    acct("use", "work", "-t", "opencode", check=True)
    cfg = home / ".config" / "opencode" / "opencode.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"$schema": "https://opencode.ai/config.json", "plugin": ["other"]}))
    p = acct("doctor")
    assert p.returncode == 1 and "opencode-anthropic-auth" in p.stdout
    p = acct("doctor", "--fix")
    assert p.returncode == 0
    assert (
        'fixed   opencode: added "opencode-anthropic-auth" to "plugin"'
        " in ~/.config/opencode/opencode.json"
    ) in p.stdout.splitlines()
    assert json.loads(cfg.read_text())["plugin"] == ["other", "opencode-anthropic-auth"]


def test_doctor_flags_corrupt_and_blanked_files(home: Path, acct: AcctRunner) -> None:
    cc = home / ".claude" / ".credentials.json"
    cc.parent.mkdir(parents=True)
    cc.write_text("{nope")
    p = acct("doctor", "--fix")
    assert p.returncode == 1 and "not valid JSON" in p.stdout
    assert cc.read_text() == "{nope"
    cc.write_text(
        json.dumps({"claudeAiOauth": {"accessToken": "", "refreshToken": "", "expiresAt": 0}})
    )
    p = acct("doctor")
    assert p.returncode == 1 and "blanked" in p.stdout
    assert "`acct use NAME -t claude-code`" in p.stdout  # no account is recorded there


def test_doctor_flags_pi_agent_retry_left_enabled(acct: AcctRunner, home: Path) -> None:
    settings = home / ".pi" / "agent" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"retry": {"provider": {"maxRetries": 0}}}))
    p = acct("doctor")
    assert p.returncode == 1 and "retry.enabled" in p.stdout
    p = acct("doctor", "--fix")
    assert p.returncode == 0
    # The line says what was done, not the problem again.
    assert (
        "fixed   pi: set retry.enabled=false and retry.provider.maxRetries=0"
        " in ~/.pi/agent/settings.json"
    ) in p.stdout.splitlines()
    assert "retries a 429" not in p.stdout
    got = json.loads(settings.read_text())
    assert got == {"retry": {"enabled": False, "provider": {"maxRetries": 0}}}


@pytest.mark.parametrize(
    "entry",
    [
        "file:///home/me/.cache/npm/node_modules/opencode-anthropic-auth/index.mjs",
        "/opt/plugins/opencode-anthropic-auth",
        "opencode-anthropic-auth@0.0.13",
        "file:///home/me/src/opencode-anthropic-auth@0.0.13/index.mjs",
    ],
)
def test_doctor_knows_the_opencode_plugin_given_as_a_path_or_url_and_never_adds_a_second(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, home: Path, entry: str
) -> None:
    seed_account(fake, ctx, "work")
    acct("use", "work", "-t", "opencode", check=True)
    cfg = home / ".config" / "opencode" / "opencode.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"plugin": [entry]}))
    before = cfg.read_bytes()
    p = acct("doctor", "--fix")
    assert p.returncode == 0, p.stdout
    assert "plugin opencode-anthropic-auth is enabled" in p.stdout
    assert cfg.read_bytes() == before


def test_doctor_does_not_take_another_plugin_for_the_claude_one(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, home: Path
) -> None:
    seed_account(fake, ctx, "work")
    acct("use", "work", "-t", "opencode", check=True)
    cfg = home / ".config" / "opencode" / "opencode.json"
    cfg.parent.mkdir(parents=True)
    others = ["opencode-anthropic-auth-fork", "file:///x/my-opencode-anthropic-auth-notes.mjs"]
    cfg.write_text(json.dumps({"plugin": others}))
    assert acct("doctor").returncode == 1


def test_doctor_warns_about_a_dead_login_and_dates_the_live_ones(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work")
    dead = seed_account(fake, ctx, "dead")
    acct("refresh", "work", check=True)
    assert dead.uuid
    fake.revoke(dead.uuid)
    assert acct("refresh", "dead").returncode == 4
    p = acct("doctor")
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    assert any(
        ln.startswith("PROBLEM logins: dead needs a new login") and "`acct login dead`" in ln
        for ln in lines
    ), p.stdout
    assert any(ln.startswith("ok      logins: work: last refreshed") for ln in lines), p.stdout

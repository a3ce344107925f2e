"""`acct use` and `acct status` as real processes in a temporary HOME, against the fake server."""

from __future__ import annotations

import json

from acct.services.context import Ctx
from acct.services.targets import get_target
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic


def test_use_writes_the_default_target(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    work = seed_account(fake, ctx, "work")
    p = acct("use", "work")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"claude-code ← work (max) fp {work.fingerprint}"
    assert get_target("claude-code").read(ctx.env).tokens.access == work.tokens.access
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_use_third_party_target_notes_extra_usage(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work")
    p = acct("use", "work", "--target", "pi")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("pi ← work")
    assert "acct: note:" in p.stderr and "extra usage" in p.stderr
    assert "warning" not in p.stderr


def test_use_json(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    seed_account(fake, ctx, "work")
    seed_account(fake, ctx, "home")
    acct("use", "work", "-t", "opencode", check=True)
    p = acct("use", "home", "-t", "opencode", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    (lent,) = doc["targets"]
    assert doc["kind"] == "use"
    assert lent["account"] == {
        "name": "home",
        "email": "home@example.com",
        "plan": "max",
        "fingerprint": ctx.store.read().get("home").fingerprint,
    }
    assert lent["returned"] == ["work"]
    assert isinstance(lent["expires_at"], str) and isinstance(lent["expires_at_epoch"], int)
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_use_without_name_and_terminal_is_a_usage_error(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work")
    p = acct("use")
    assert p.returncode == 2
    assert "name an account" in p.stderr


def test_use_errors(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    seed_account(fake, ctx, "work")
    assert acct("use", "nobody").returncode == 3
    assert acct("use", "work", "-t", "codex").returncode == 2
    p = acct("use", "work", "-t", "pi", "-t", "opencode")
    assert p.returncode == 2 and "one tool's file" in p.stderr
    path = get_target("claude-code").path(ctx.env)
    path.parent.mkdir(parents=True)
    path.write_text("{oops")
    p = acct("use", "work")
    assert p.returncode == 1 and "not valid JSON" in p.stderr
    assert path.read_text() == "{oops"


def test_status_names_the_account_and_its_usage(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    from acct.base.models import Usage, Window

    work = seed_account(fake, ctx, "work")
    ctx.state.put_usage(work.id, Usage(five_hour=Window(37.0, None), seven_day=Window(12.0, None)))
    acct("use", "work", "-t", "pi", check=True)
    p = acct("status")
    assert p.returncode == 0, p.stderr
    pi_line = next(x for x in p.stdout.splitlines() if x.startswith("pi:"))
    assert "work" in pi_line and "37%" in pi_line and "12%" in pi_line
    assert "claude-code:" in p.stdout and "absent" in p.stdout
    doc = json.loads(acct("status", "--json", check=True).stdout)
    by = {t["target"]: t for t in doc["targets"]}
    assert by["pi"]["account"] == "work" and by["pi"]["changed_since_written"] is False
    assert by["pi"]["usage"]["five_hour"] == 37.0
    assert by["pi"]["holder"] == "work" and "lent" not in by["pi"]
    assert isinstance(by["pi"]["expires_at"], str)
    assert isinstance(by["pi"]["expires_at_epoch"], int)
    assert isinstance(by["pi"]["usage"]["fetched_at"], str)
    assert isinstance(by["pi"]["usage"]["fetched_at_epoch"], int)
    assert "~/.pi/agent/auth.json" in pi_line  # human output abbreviates HOME; JSON does not
    assert by["pi"]["path"].startswith(str(ctx.env["HOME"]))
    assert by["opencode"]["state"] == "none"
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))
    # A window whose reset has passed reads 0%, as in `acct list` and the prompt.
    import time as _time

    past = _time.time() - 60
    ctx.state.put_usage(work.id, Usage(five_hour=Window(100.0, past), seven_day=Window(12.0, None)))
    doc = json.loads(acct("status", "--json", check=True).stdout)
    pi = next(t for t in doc["targets"] if t["target"] == "pi")
    assert pi["usage"]["five_hour"] == 0.0 and pi["usage"]["seven_day"] == 12.0


def test_status_shows_unknown_and_blanked_logins(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    stranger = fake.add_account(email="stranger@example.com")
    tok = fake.mint(stranger["uuid"])
    path = get_target("opencode").path(ctx.env)
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "anthropic": {
                    "type": "oauth",
                    "access": tok["access_token"],
                    "refresh": tok["refresh_token"],
                    "expires": 1,
                }
            }
        )
    )
    cc = get_target("claude-code").path(ctx.env)
    cc.parent.mkdir(parents=True)
    cc.write_text(
        json.dumps({"claudeAiOauth": {"accessToken": "", "refreshToken": "", "expiresAt": 0}})
    )
    p = acct("status")
    assert p.returncode == 0, p.stderr
    assert "opencode: unknown account" in p.stdout
    assert "claude-code:" in p.stdout and "needs login" in p.stdout
    assert_no_secrets([p.stdout, p.stderr], {tok["access_token"], tok["refresh_token"]})


def test_status_names_a_session_by_its_id_and_pid(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    import os

    from acct.services import sessions

    opened = sessions.open_session(ctx, get_target("pi"))  # this process's session
    try:
        p = acct("status")
        doc = json.loads(acct("status", "--json", check=True).stdout)
    finally:
        sessions.close(ctx, opened.row)
    assert p.returncode == 0, p.stderr
    (session,) = doc["sessions"]
    assert session["id"] == opened.row.id and session["pid"] == os.getpid()
    assert isinstance(session["started_at"], str) and isinstance(session["started_at_epoch"], int)
    line = next(x for x in p.stdout.splitlines() if x.startswith("session "))
    assert line.startswith(f"session {opened.row.id} (pid {os.getpid()}): pi on -")
    assert "~/.pi/agent/auth.json" in line

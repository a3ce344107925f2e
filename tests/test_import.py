"""`acct import`: take the login a tool holds now into the store; the file stays its holder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acct.services.context import Ctx
from acct.services.targets import get_target
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic


def _tool_login(
    fake: FakeAnthropic, ctx: Ctx, target: str, uuid: str, path: Path | None = None
) -> dict:
    tok = fake.mint(uuid)
    p = path or get_target(target).path(ctx.env)
    p.parent.mkdir(parents=True, exist_ok=True)
    exp = 4_000_000_000_000
    if target == "claude-code":
        doc = {
            "claudeAiOauth": {
                "accessToken": tok["access_token"],
                "refreshToken": tok["refresh_token"],
                "expiresAt": exp,
                "scopes": tok["scope"].split(),
            },
            "mcpOAuth": {"k": 1},
        }
    else:
        doc = {
            "anthropic": {
                "type": "oauth",
                "access": tok["access_token"],
                "refresh": tok["refresh_token"],
                "expires": exp,
            }
        }
    p.write_text(json.dumps(doc))
    return tok


@pytest.mark.parametrize("target", ["claude-code", "opencode", "pi"])
def test_import_adds_the_tools_login(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, target: str
) -> None:
    fa = fake.add_account(email="me@example.com", plan="claude_pro")
    tok = _tool_login(fake, ctx, target, fa["uuid"])
    before = get_target(target).path(ctx.env).read_bytes()
    p = acct("import", target)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("added me (pro)")
    acc = ctx.store.read().get("me")
    assert acc.uuid == fa["uuid"] and acc.tokens.refresh == tok["refresh_token"]
    assert acc.holder is not None and acc.holder.target == target
    assert get_target(target).path(ctx.env).read_bytes() == before  # the file is untouched
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_import_dedupes_by_uuid(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    work = seed_account(fake, ctx, "work")
    tok = _tool_login(fake, ctx, "pi", work.uuid)
    p = acct("import", "pi", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["created"] is False
    assert doc["account"] == {
        "name": "work",
        "email": "work@example.com",
        "plan": "max",
        "fingerprint": ctx.store.read().get("work").fingerprint,
    }
    accounts = ctx.store.read()
    assert len(accounts) == 1 and accounts.get("work").tokens.access == tok["access_token"]
    assert_no_secrets(
        [p.stdout, p.stderr], store_secrets(ctx) | {work.tokens.access, work.tokens.refresh}
    )


def test_import_from_file_with_name(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, home: Path
) -> None:
    fa = fake.add_account(email="x@example.com")
    src = home / "backup" / "creds.json"
    _tool_login(fake, ctx, "claude-code", fa["uuid"], path=src)
    p = acct("import", "claude-code", "--from", str(src), "--name", "backup")
    assert p.returncode == 0, p.stderr
    acc = ctx.store.read().get("backup")
    assert acc.holder.path == str(src.resolve())


def test_import_refuses_blanked_and_absent(acct: AcctRunner, home: Path) -> None:
    assert acct("import", "pi").returncode == 3
    cc = home / ".claude" / ".credentials.json"
    cc.parent.mkdir(parents=True)
    cc.write_text(
        json.dumps({"claudeAiOauth": {"accessToken": "", "refreshToken": "", "expiresAt": 0}})
    )
    p = acct("import", "claude-code")
    assert p.returncode == 4
    assert "that account needs a new login (run /login in the tool, or acct login)" in p.stderr


def test_import_after_tool_login_releases_the_lent_account(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    work = seed_account(fake, ctx, "work")
    acct("use", "work", "-t", "opencode", check=True)
    fa = fake.add_account(email="new@example.com")
    _tool_login(fake, ctx, "opencode", fa["uuid"])  # the user logged in inside the tool
    p = acct("import", "opencode")
    assert p.returncode == 0, p.stderr
    accounts = ctx.store.read()
    assert accounts.get("work").holder is None and accounts.get("work").tokens == work.tokens
    assert accounts.get("new").holder.target == "opencode"


def test_import_from_a_missing_file_says_it_does_not_exist(acct: AcctRunner, home: Path) -> None:
    missing = home / "nonexistent"
    p = acct("import", "opencode", "--from", str(missing))
    assert p.returncode == 3
    assert p.stderr.strip() == "acct: ~/nonexistent does not exist"
    assert not missing.exists()
    p = acct("import", "pi")
    assert p.returncode == 3 and "~/.pi/agent/auth.json does not exist" in p.stderr

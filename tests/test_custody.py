"""Custody of refresh-token lineages (one live holder per lineage; harvest before overwrite),
against the fake Anthropic server."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from acct.base.errors import HeldByTarget
from acct.base.models import Account, fingerprint
from acct.services import custody
from acct.services.context import Ctx
from acct.services.targets import get_target
from tests.conftest import seed_account
from tests.fake_anthropic.client import FakeAnthropic

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"


def tool_refresh(fake: FakeAnthropic, refresh_token: str) -> dict[str, Any]:
    """What the tool does when it refreshes: spend the refresh token at the token endpoint."""
    body = json.dumps(
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
    )
    req = urllib.request.Request(
        fake.token_url,
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def tool_writes(ctx: Ctx, target: str, answer: dict[str, Any]) -> None:
    """Write the rotated pair back as the tool itself would (its own format, other keys kept)."""
    t = get_target(target)
    path = t.path(ctx.env)
    doc = json.loads(path.read_text()) if path.exists() else {}
    expires = int((time.time() + answer["expires_in"]) * 1000)
    if target == "claude-code":
        entry = doc.get("claudeAiOauth", {})
        entry.update(
            accessToken=answer["access_token"],
            refreshToken=answer["refresh_token"],
            expiresAt=expires,
        )
        doc["claudeAiOauth"] = entry
    else:
        doc["anthropic"] = {
            "type": "oauth",
            "refresh": answer["refresh_token"],
            "access": answer["access_token"],
            "expires": expires,
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def tool_rotates(fake: FakeAnthropic, ctx: Ctx, target: str) -> dict[str, Any]:
    entry = get_target(target).read(ctx.env)
    assert entry is not None and entry.tokens.refresh
    answer = tool_refresh(fake, entry.tokens.refresh)
    tool_writes(ctx, target, answer)
    return answer


def stored(ctx: Ctx, name: str) -> Account:
    return ctx.store.read().get(name)


@pytest.mark.parametrize("target", ["claude-code", "opencode", "pi"])
def test_lend_writes_and_records_custody(fake: FakeAnthropic, ctx: Ctx, target: str) -> None:
    work = seed_account(fake, ctx, "work")
    r = custody.lend(ctx, work.id, target)
    entry = get_target(target).read(ctx.env)
    assert entry is not None and entry.tokens.access == work.tokens.access
    acc = stored(ctx, "work")
    assert acc.holder is not None and acc.holder.target == target
    assert acc.holder.fingerprint == work.tokens.lineage_fingerprint
    assert r.path == acc.holder.path and r.fingerprint == fingerprint(work.tokens.access)
    assert ctx.state.history()[0]["event"] == "lend"


def test_switching_harvests_the_rotated_lineage_back(fake: FakeAnthropic, ctx: Ctx) -> None:
    work = seed_account(fake, ctx, "work")
    home = seed_account(fake, ctx, "home")
    custody.lend(ctx, work.id, "claude-code")
    answer = tool_rotates(fake, ctx, "claude-code")  # Claude Code ran and rotated work's lineage
    r = custody.lend(ctx, home.id, "claude-code")
    assert r.harvest.status == "harvested" and r.returned == ("work",)
    w = stored(ctx, "work")
    assert w.holder is None
    assert w.tokens.refresh == answer["refresh_token"] and w.tokens.access == answer["access_token"]
    # The live lineage came back: acct can refresh it without tripping reuse detection.
    assert not fake.lineage(refresh_token=answer["refresh_token"])["revoked"]
    assert stored(ctx, "home").holder is not None
    assert fake.stats().get("profile", 0) >= 1  # identity was checked


def test_same_lineage_newer_access_token_is_taken_without_network(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    fake.configure(omit_refresh_token=True)
    work = seed_account(fake, ctx, "work")
    custody.lend(ctx, work.id, "pi")
    answer = tool_refresh(fake, work.tokens.refresh)
    tool_writes(ctx, "pi", {**answer, "refresh_token": work.tokens.refresh})
    fake.reset_log()
    hv = custody.harvest(ctx, "pi")
    assert hv.status == "refreshed"
    assert stored(ctx, "work").tokens.access == answer["access_token"]
    assert fake.stats().get("profile", 0) == 0


def test_slot_poisoning_foreign_identity_is_not_harvested(fake: FakeAnthropic, ctx: Ctx) -> None:
    work = seed_account(fake, ctx, "work")
    custody.lend(ctx, work.id, "claude-code")
    stranger = fake.add_account(email="stranger@example.com")
    tool_writes(
        ctx, "claude-code", fake.mint(stranger["uuid"])
    )  # the user ran /login as someone else
    hv = custody.harvest(ctx, "claude-code")
    assert hv.status == "foreign" and hv.identity == "stranger@example.com" and hv.known_id is None
    w = stored(ctx, "work")
    assert w.tokens == work.tokens  # nothing of the stranger's stored into work
    assert w.holder is None
    assert {a.name for a in ctx.store.read()} == {"work"}


def test_unknown_login_is_not_overwritten_without_force(fake: FakeAnthropic, ctx: Ctx) -> None:
    work = seed_account(fake, ctx, "work")
    stranger = fake.add_account(email="stranger@example.com")
    tool_writes(ctx, "opencode", fake.mint(stranger["uuid"]))
    before = get_target("opencode").path(ctx.env).read_bytes()
    with pytest.raises(HeldByTarget, match="stranger@example.com"):
        custody.lend(ctx, work.id, "opencode")
    assert get_target("opencode").path(ctx.env).read_bytes() == before
    assert stored(ctx, "work").holder is None
    custody.lend(ctx, work.id, "opencode", force=True)
    assert get_target("opencode").read(ctx.env).tokens.access == work.tokens.access


def test_blanked_file_marks_needs_login_and_keeps_tokens(fake: FakeAnthropic, ctx: Ctx) -> None:
    work = seed_account(fake, ctx, "work")
    custody.lend(ctx, work.id, "claude-code")
    path = get_target("claude-code").path(ctx.env)
    doc = json.loads(path.read_text())
    doc["claudeAiOauth"].update(accessToken="", refreshToken="", expiresAt=0)
    path.write_text(json.dumps(doc))
    hv = custody.harvest(ctx, "claude-code")
    assert hv.status == "blank" and hv.account_name == "work"
    w = stored(ctx, "work")
    assert w.needs_login and w.holder is None
    assert w.tokens == work.tokens


def test_acct_refuses_to_refresh_a_lent_lineage(fake: FakeAnthropic, ctx: Ctx) -> None:
    from acct.services import oauth

    work = seed_account(fake, ctx, "work")
    custody.lend(ctx, work.id, "pi")
    fake.reset_log()
    with pytest.raises(HeldByTarget):
        oauth.refresh(ctx, work.id, force=True)
    assert fake.stats().get("token_refresh", 0) == 0


def test_one_lineage_never_in_two_files(fake: FakeAnthropic, ctx: Ctx) -> None:
    work = seed_account(fake, ctx, "work")
    custody.lend(ctx, work.id, "claude-code")
    r = custody.lend(ctx, work.id, "pi")  # untouched there: it moves
    assert r.moved_from and r.moved_from.startswith("claude-code")
    assert get_target("claude-code").read(ctx.env) is None
    assert get_target("pi").read(ctx.env).tokens.access == work.tokens.access
    assert stored(ctx, "work").holder.target == "pi"
    tool_rotates(fake, ctx, "pi")  # Pi used it: it stays there
    pi_before = get_target("pi").path(ctx.env).read_bytes()
    with pytest.raises(HeldByTarget, match="in use by pi"):
        custody.lend(ctx, work.id, "opencode")
    assert get_target("opencode").read(ctx.env) is None
    assert get_target("pi").read(ctx.env) is not None
    assert get_target("pi").path(ctx.env).read_bytes() == pi_before


def test_unverifiable_change_keeps_custody(fake: FakeAnthropic, ctx: Ctx) -> None:
    work = seed_account(fake, ctx, "work")
    other = seed_account(fake, ctx, "other")
    custody.lend(ctx, work.id, "opencode")
    tool_rotates(fake, ctx, "opencode")
    fake.stop()  # offline
    hv = custody.harvest(ctx, "opencode")
    assert hv.status == "unverified"
    assert stored(ctx, "work").holder is not None
    with pytest.raises(HeldByTarget):
        custody.lend(ctx, other.id, "opencode")


def test_lend_refreshes_a_stale_token_while_the_store_holds_it(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    work = seed_account(fake, ctx, "work", expires_in=60)
    custody.lend(ctx, work.id, "opencode")
    entry = get_target("opencode").read(ctx.env)
    assert entry.tokens.access != work.tokens.access
    assert entry.tokens.expires_at > time.time() + 3600
    assert stored(ctx, "work").tokens.access == entry.tokens.access


def test_access_token_for_reads_the_live_file(fake: FakeAnthropic, ctx: Ctx) -> None:
    fake.configure(omit_refresh_token=True)
    work = seed_account(fake, ctx, "work")
    assert custody.access_token_for(ctx, stored(ctx, "work")) == work.tokens.access
    custody.lend(ctx, work.id, "pi")
    answer = tool_refresh(fake, work.tokens.refresh)
    tool_writes(ctx, "pi", {**answer, "refresh_token": work.tokens.refresh})
    assert custody.access_token_for(ctx, stored(ctx, "work")) == answer["access_token"]
    api = Account(name="key", kind="api_key", api_key="sk-ant-api03-x")
    assert custody.access_token_for(ctx, api) is None


def test_adopts_a_stored_lineage_found_without_a_record(fake: FakeAnthropic, ctx: Ctx) -> None:
    seed_account(fake, ctx, "work")
    get_target("pi").write(ctx.env, stored(ctx, "work"))  # e.g. a crash before custody was recorded
    hv = custody.harvest(ctx, "pi")
    assert hv.status == "adopted"
    assert stored(ctx, "work").holder is not None


def test_crash_between_claim_and_write_is_repaired(fake: FakeAnthropic, ctx: Ctx) -> None:
    work = seed_account(fake, ctx, "work")
    home = seed_account(fake, ctx, "home")
    custody.lend(ctx, work.id, "pi")
    custody._claim(
        ctx, home.id, "pi", custody.holder_path(get_target("pi").path(ctx.env))
    )  # then "crash"
    hv = custody.harvest(ctx, "pi")
    assert hv.status == "unchanged" and hv.account_name == "work" and hv.released == ("home",)
    assert stored(ctx, "home").holder is None and stored(ctx, "work").holder is not None


def test_removed_entry_releases_custody(fake: FakeAnthropic, ctx: Ctx, tmp_path: Path) -> None:
    work = seed_account(fake, ctx, "work")
    custody.lend(ctx, work.id, "claude-code")
    get_target("claude-code").remove(ctx.env)
    hv = custody.harvest(ctx, "claude-code")
    assert hv.status == "absent" and hv.released == ("work",)
    assert stored(ctx, "work").holder is None

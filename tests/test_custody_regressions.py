"""Custody regressions, each named after the symptom it once had (against the fake server)."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from acct.base.errors import AcctError, HeldByTarget, NeedsLogin, NetworkError
from acct.services import custody, oauth
from acct.services.context import Ctx
from acct.services.targets import get_target
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic
from tests.test_custody import stored, tool_refresh, tool_rotates, tool_writes


def _revoked(fake: FakeAnthropic, refresh_token: str) -> bool:
    return bool(fake.lineage(refresh_token=refresh_token)["revoked"])


# --- --force over a change acct could not check ------------------------------------------------


def test_forced_lend_over_an_unverified_change_does_not_hand_back_a_spent_token(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    work = seed_account(fake, ctx, "work")
    other = seed_account(fake, ctx, "other")
    custody.lend(ctx, work.id, "opencode")
    rotated = tool_rotates(fake, ctx, "opencode")  # OpenCode spent work's stored refresh token
    fake.configure(profile_fail_status=503)  # and acct cannot check whose the file is now
    with pytest.raises(HeldByTarget) as refused:
        custody.lend(ctx, other.id, "opencode")
    assert refused.value.hint and "--force" in refused.value.hint
    assert "work will need a new login" in refused.value.hint
    r = custody.lend(ctx, other.id, "opencode", force=True)
    fake.configure(profile_fail_status=None)
    assert r.lost == ("work",) and r.returned == ()
    w = stored(ctx, "work")
    assert w.holder is None and w.needs_login
    fake.reset_log()
    with pytest.raises(NeedsLogin):
        oauth.refresh(ctx, work.id, force=True)
    assert fake.stats().get("token_refresh", 0) == 0  # the spent token is never sent
    assert not _revoked(fake, rotated["refresh_token"])


# --- two acct processes on one file ----------------------------------------------------------------


def test_harvest_during_a_lend_does_not_leave_the_file_without_a_record(
    fake: FakeAnthropic, ctx: Ctx, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = seed_account(fake, ctx, "work")
    home = seed_account(fake, ctx, "home")
    custody.lend(ctx, work.id, "pi")
    other_process: dict[str, Any] = {}
    real_claim = custody._claim

    def claim_while_another_process_harvests(*args: Any, **kwargs: Any) -> Any:
        claimed = real_claim(*args, **kwargs)
        # Another acct process (say an `acct exec` whose tool just exited) harvests the file now.
        worker = threading.Thread(
            target=lambda: other_process.update(hv=custody.harvest(Ctx(env=ctx.env), "pi"))
        )
        worker.start()
        worker.join(timeout=1.0)  # it must wait for this lend to finish
        other_process["worker"] = worker
        return claimed

    monkeypatch.setattr(custody, "_claim", claim_while_another_process_harvests)
    custody.lend(ctx, home.id, "pi")
    other_process["worker"].join(timeout=60)
    entry = get_target("pi").read(ctx.env)
    assert entry is not None and entry.tokens.refresh == home.tokens.refresh
    h = stored(ctx, "home")
    assert h.holder is not None and h.holder.fingerprint == entry.lineage_fingerprint
    assert stored(ctx, "work").holder is None
    assert other_process["hv"].status == "unchanged" and other_process["hv"].account_name == "home"


def test_target_locks_are_one_per_real_file_and_reentrant(
    ctx: Ctx, home: Path, tmp_path: Path
) -> None:
    real = tmp_path / "auth.json"
    link = home / "link.json"
    link.symlink_to(real)
    with custody.target_lock(ctx, real), custody.target_lock(ctx, link, real):
        locks = sorted(p.name for p in ctx.paths.locks_dir.iterdir())
    assert locks == [f"target-{custody.fingerprint(str(real.resolve()))}.lock"]


# --- a failure after the credentials were written ------------------------------------------------


def test_failed_identity_update_keeps_custody_of_the_written_lineage(
    fake: FakeAnthropic, ctx: Ctx, home: Path, acct: AcctRunner
) -> None:
    a = seed_account(fake, ctx, "a")
    seed_account(fake, ctx, "b")
    # ~/.claude.json points where nothing can be written: the identity merge fails.
    os.symlink("/proc/1/nonexistent/claude.json", home / ".claude.json")
    r = custody.lend(ctx, a.id, "claude-code")
    assert r.warnings and "updating its other settings failed" in r.warnings[0]
    entry = get_target("claude-code").read(ctx.env)
    assert entry is not None and entry.tokens.refresh == a.tokens.refresh
    held = stored(ctx, "a").holder
    assert held is not None and held.fingerprint == entry.lineage_fingerprint
    p = acct("use", "b")
    assert p.returncode == 0, p.stderr
    assert "warning" in p.stderr and "updating its other settings failed" in p.stderr
    assert stored(ctx, "b").holder is not None and stored(ctx, "a").holder is None
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx))


def test_unwritable_credentials_file_is_a_clear_error_and_leaves_no_claim(
    fake: FakeAnthropic, ctx: Ctx, home: Path
) -> None:
    a = seed_account(fake, ctx, "a")
    path = get_target("claude-code").path(ctx.env)
    path.parent.mkdir(parents=True)
    os.symlink("/proc/1/nonexistent/credentials.json", path)
    with pytest.raises(AcctError, match="/proc/1/nonexistent"):
        custody.lend(ctx, a.id, "claude-code")
    assert stored(ctx, "a").holder is None


# --- an API key where the OAuth entry goes -----------------------------------------------------


@pytest.mark.parametrize(
    ("target", "kind"), [("opencode", "api"), ("pi", "api_key"), ("pi", "api")]
)
def test_api_key_in_the_tools_file_is_not_destroyed_without_force(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, target: str, kind: str
) -> None:
    seed_account(fake, ctx, "a")
    path = get_target(target).path(ctx.env)
    path.parent.mkdir(parents=True)
    key = "sk-ant-api03-USERKEY"
    path.write_text(json.dumps({"anthropic": {"type": kind, "key": key}}))
    p = acct("use", "a", "--target", target)
    assert p.returncode == 1
    assert "API key" in p.stderr and "acct login NAME --api-key" in p.stderr
    assert "--force" in p.stderr
    assert json.loads(path.read_text())["anthropic"]["key"] == key
    assert stored(ctx, "a").holder is None
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx) | {key})
    p = acct("use", "a", "--target", target, "--force")
    assert p.returncode == 0, p.stderr
    assert json.loads(path.read_text())["anthropic"]["type"] == "oauth"


# --- a stored account's login found in a file it was not recorded at -------------------------------


def test_old_session_writing_back_a_switched_account_keeps_its_only_live_lineage(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    work = seed_account(fake, ctx, "work", expires_in=600)
    home = seed_account(fake, ctx, "home")
    custody.lend(ctx, work.id, "claude-code")
    in_memory = get_target("claude-code").read(ctx.env).tokens  # a long-running session's copy
    custody.lend(ctx, home.id, "claude-code")  # the switch: work's lineage is back in the store
    # The old session refreshes its copy (spending the stored token) and writes it back.
    answer = tool_refresh(fake, in_memory.refresh)
    tool_writes(ctx, "claude-code", answer)
    hv = custody.harvest(ctx, "claude-code")
    assert hv.status == "adopted" and hv.account_name == "work" and hv.released == ("home",)
    w = stored(ctx, "work")
    assert w.tokens.refresh == answer["refresh_token"] and w.holder is not None
    r = custody.lend(ctx, home.id, "claude-code")
    assert r.returned == ("work",)
    refreshed = oauth.refresh(ctx, work.id, force=True)  # the live lineage, from the store
    assert refreshed.tokens.refresh != answer["refresh_token"]
    assert not _revoked(fake, answer["refresh_token"])


@pytest.mark.parametrize("recorded", [False, True])
def test_second_login_of_an_account_lent_elsewhere_is_not_overwritten_without_force(
    fake: FakeAnthropic, ctx: Ctx, recorded: bool
) -> None:
    work = seed_account(fake, ctx, "work")
    home = seed_account(fake, ctx, "home")
    custody.lend(ctx, work.id, "pi")
    if recorded:
        custody.lend(ctx, home.id, "claude-code")  # then the user runs /login as work in it
    second = fake.mint(work.uuid)
    tool_writes(ctx, "claude-code", second)
    before = get_target("claude-code").path(ctx.env).read_bytes()
    with pytest.raises(HeldByTarget, match="another login of work") as refused:
        custody.lend(ctx, home.id, "claude-code")
    assert "pi" in str(refused.value) and "--force" in (refused.value.hint or "")
    assert get_target("claude-code").path(ctx.env).read_bytes() == before
    pi_holder = stored(ctx, "work").holder
    assert pi_holder is not None and pi_holder.target == "pi"
    custody.lend(ctx, home.id, "claude-code", force=True)
    assert get_target("claude-code").read(ctx.env).tokens.refresh == home.tokens.refresh
    assert stored(ctx, "work").holder == pi_holder  # the other file keeps its record


def test_older_login_of_a_stored_account_is_not_taken_over_the_newer_one(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    work = seed_account(fake, ctx, "work")
    home = seed_account(fake, ctx, "home")
    custody.lend(ctx, home.id, "pi")
    old = fake.mint(work.uuid, expires_in=3600)  # issued hours before the stored one
    tool_writes(ctx, "pi", old)
    hv = custody.harvest(ctx, "pi")
    assert hv.status == "foreign" and hv.known_id == work.id
    w = stored(ctx, "work")
    assert w.tokens == work.tokens and w.holder is None
    custody.lend(ctx, home.id, "pi")  # nothing acct needs is lost: allowed
    assert get_target("pi").read(ctx.env).tokens.refresh == home.tokens.refresh


# --- a failed refresh after the account was taken out of a file -----------------------------------


def _time_passes(ctx: Ctx, name: str, target: str, left: int) -> None:
    """The lent account's access token now has ``left`` seconds to live, in the file and store."""
    t = get_target(target)
    path = t.path(ctx.env)
    doc = json.loads(path.read_text())
    doc["anthropic"]["expires"] = int((time.time() + left) * 1000)
    path.write_text(json.dumps(doc))
    with ctx.store.transaction() as accounts:
        acc = accounts.get(name)
        assert acc.tokens is not None
        tokens = replace(acc.tokens, expires_at=int(time.time()) + left)
        accounts.put(acc.copy(tokens=tokens))


@pytest.mark.parametrize("to", ["opencode", "pi"])
def test_failed_refresh_after_reclaim_leaves_the_tools_file_with_its_login(
    fake: FakeAnthropic, ctx: Ctx, to: str
) -> None:
    work = seed_account(fake, ctx, "work")
    custody.lend(ctx, work.id, "opencode")
    _time_passes(ctx, "work", "opencode", 30)  # OpenCode was idle: due for a refresh
    fake.configure(token_fail_status=503)  # and the token endpoint is down
    with pytest.raises(NetworkError):
        custody.lend(ctx, work.id, to)  # taken back to refresh it; the refresh fails
    entry = get_target("opencode").read(ctx.env)
    assert entry is not None and entry.tokens.refresh == work.tokens.refresh
    held = stored(ctx, "work").holder
    assert held is not None and held.target == "opencode"
    assert get_target("pi").read(ctx.env) is None


# --- import of a login the tool left idle --------------------------------------------------------


def _idle_login(fake: FakeAnthropic, ctx: Ctx, target: str, uuid: str) -> dict[str, Any]:
    tok = fake.mint(uuid, expires_in=-10)  # its access token expired while the tool sat idle
    path = get_target(target).path(ctx.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    expired = int(time.time() * 1000) - 10_000
    if target == "claude-code":
        entry = {
            "accessToken": tok["access_token"],
            "refreshToken": tok["refresh_token"],
            "expiresAt": expired,
            "scopes": tok["scope"].split(),
            "subscriptionType": "max",
        }
        doc: dict[str, Any] = {"claudeAiOauth": entry, "mcpOAuth": {"k": 1}}
    else:
        entry = {
            "type": "oauth",
            "access": tok["access_token"],
            "refresh": tok["refresh_token"],
            "expires": expired,
        }
        doc = {"anthropic": entry, "openai": {"type": "api", "key": "x"}}
    path.write_text(json.dumps(doc))
    return tok


@pytest.mark.parametrize("target", ["claude-code", "pi"])
def test_import_of_a_login_whose_access_token_expired(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, target: str
) -> None:
    fa = fake.add_account(email="idle@example.com")
    tok = _idle_login(fake, ctx, target, fa["uuid"])
    fake.reset_log()
    p = acct("import", target)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("added idle")
    assert fake.stats().get("token_refresh", 0) == 1  # refreshed once, as the tool would
    path = get_target(target).path(ctx.env)
    doc = json.loads(path.read_text())
    assert ("mcpOAuth" if target == "claude-code" else "openai") in doc  # other keys kept
    entry = get_target(target).read(ctx.env)
    assert entry is not None and entry.tokens.fresh_for(3600)
    assert entry.tokens.refresh != tok["refresh_token"]  # the rotated pair is in the file
    acc = stored(ctx, "idle")
    assert acc.tokens.refresh == entry.tokens.refresh  # the same lineage, and the file holds it
    assert acc.holder is not None and acc.holder.fingerprint == entry.lineage_fingerprint
    assert not _revoked(fake, entry.tokens.refresh)
    lock = get_target(target).lock_dir(ctx.env, path)
    assert lock is not None and not lock.exists()  # the tool's lock is let go
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx) | {tok["refresh_token"]})


def test_import_of_an_expired_opencode_login_says_what_to_do(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    fa = fake.add_account(email="idle@example.com")
    tok = _idle_login(fake, ctx, "opencode", fa["uuid"])
    before = get_target("opencode").path(ctx.env).read_bytes()
    fake.reset_log()
    p = acct("import", "opencode")
    assert p.returncode == 4
    assert "run opencode once so it refreshes its login" in p.stderr
    assert fake.stats().get("token_refresh", 0) == 0  # OpenCode takes no lock: nothing spent
    assert get_target("opencode").path(ctx.env).read_bytes() == before
    assert not _revoked(fake, tok["refresh_token"])


# --- acct exec must never log another tool out ----------------------------------------------------


def test_lend_without_move_leaves_an_account_lent_elsewhere_where_it_is(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    work = seed_account(fake, ctx, "work")
    custody.lend(ctx, work.id, "pi")
    pi_file = get_target("pi").path(ctx.env)
    before = pi_file.read_bytes()
    with pytest.raises(HeldByTarget) as refused:
        custody.lend(ctx, work.id, "claude-code", move=False)
    assert "pi" in refused.value.message
    assert pi_file.read_bytes() == before
    assert stored(ctx, "work").holder.target == "pi"
    assert not get_target("claude-code").path(ctx.env).exists()
    # Moving is what `acct use` does, explicitly.
    custody.lend(ctx, work.id, "claude-code")
    assert stored(ctx, "work").holder.target == "claude-code"


# --- what a person sees --------------------------------------------------------------------------


def test_refusal_shows_the_access_token_fingerprint_that_status_shows(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    work = seed_account(fake, ctx, "work")
    stranger = fake.add_account(email="stranger@example.com")
    answer = fake.mint(stranger["uuid"])
    tool_writes(ctx, "claude-code", answer)
    entry = get_target("claude-code").read(ctx.env)
    assert entry is not None
    with pytest.raises(HeldByTarget) as caught:
        custody.lend(ctx, work.id, "claude-code")
    assert f"fp {custody.fingerprint(answer['access_token'])}" in caught.value.message
    assert entry.lineage_fingerprint not in caught.value.message


def test_lock_files_do_not_end_in_lock_lock(fake: FakeAnthropic, ctx: Ctx) -> None:
    work = seed_account(fake, ctx, "work", expires_in=60)
    oauth.refresh(ctx, work.id, force=True)
    custody.lend(ctx, work.id, "claude-code")
    names = sorted(p.name for p in ctx.paths.locks_dir.iterdir())
    assert f"account-{work.id}.lock" in names
    assert [n for n in names if n.endswith(".lock.lock")] == []

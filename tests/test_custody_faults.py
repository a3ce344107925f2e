"""Custody under faults, each test named after the symptom it once had (against the fake server
that revokes a whole chain when a spent refresh token comes back)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from acct.base.errors import HeldByTarget
from acct.services import custody, oauth
from acct.services.context import Ctx
from acct.services.targets import get_target
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic
from tests.test_custody import stored, tool_refresh
from tests.test_custody_regressions import _time_passes


def _revoked(fake: FakeAnthropic, refresh_token: str) -> bool:
    return bool(fake.lineage(refresh_token=refresh_token)["revoked"])


def _pi_entry(ctx: Ctx, access: str, refresh: str | None, expires_in: int) -> None:
    """Pi's file as the tool writes it (``refresh`` may be JSON null)."""
    path = get_target("pi").path(ctx.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    doc["anthropic"] = {
        "type": "oauth",
        "access": access,
        "refresh": refresh,
        "expires": int((time.time() + expires_in) * 1000),
    }
    path.write_text(json.dumps(doc))


# --- 4: an entry with "refresh": null ------------------------------------------------------------


def test_harvest_of_an_entry_with_a_null_refresh_token_wiped_the_live_one(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    work = seed_account(fake, ctx, "work")
    assert work.tokens is not None and work.tokens.refresh
    custody.lend(ctx, work.id, "pi")
    # The token endpoint answers without a refresh token (the old one stays live), and the
    # tool writes what it got: "refresh": null.
    fake.configure(omit_refresh_token=True)
    answer = tool_refresh(fake, work.tokens.refresh)
    assert "refresh_token" not in answer
    fake.configure(omit_refresh_token=False)
    _pi_entry(ctx, answer["access_token"], None, answer["expires_in"])
    hv = custody.harvest(ctx, "pi")
    assert hv.status == "harvested" and hv.account_name == "work"
    w = stored(ctx, "work")
    assert w.tokens is not None and w.tokens.access == answer["access_token"]
    assert w.tokens.refresh == work.tokens.refresh  # the live one, kept
    # The lineage comes back and refreshes as the live chain it is.
    custody.reclaim(ctx, work.id)
    renewed = oauth.refresh(ctx, work.id, force=True)
    assert renewed.tokens is not None and renewed.tokens.refresh != work.tokens.refresh
    assert not _revoked(fake, renewed.tokens.refresh)


# --- 5: a refresh whose answer was lost ----------------------------------------------------------


def test_use_after_a_lost_refresh_answer_lent_the_spent_token_with_exit_0(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    # Ten minutes left: below the refresh margin, so `use` refreshes first; still usable by Pi.
    work = seed_account(fake, ctx, "work", expires_in=600)
    fake.configure(token_hangup_times=1)  # the server rotates the lineage; the answer is lost
    p = acct("use", "work", "--target", "pi")
    assert fake.stats()["token_refresh"] == 1
    assert p.returncode == 1, p.stderr
    assert "the refresh may have gone through" in p.stderr
    assert "acct did not lend 'work' to pi" in p.stderr
    assert "acct refresh work" in p.stderr and "acct login work" in p.stderr
    assert get_target("pi").read(ctx.env) is None  # the maybe-spent token was not handed out
    w = stored(ctx, "work")
    assert w.holder is None
    # What the user is told to do tells which it was: here the lineage had rotated.
    r = acct("refresh", "work")
    assert r.returncode == 4 and "acct login work" in r.stderr
    assert stored(ctx, "work").needs_login
    assert_no_secrets([p.stdout, p.stderr, r.stdout, r.stderr], store_secrets(ctx))
    assert work.tokens is not None


def test_use_after_a_lost_refresh_answer_of_a_login_taken_back_from_the_file_puts_it_back(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    work = seed_account(fake, ctx, "work")
    custody.lend(ctx, work.id, "opencode")
    _time_passes(ctx, "work", "opencode", 600)  # idle: due for a refresh before lending again
    before = get_target("opencode").read(ctx.env)
    fake.configure(token_hangup_times=1)
    p = acct("use", "work", "--target", "opencode")
    assert p.returncode == 1 and "the refresh may have gone through" in p.stderr
    # The file holds the login it held before (put back): acct handed out nothing new.
    after = get_target("opencode").read(ctx.env)
    assert before is not None and after is not None and after.tokens == before.tokens


# --- 9: a dead login in the tool's file ----------------------------------------------------------


def _dead_login_in_pi(fake: FakeAnthropic, ctx: Ctx) -> dict[str, Any]:
    gone = fake.add_account(email="gone@example.com")
    tok = fake.mint(gone["uuid"])
    fake.revoke(gone["uuid"])  # the server refuses it now (401 for its access token)
    _pi_entry(ctx, tok["access_token"], tok["refresh_token"], 3600)
    doc = json.loads(get_target("pi").path(ctx.env).read_text())
    doc["openai"] = {"type": "api", "key": "x"}  # another provider's login, to be kept
    get_target("pi").path(ctx.env).write_text(json.dumps(doc))
    return tok


def test_a_dead_login_in_the_tools_file_blocked_use_saying_replacing_it_would_lose_it(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    work = seed_account(fake, ctx, "work")
    tok = _dead_login_in_pi(fake, ctx)
    p = acct("use", "work", "--target", "pi")
    assert p.returncode == 0, p.stderr
    assert "would lose it" not in p.stderr
    assert "refuses" in p.stderr and "signed out" in p.stderr
    entry = get_target("pi").read(ctx.env)
    assert entry is not None and work.tokens is not None
    assert entry.tokens.refresh == work.tokens.refresh
    assert "openai" in json.loads(get_target("pi").path(ctx.env).read_text())
    assert_no_secrets([p.stdout, p.stderr], store_secrets(ctx) | {tok["refresh_token"]})


def test_a_dead_login_in_the_tools_file_blocked_exec(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], tmp_path: Path
) -> None:
    from tests.test_interrupts import exec_env

    work = seed_account(fake, ctx, "work", five_hour=1, seven_day=1)
    _dead_login_in_pi(fake, ctx)
    xenv = exec_env(env, fake, tmp_path, tmp_path / "tool.jsonl")
    p = AcctRunner(xenv)("exec", "--no-proxy", "--", "pi", "-p", "hi")
    assert p.returncode == 0, p.stderr
    assert "would lose it" not in p.stderr
    entry = get_target("pi").read(ctx.env)
    assert entry is not None and entry.tokens.refresh  # the tool ran on work's login
    assert stored(ctx, "work").holder is not None
    assert work.tokens is not None


def test_import_of_a_dead_login_said_only_that_the_profile_endpoint_refused_a_token(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    _dead_login_in_pi(fake, ctx)
    before = get_target("pi").path(ctx.env).read_bytes()
    p = acct("import", "pi")
    assert p.returncode == 4
    assert "signed out" in p.stderr and "/login" in p.stderr
    assert get_target("pi").path(ctx.env).read_bytes() == before
    assert list(ctx.store.read()) == []


# --- 11: invalid_client --------------------------------------------------------------------------


def test_invalid_client_said_nothing_useful_and_was_not_told_apart(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work", expires_in=60)  # due for a refresh
    fake.configure(token_invalid_client=True)
    r = acct("refresh", "work")
    assert r.returncode == 1, r.stderr  # an error of acct's setup, not "needs login" (4)
    assert "invalid_client" in r.stderr and "no account can be refreshed" in r.stderr
    assert "ACCT_TOKEN_URL" in r.stderr
    u = acct("use", "work", "--target", "pi")
    assert u.returncode == 1 and "invalid_client" in u.stderr
    ls = acct("list", "--usage", "--json")
    assert ls.returncode == 0, ls.stderr
    w = stored(ctx, "work")
    assert not w.needs_login and w.holder is None  # nothing marked
    row = json.loads(ls.stdout)["accounts"][0]
    assert "needs" not in json.dumps(row.get("state", "")).lower()
    fake.configure(token_invalid_client=False)
    assert acct("refresh", "work").returncode == 0  # the account was fine all along


# --- 3: a full disk ------------------------------------------------------------------------------


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || mount -t tmpfs -o size=64k tmpfs /tmp",
        ],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


_FULL_DISK = r"""
set -u
mkdir -p "$KEEP"
cp -a "$LOCAL/." "$KEEP/"
mount -t tmpfs -o size=1m tmpfs "$LOCAL"
cp -a "$KEEP/." "$LOCAL/"
dd if=/dev/zero of="$LOCAL/fill" bs=4096 >/dev/null 2>&1 || true
"$PY" -m acct refresh work > "$OUT/1.out" 2> "$OUT/1.err"; echo $? > "$OUT/1.rc"
rm -f "$LOCAL/fill"
"$PY" -m acct refresh work > "$OUT/2.out" 2> "$OUT/2.err"; echo $? > "$OUT/2.rc"
rm -rf "$KEEP"; mkdir -p "$KEEP"; cp -a "$LOCAL/." "$KEEP/"
"""


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs a user namespace to mount a small tmpfs")
def test_refresh_on_a_full_disk_spent_the_token_and_dropped_the_answer(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    acc = seed_account(fake, ctx, "work")
    assert acc.tokens is not None
    ctx.state.close()
    local, keep, out = home / ".local", tmp_path / "keep", tmp_path / "out"
    out.mkdir()
    fake.reset_log()
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _FULL_DISK],
        env={**env, "LOCAL": str(local), "KEEP": str(keep), "OUT": str(out), "PY": sys.executable},
        cwd=str(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    first_err = (out / "1.err").read_text()
    assert (out / "1.rc").read_text().strip() == "1", first_err
    assert "nothing was sent" in first_err and "free some disk space" in first_err
    assert (out / "2.rc").read_text().strip() == "0", (out / "2.err").read_text()
    assert fake.stats()["token_refresh"] == 1  # the full disk sent nothing; the retry, once
    # The store (copied out of the small disk) holds the one live link of the chain.
    shutil.rmtree(local)
    shutil.copytree(keep, local, symlinks=True)
    after = Ctx(env=env).store.read().get("work")
    assert after.tokens is not None and after.tokens.refresh != acc.tokens.refresh
    lineage = fake.lineage(refresh_token=after.tokens.refresh)
    assert not lineage["revoked"] and lineage["live_refresh_sha8"] == fake.sha8(
        after.tokens.refresh
    )
    assert not [p for p in local.rglob("*.room")]  # no reserved room left behind
    assert_no_secrets([first_err, (out / "2.err").read_text()], {acc.tokens.refresh})
    assert os.path.exists(local)


def test_an_expired_dead_login_in_the_tools_file_blocked_use(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    """Its access token expired, so only the token endpoint can say it is dead (invalid_grant):
    acct renews it in place as Pi would, under Pi's lock, and replaces it once refused."""
    work = seed_account(fake, ctx, "work")
    gone = fake.add_account(email="gone@example.com")
    tok = fake.mint(gone["uuid"], expires_in=-10)
    fake.revoke(gone["uuid"])
    _pi_entry(ctx, tok["access_token"], tok["refresh_token"], -10)
    p = acct("use", "work", "--target", "pi")
    assert p.returncode == 0, p.stderr
    assert "would lose it" not in p.stderr and "signed out" in p.stderr
    entry = get_target("pi").read(ctx.env)
    assert entry is not None and work.tokens is not None
    assert entry.tokens.refresh == work.tokens.refresh
    assert stored(ctx, "work").holder is not None


def test_an_expired_live_login_in_the_tools_file_is_renewed_and_still_kept(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    """The same check on a login that is alive: renewed in its file, then known to be someone
    acct does not track, so it is not overwritten."""
    seed_account(fake, ctx, "work")
    other = fake.add_account(email="other@example.com")
    tok = fake.mint(other["uuid"], expires_in=-10)
    _pi_entry(ctx, tok["access_token"], tok["refresh_token"], -10)
    p = acct("use", "work", "--target", "pi")
    assert p.returncode == 1 and "other@example.com" in p.stderr and "would lose it" in p.stderr
    entry = get_target("pi").read(ctx.env)
    assert entry is not None and entry.tokens.refresh != tok["refresh_token"]  # renewed in place
    assert not _revoked(fake, entry.tokens.refresh)


# --- 1: the account a running session uses -------------------------------------------------------


def _another_session_on(ctx: Ctx, target: str, account_id: str) -> subprocess.Popen[bytes]:
    """A live ``acct exec`` session of another process on the target's default file."""
    from acct.services import sessions
    from acct.services.state import SessionRow

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    key = custody.holder_path(get_target(target).path(ctx.env))

    def make(rows: list[SessionRow]) -> SessionRow:
        return SessionRow(
            id="other",
            pid=proc.pid,
            pid_start=sessions.start_of(proc.pid),
            child_pid=None,
            child_start=None,
            target=target,
            path=key,
            isolated=False,
            account_id=account_id,
            started_at=time.time(),
        )

    ctx.state.add_session(make)
    return proc


def test_second_lend_of_a_running_sessions_account_took_its_login_out_and_spent_it(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    work = seed_account(fake, ctx, "work")
    custody.lend(ctx, work.id, "pi")
    _time_passes(ctx, "work", "pi", 600)  # below refresh_margin: a lend would refresh it
    proc = _another_session_on(ctx, "pi", work.id)
    try:
        before = get_target("pi").path(ctx.env).read_bytes()
        fake.reset_log()
        r = custody.lend(ctx, work.id, "pi")
        assert r.already and r.in_use_by == (proc.pid,)
        p = acct("use", "work", "--target", "pi")
        assert p.returncode == 0, p.stderr
        assert f"a running acct exec (pid {proc.pid}) uses this login" in p.stderr
        forced = acct("use", "work", "--target", "pi", "--force")
        assert forced.returncode == 0 and "(already there)" in forced.stdout
        with pytest.raises(HeldByTarget, match="running acct exec"):
            custody.reclaim(ctx, work.id)
        moved = acct("use", "work", "--target", "opencode")
        assert moved.returncode == 1 and "running acct exec" in moved.stderr
        assert get_target("pi").path(ctx.env).read_bytes() == before  # never emptied
        assert fake.stats().get("token_refresh", 0) == 0  # the tool's lineage was not spent
    finally:
        proc.kill()
        proc.wait()
    # Once that session is gone, the lend refreshes as before.
    r = custody.lend(ctx, work.id, "pi")
    assert not r.already and fake.stats()["token_refresh"] == 1


def test_exec_after_a_lost_refresh_answer_runs_another_account_and_says_why(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], tmp_path: Path
) -> None:
    from tests.test_interrupts import exec_env

    seed_account(fake, ctx, "work", expires_in=600, five_hour=1, seven_day=1)  # picked first
    home = seed_account(fake, ctx, "home", five_hour=50, seven_day=50)
    fake.configure(token_hangup_times=1)  # work's refresh rotates; its answer is lost
    xenv = exec_env(env, fake, tmp_path, tmp_path / "tool.jsonl")
    p = AcctRunner(xenv)("exec", "--no-proxy", "--target", "pi", "--", "pi", "-p", "hi")
    assert p.returncode == 0, p.stderr
    assert "the refresh may have gone through" in p.stderr and "trying another account" in p.stderr
    entry = get_target("pi").read(ctx.env)
    assert entry is not None and home.tokens is not None
    assert entry.tokens.refresh == home.tokens.refresh  # the maybe-spent token went nowhere
    assert stored(ctx, "work").holder is None

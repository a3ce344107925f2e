"""`acct refresh`: one request per lineage link, and every failure leaves the store sound."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acct.base.fsio import file_lock
from acct.base.models import Account, Holder, Tokens
from acct.services import oauth
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic


def _in_lock_wait(pid: int) -> bool:
    """True once the process sleeps between attempts at a lock (Linux: /proc/PID/wchan)."""
    try:
        return "nanosleep" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


def _refresh_processes(env: dict[str, str], n: int, stagger: float) -> list[subprocess.Popen[str]]:
    cmd = [sys.executable, "-m", "acct", "refresh", "work", "--json"]
    procs = []
    for _ in range(n):
        procs.append(
            subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
                cwd=env["HOME"],
            )
        )
        time.sleep(stagger)
    return procs


def _one_refresh_for_all(
    fake: FakeAnthropic, ctx: Ctx, acc: Account, procs: list[subprocess.Popen[str]]
) -> None:
    """Exactly one request reached the server; every process ended with the same valid token."""
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    for _out, err, code in results:
        assert code == 0, err
    docs = [json.loads(out)["accounts"][0] for out, _, _ in results]
    assert fake.stats()["token_refresh"] == 1
    [after] = ctx.store.read()
    assert after.tokens and acc.tokens and after.tokens.refresh != acc.tokens.refresh
    assert {d["fingerprint"] for d in docs} == {after.fingerprint}
    assert sum(d["refreshed_here"] for d in docs) == 1
    lineage = fake.lineage(refresh_token=after.tokens.refresh)
    assert not lineage["revoked"] and lineage["refresh_count"] == 1
    assert lineage["live_refresh_sha8"] == fake.sha8(after.tokens.refresh)
    assert_no_secrets(
        [t for out, err, _ in results for t in (out, err)], store_secrets(ctx) | _secrets(acc)
    )


def test_eight_processes_started_one_after_another_send_one_refresh(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx
) -> None:
    """Started over about a second, most find the store already refreshed by the first: they
    must take those tokens rather than spend the new refresh token once more."""
    acc = seed_account(fake, ctx, "work")
    fake.reset_log()
    _one_refresh_for_all(fake, ctx, acc, _refresh_processes(env, 8, stagger=0.14))


def test_eight_processes_started_at_once_send_one_refresh(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx
) -> None:
    acc = seed_account(fake, ctx, "work")
    fake.reset_log()
    _one_refresh_for_all(fake, ctx, acc, _refresh_processes(env, 8, stagger=0))


def test_processes_that_read_the_store_before_the_refresh_send_nothing(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx
) -> None:
    """All eight looked at the old lineage before any refresh (they queue on the account's lock):
    the lineage moved on when their turn comes, so they send nothing."""
    acc = seed_account(fake, ctx, "work")
    fake.reset_log()
    with file_lock(ctx.paths.account_lock(acc.id)):
        procs = _refresh_processes(env, 8, stagger=0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(_in_lock_wait(p.pid) for p in procs):
            time.sleep(0.05)
    _one_refresh_for_all(fake, ctx, acc, procs)


def _secrets(acc: Account) -> set[str]:
    assert acc.tokens
    return {s for s in (acc.tokens.access, acc.tokens.refresh) if s}


def test_refresh_prints_the_new_expiry_and_fingerprint(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    before = seed_account(fake, ctx, "work", expires_in=600)
    proc = acct("refresh", "work")
    assert proc.returncode == 0, proc.stderr
    [after] = ctx.store.read()
    assert after.tokens and after.tokens.expires_at > time.time() + 3600
    assert (
        proc.stdout.startswith("work: refreshed; expires in ") and after.fingerprint in proc.stdout
    )
    assert_no_secrets([proc.stdout, proc.stderr], store_secrets(ctx) | _secrets(before))


def test_invalid_grant_marks_the_account_and_asks_for_a_login(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    acc = seed_account(fake, ctx, "work")
    other = seed_account(fake, ctx, "home")
    fake.revoke(acc.uuid)
    proc = acct("refresh", "work")
    assert proc.returncode == 4
    assert "acct login work" in proc.stderr
    work, home = ctx.store.read().get("work"), ctx.store.read().get("home")
    assert work.needs_login and work.tokens == acc.tokens and work.holder is None
    assert home == other
    assert fake.stats()["token_refresh"] == 1
    again = acct("refresh", "work")  # a dead lineage is not sent again
    assert again.returncode == 4 and fake.stats()["token_refresh"] == 1
    assert_no_secrets([proc.stdout, proc.stderr, again.stderr], store_secrets(ctx))


def test_server_error_is_transient_and_keeps_the_tokens(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    acc = seed_account(fake, ctx, "work")
    fake.configure(token_fail_status=503)
    proc = acct("refresh", "work")
    assert proc.returncode == 1
    assert "503" in proc.stderr and "try again later" in proc.stderr
    [after] = ctx.store.read()
    assert after.tokens == acc.tokens and not after.needs_login
    fake.configure(token_fail_status=None)
    assert acct("refresh", "work").returncode == 0


def test_a_hanging_token_endpoint_is_not_called_a_safe_retry(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    """The server rotated the lineage and its answer never came: acct says the refresh may
    have gone through, and the next refresh finds the lineage dead and asks for a login."""
    acc = seed_account(fake, ctx, "work")
    fake.configure(token_delay_ms=3000)
    with pytest.raises(oauth.RefreshUnanswered) as e:
        oauth.refresh(ctx, acc.id, force=True, timeout=0.5)
    assert "may have gone through" in e.value.message and "try again" not in e.value.message
    assert e.value.hint == "if the next refresh fails, run `acct login work`"
    [after] = ctx.store.read()
    assert after.tokens == acc.tokens and not after.needs_login

    fake.configure(token_delay_ms=0)
    again = acct("refresh", "work")
    assert again.returncode == 4
    assert "signed out" in again.stderr and "acct login work" in again.stderr
    assert ctx.store.read().get("work").needs_login
    assert fake.stats()["token_refresh"] == 2
    assert_no_secrets([again.stdout, again.stderr], store_secrets(ctx))


def test_refresh_has_no_timeout_option_to_cut_its_answer_short(acct: AcctRunner) -> None:
    proc = acct("refresh", "work", "--timeout", "1")
    assert proc.returncode == 2 and "--timeout" in proc.stderr


def _corrupt_during_the_refresh(fake: FakeAnthropic, ctx: Ctx, acc: Account) -> bytes:
    """Once the server has rotated the lineage (its answer still delayed), break the store."""
    deadline = time.monotonic() + 30
    while fake.lineage(uuid=acc.uuid)["refresh_count"] == 0:
        assert time.monotonic() < deadline, "the refresh never reached the server"
        time.sleep(0.02)
    path = ctx.paths.accounts_file
    good = path.read_bytes()
    path.write_bytes(good + b"\n[[[ not toml\n")
    return good


def test_a_refresh_answer_the_store_cannot_take_is_rescued_not_dropped(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    acc = seed_account(fake, ctx, "work")
    fake.reset_log()
    fake.configure(token_delay_ms=1500)
    proc = subprocess.Popen(
        [sys.executable, "-m", "acct", "refresh", "work"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=env["HOME"],
    )
    good = _corrupt_during_the_refresh(fake, ctx, acc)
    _, err = proc.communicate(timeout=60)
    rescue = oauth.rescue_path(ctx, acc.id)
    assert proc.returncode == 1
    assert f"the refreshed tokens of 'work' were saved to {rescue} (0600)" in err
    assert "the store could not take them: account store" in err
    assert "run `acct refresh work`, which stores them from that file" in err
    assert rescue.exists() and stat.S_IMODE(rescue.stat().st_mode) == 0o600
    assert stat.S_IMODE(rescue.parent.stat().st_mode) == 0o700

    ctx.paths.accounts_file.write_bytes(good)  # the user repairs the store
    fake.configure(token_delay_ms=0)
    again = acct("refresh", "work")
    assert again.returncode == 0, again.stderr
    # Any command stores them first (here the refresh itself finds them stored).
    assert "acct: stored the tokens an earlier refresh of 'work' could not store" in again.stderr
    assert fake.stats()["token_refresh"] == 1  # nothing spent a second time
    [after] = ctx.store.read()
    assert after.tokens and acc.tokens and after.tokens.refresh != acc.tokens.refresh
    lineage = fake.lineage(refresh_token=after.tokens.refresh)
    assert not lineage["revoked"] and lineage["live_refresh_sha8"] == fake.sha8(
        after.tokens.refresh
    )
    assert not rescue.exists()
    assert_no_secrets([err, again.stdout, again.stderr], store_secrets(ctx) | _secrets(acc))


def test_a_refresh_killed_between_its_answer_and_the_store_write_loses_nothing(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    """kill -9 once the answer is in hand but before the store takes it (the test holds the
    store's lock): the answer is already in the rescue file, and the next command stores it."""
    acc = seed_account(fake, ctx, "work")
    fake.reset_log()
    rescue = oauth.rescue_path(ctx, acc.id)
    with file_lock(ctx.paths.accounts_file, timeout=5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "acct", "refresh", "work"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, cwd=env["HOME"],
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not (rescue.exists() and _in_lock_wait(proc.pid)):
            assert proc.poll() is None and time.monotonic() < deadline, "never reached the store"
            time.sleep(0.02)
        proc.kill()
        proc.wait(timeout=30)
    assert fake.stats()["token_refresh"] == 1
    [before] = ctx.store.read()
    assert before.tokens == acc.tokens  # the store never took the answer
    assert stat.S_IMODE(rescue.stat().st_mode) == 0o600

    listed = acct("list")
    assert listed.returncode == 0, listed.stderr
    assert "acct: stored the tokens an earlier refresh of 'work' could not store" in listed.stderr
    [after] = ctx.store.read()
    assert after.tokens and acc.tokens and after.tokens.refresh != acc.tokens.refresh
    lineage = fake.lineage(refresh_token=after.tokens.refresh)
    assert not lineage["revoked"] and lineage["live_refresh_sha8"] == fake.sha8(
        after.tokens.refresh
    )
    assert not rescue.exists()
    again = acct("refresh", "work")
    assert again.returncode == 0, again.stderr
    assert not fake.lineage(uuid=acc.uuid)["revoked"]
    assert_no_secrets([listed.stdout, listed.stderr], store_secrets(ctx) | _secrets(acc))


def test_a_rescue_file_of_an_older_lineage_moves_aside_and_is_kept(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    """A rescued answer that continues a lineage the store no longer holds (the account was
    logged in again since) is not stored; it moves aside, kept for the user, and commands stop
    looking at it."""
    from acct.base.fsio import write_json
    from acct.services.oauth.refresh import _rescue_doc

    acc = seed_account(fake, ctx, "work")
    assert acc.tokens is not None
    older = Tokens("sk-ant-oat01-old", "sk-ant-ort01-old", acc.tokens.expires_at, acc.tokens.scopes)
    rescued = Tokens("sk-ant-oat01-resc", "sk-ant-ort01-resc", acc.tokens.expires_at, ())
    rescue = oauth.rescue_path(ctx, acc.id)
    write_json(rescue, _rescue_doc(acc, older, rescued))
    kept = rescue.read_bytes()
    listed = acct("list")
    assert listed.returncode == 0, listed.stderr
    assert "could not store" not in listed.stderr
    [after] = ctx.store.read()
    assert after.tokens == acc.tokens
    assert not rescue.exists()
    [aside] = list(rescue.parent.glob(f"{acc.id}.*.json"))
    assert aside.read_bytes() == kept and stat.S_IMODE(aside.stat().st_mode) == 0o600
    assert oauth.recover_refreshes(ctx) == []


def test_the_recovery_at_a_commands_start_leaves_an_account_a_refresh_holds_to_that_refresh(
    fake: FakeAnthropic, ctx: Ctx
) -> None:
    """A rescued answer is stored only under its account's lock, on a fresh read: while a
    refresh holds the lock (it adopts the answer itself, then may send), the recovery leaves it;
    storing it behind that refresh's back would have the refresh send a spent token."""
    from acct.base.fsio import write_json
    from acct.services.oauth.refresh import _rescue_doc

    acc = seed_account(fake, ctx, "work")
    assert acc.tokens is not None
    rescued = Tokens("sk-ant-oat01-next", "sk-ant-ort01-next", acc.tokens.expires_at, ())
    rescue = oauth.rescue_path(ctx, acc.id)
    write_json(rescue, _rescue_doc(acc, acc.tokens, rescued))
    with ctx.store.account_lock(acc.id, timeout=5, what="the account"):
        assert oauth.recover_refreshes(ctx) == []
        [held] = ctx.store.read()
        assert held.tokens == acc.tokens and rescue.exists()
    assert oauth.recover_refreshes(ctx) == ["work"]
    [after] = ctx.store.read()
    assert after.tokens is not None and after.tokens.refresh == rescued.refresh
    assert not rescue.exists()


def _lend(ctx: Ctx, name: str, path: str) -> None:
    with ctx.store.transaction() as accounts:
        acc = accounts.get(name)
        assert acc.tokens
        holder = Holder("claude-code", path, acc.tokens.lineage_fingerprint, int(time.time()))
        accounts.put(acc.copy(holder=holder))


def test_a_lent_lineage_is_not_refreshed(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, home: Path
) -> None:
    seed_account(fake, ctx, "work")
    path = str(home / ".claude" / ".credentials.json")
    _lend(ctx, "work", path)
    before = ctx.store.read().get("work")
    proc = acct("refresh", "work")
    assert proc.returncode == 1
    assert path in proc.stderr and "claude-code" in proc.stderr
    assert fake.stats()["token_refresh"] == 0
    assert ctx.store.read().get("work") == before


def test_refresh_all_skips_lent_accounts(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, home: Path
) -> None:
    seed_account(fake, ctx, "work")
    seed_account(fake, ctx, "home")
    _lend(ctx, "home", str(home / ".pi/agent/auth.json"))
    proc = acct("refresh", "--all", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [d["name"] for d in json.loads(proc.stdout)["accounts"]] == ["work"]
    assert "skipped home" in proc.stderr
    assert fake.stats()["token_refresh"] == 1


def test_refresh_all_reports_a_dead_account_with_its_exit_status(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work")
    dead = seed_account(fake, ctx, "old")
    fake.revoke(dead.uuid)
    proc = acct("refresh", "--all")
    assert proc.returncode == 4
    assert proc.stdout.startswith("work: refreshed") and "acct login old" in proc.stderr


def test_refresh_without_a_name_and_no_terminal_is_a_usage_error(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work")
    proc = acct("refresh")
    assert proc.returncode == 2 and "acct refresh NAME" in proc.stderr
    assert fake.stats()["token_refresh"] == 0


def test_refresh_of_an_unknown_account_is_not_found(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work")
    assert acct("refresh", "nope").returncode == 3


def test_an_api_key_account_has_nothing_to_refresh(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    key = fake.api_key(fake.add_account(email="k@example.com")["uuid"])
    assert acct("login", "ci", "--api-key", input=key).returncode == 0
    proc = acct("refresh", "ci")
    assert proc.returncode == 2 and "API key" in proc.stderr
    assert_no_secrets([proc.stdout, proc.stderr], {key})


def test_a_refresh_killed_while_its_answer_is_on_the_way_loses_nothing(
    fake: FakeAnthropic, env: dict[str, str], ctx: Ctx, acct: AcctRunner
) -> None:
    """kill -9 of acct after the server rotated the lineage and before its answer came: the
    courier that carried the request outlives acct, journals the answer, and the next command
    stores it; the spent token is never presented again."""
    acc = seed_account(fake, ctx, "work")
    fake.configure(token_delay_ms=1500)
    proc = subprocess.Popen(
        [sys.executable, "-m", "acct", "refresh", "work"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=env["HOME"],
    )
    deadline = time.monotonic() + 30
    while fake.lineage(uuid=acc.uuid)["refresh_count"] == 0:
        assert time.monotonic() < deadline, "the refresh never reached the server"
        time.sleep(0.02)
    proc.kill()
    proc.wait(timeout=30)
    journal = oauth.flight_path(ctx, acc.id)
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    [before] = ctx.store.read()
    assert before.tokens == acc.tokens  # acct died before it stored anything
    listed = acct("list")  # any command; it waits for nothing, so give the courier its answer
    deadline = time.monotonic() + 30
    while "could not store" not in listed.stderr:
        assert time.monotonic() < deadline, listed.stderr
        time.sleep(0.2)
        listed = acct("list")
    assert listed.returncode == 0, listed.stderr
    assert "acct: stored the tokens an earlier refresh of 'work' could not store" in listed.stderr
    [after] = ctx.store.read()
    assert after.tokens and acc.tokens and after.tokens.refresh != acc.tokens.refresh
    lineage = fake.lineage(refresh_token=after.tokens.refresh)
    assert not lineage["revoked"] and lineage["refresh_count"] == 1
    assert not journal.exists() and not oauth.rescue_path(ctx, acc.id).exists()
    assert lineage["live_refresh_sha8"] == fake.sha8(after.tokens.refresh)

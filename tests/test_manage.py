"""Account management: remove, rename, disable, enable, and the picker on a real terminal."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from acct.app.views import AccountView
from acct.base.models import Holder
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic


def names(ctx: Ctx) -> list[str]:
    return ctx.store.read().names()


def test_remove_with_yes_forgets_state(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    work = seed_account(fake, ctx, "work", five_hour=37.0)
    seed_account(fake, ctx, "home")
    acct("list", "--usage", check=True)
    ctx.state.bench(work.id, time.time() + 3600, kind="quota", reason="limit")
    assert ctx.state.usage(work.id) is not None
    secrets = store_secrets(ctx)
    proc = acct("remove", "work", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert names(ctx) == ["home"]
    assert ctx.state.usage(work.id) is None
    assert work.id not in ctx.state.benches()
    assert_no_secrets([proc.stdout, proc.stderr], secrets)


def test_remove_needs_confirmation_without_a_terminal(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work")
    before = ctx.paths.accounts_file.read_bytes()
    proc = acct("remove", "work")
    assert proc.returncode == 2
    assert "--yes" in proc.stderr
    assert ctx.paths.accounts_file.read_bytes() == before


def test_remove_without_a_name_and_without_a_terminal(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work")
    proc = acct("remove", "--yes")
    assert proc.returncode == 2
    assert "acct remove NAME" in proc.stderr
    assert names(ctx) == ["work"]


@pytest.mark.parametrize(
    "args",
    [
        ("remove", "nope", "--yes"),
        ("rename", "nope", "new"),
        ("disable", "nope"),
        ("enable", "nope"),
    ],
)
def test_unknown_names_exit_3_listing_the_names(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, args: tuple[str, ...]
) -> None:
    seed_account(fake, ctx, "work")
    seed_account(fake, ctx, "home")
    before = ctx.paths.accounts_file.read_bytes()
    proc = acct(*args)
    assert proc.returncode == 3
    assert "'nope'" in proc.stderr and "work" in proc.stderr and "home" in proc.stderr
    assert ctx.paths.accounts_file.read_bytes() == before


def test_remove_a_lent_account_warns_about_the_tool_file(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, home: Path
) -> None:
    seed_account(fake, ctx, "work")
    path = str(home / ".claude" / ".credentials.json")
    with ctx.store.transaction() as accounts:
        accounts.put(
            accounts.get("work").copy(
                holder=Holder("claude-code", path, "abcd1234", int(time.time()))
            )
        )
    proc = acct("remove", "work", "--yes")
    assert proc.returncode == 0
    assert names(ctx) == []
    warning = " ".join(proc.stderr.split())
    assert "claude-code's file ~/.claude/.credentials.json keeps work's login" in warning
    assert "refuse to overwrite" in warning and "--force" in warning
    assert "`acct import claude-code`" in warning


@pytest.mark.parametrize(
    "args", [("remove", "work", "--yes"), ("rename", "work", "new"), ("disable", "work")]
)
def test_corrupt_store_is_left_alone(ctx: Ctx, acct: AcctRunner, args: tuple[str, ...]) -> None:
    path = ctx.paths.accounts_file
    path.parent.mkdir(parents=True, mode=0o700)
    garbage = b"version = 1\n[[accounts]\nname = 'work'\n"
    path.write_bytes(garbage)
    proc = acct(*args)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0]
    assert path.read_bytes() == garbage


def test_rename_keeps_usage_and_benches(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    work = seed_account(fake, ctx, "work", five_hour=37.0)
    acct("list", "--usage", check=True)
    ctx.state.bench(work.id, time.time() + 3600, kind="quota", reason="limit")
    proc = acct("rename", "work", "job")
    assert proc.returncode == 0, proc.stderr
    assert names(ctx) == ["job"]
    (row,) = json.loads(acct("list", "--json", check=True).stdout)["accounts"]
    assert row["name"] == "job" and row["id"] == work.id
    assert row["usage"]["five_hour"]["utilization"] == 37.0
    assert row["state"] == "benched"
    assert len(fake.log("usage")) == 1


@pytest.mark.parametrize(("new", "code"), [("home", 2), ("bad name", 2), ("-dash", 2)])
def test_rename_refuses_taken_and_invalid_names(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, new: str, code: int
) -> None:
    seed_account(fake, ctx, "work")
    seed_account(fake, ctx, "home")
    proc = acct("rename", "work", "--", new)
    assert proc.returncode == code, proc.stderr
    assert names(ctx) == ["work", "home"]


def test_rename_with_one_name_needs_a_terminal(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "work")
    proc = acct("rename", "job")
    assert proc.returncode == 2
    assert "acct rename OLD NEW" in proc.stderr


def test_disable_and_enable(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    seed_account(fake, ctx, "work", five_hour=37.0)
    assert acct("disable", "work").returncode == 0
    assert ctx.store.read().get("work").enabled is False
    assert acct("disable", "work").returncode == 0  # idempotent
    doc = json.loads(acct("list", "--usage", "--json", check=True).stdout)
    assert doc["accounts"][0]["state"] == "disabled"
    assert fake.log("usage") == []
    assert acct("enable", "work").returncode == 0
    assert ctx.store.read().get("work").enabled is True
    doc = json.loads(acct("list", "--usage", "--json", check=True).stdout)
    assert doc["accounts"][0]["state"] == "ok"
    assert doc["accounts"][0]["usage"]["five_hour"]["utilization"] == 37.0


def test_picker_on_a_terminal_offers_the_best_account_first(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, env: dict[str, str]
) -> None:
    pexpect = pytest.importorskip("pexpect")
    seed_account(fake, ctx, "busy", five_hour=90.0)
    seed_account(fake, ctx, "idle", five_hour=5.0)
    acct("list", "--usage", check=True)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "acct", "remove"],
        env={**env, "TERM": "xterm"},
        cwd=env["HOME"],
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 160),
    )
    try:
        child.expect("Remove which account")
        child.expect("idle")
        child.send("\r")  # the first entry: the account with the most headroom
        child.expect("Remove account idle")
        child.send("y")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    assert names(ctx) == ["busy"]


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b(\[[0-9;?]*[A-Za-z]|[()][AB0-2]|[=>])", "", text)


def _spawn(env: dict[str, str], *args: str, columns: int = 80):  # type: ignore[no-untyped-def]
    import pexpect

    return pexpect.spawn(
        sys.executable,
        ["-m", "acct", *args],
        env={**env, "TERM": "xterm", "COLUMNS": str(columns)},
        cwd=env["HOME"],
        encoding="utf-8",
        timeout=20,
        dimensions=(40, columns),
    )


def test_picker_at_80_columns_echoes_only_the_chosen_name(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], home: Path
) -> None:
    pexpect = pytest.importorskip("pexpect")
    seed_account(fake, ctx, "personal@example.com", email="personal@example.com", five_hour=5.0)
    seed_account(fake, ctx, "work", five_hour=90.0)
    with ctx.store.transaction() as accounts:
        accounts.put(
            accounts.get("work").copy(
                holder=Holder("claude-code", str(home / "c.json"), "abcd1234", int(time.time()))
            )
        )
    child = _spawn(env, "remove")
    try:
        child.expect("Remove which account")
        child.expect("personal@example.com")
        child.send("\r")
        child.expect("Remove account personal@example.com")
        answered = _strip_ansi(child.before)
        child.send("n")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    # The answer line names the account and nothing of its row (state, usage, email).
    echo = re.findall(r"\? Remove which account\? ([^\r\n]*)", answered)
    assert echo and echo[-1].rstrip() == "personal@example.com", answered
    assert names(ctx) == ["personal@example.com", "work"]


def test_picker_cancel_prints_one_line(fake: FakeAnthropic, ctx: Ctx, env: dict[str, str]) -> None:
    pexpect = pytest.importorskip("pexpect")
    seed_account(fake, ctx, "work")
    child = _spawn(env, "remove")
    try:
        child.expect("Remove which account")
        child.sendcontrol("c")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    text = _strip_ansi(child.before)
    assert child.exitstatus == 130, text
    assert "acct: cancelled" in text and "Cancelled by user" not in text
    assert names(ctx) == ["work"]


def test_confirm_cancel_prints_one_line(fake: FakeAnthropic, ctx: Ctx, env: dict[str, str]) -> None:
    pexpect = pytest.importorskip("pexpect")
    seed_account(fake, ctx, "work")
    child = _spawn(env, "remove", "work")
    try:
        child.expect("Remove account work")
        child.sendcontrol("c")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    text = _strip_ansi(child.before)
    assert child.exitstatus == 130, text
    assert "acct: cancelled" in text and "Cancelled by user" not in text
    assert names(ctx) == ["work"]


def _view(name: str, **kw: object) -> AccountView:
    from acct.base.models import Window

    base: dict[str, object] = {
        "id": name,
        "name": name,
        "email": f"{name.split('@')[0]}@example.com",
        "plan": "max",
        "kind": "oauth",
        "enabled": True,
        "state": "ok",
        "fingerprint": "abcd1234",
        "last_used_at": None,
        "five_hour": Window(37.0, None),
        "seven_day": Window(5.0, None),
        "now": time.time(),
    }
    return AccountView(**{**base, **kw})  # type: ignore[arg-type]


def test_picker_rows_align_and_fit_80_columns() -> None:
    from acct.cli.picker import choice_titles

    rows = [
        _view("personal@example.com", state="held", holder_target="claude-code"),
        _view("work"),
        _view("gone", state="needs_login"),
    ]
    narrow = choice_titles(rows, 80)
    assert all(len(t) <= 76 for t in narrow), narrow
    assert len({t.index(" 5h ") for t in narrow}) == 1, narrow  # one column for 5h
    assert len({t.index(" 7d ") for t in narrow}) == 1, narrow
    assert "in claude-code" in narrow[0] and "@example.com" not in narrow[1]
    wide = choice_titles(rows, 160)
    assert "held by claude-code" in wide[0] and "work@example.com" in wide[1]
    assert len({t.index(" 5h ") for t in wide}) == 1, wide

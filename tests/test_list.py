"""`acct list`: the table, the JSON document, row states, and a store acct cannot read."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from acct.base.models import Account, Holder
from acct.services.context import Ctx
from tests.conftest import AcctRunner, assert_no_secrets, seed_account, store_secrets
from tests.fake_anthropic.client import FakeAnthropic

HEADERS = ("NAME", "EMAIL", "PLAN", "STATE", "5H", "7D", "RESETS", "USAGE AGE", "TOKEN")


def rows_by_name(stdout: str) -> dict[str, str]:
    return {line.split()[0]: line for line in stdout.splitlines()[1:] if line.strip()}


def test_no_accounts_says_how_to_add_one(acct: AcctRunner) -> None:
    proc = acct("list")
    assert proc.returncode == 0
    assert proc.stdout == ""
    assert "acct login" in proc.stderr
    doc = json.loads(acct("list", "--json", check=True).stdout)
    assert doc == {"version": 1, "kind": "accounts", "accounts": []}


def test_table_shows_cached_usage_without_network(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    work = seed_account(fake, ctx, "work", five_hour=37.0, seven_day=12.0)
    seed_account(fake, ctx, "home", plan="claude_pro", five_hour=90.0, seven_day=40.0)
    before = acct("list", check=True)
    assert fake.log("usage") == []
    assert all(h in before.stdout.splitlines()[0] for h in HEADERS)
    assert "37%" not in before.stdout

    polled = acct("list", "--usage", check=True)
    assert "polling usage of 2 accounts" in polled.stderr
    rows = rows_by_name(polled.stdout)
    assert "work@example.com" in rows["work"] and "37%" in rows["work"] and "12%" in rows["work"]
    assert work.fingerprint in rows["work"]
    assert " pro " in rows["home"] and "90%" in rows["home"]
    assert "ago" in rows["work"]

    cached = acct("list", check=True)
    assert "37%" in rows_by_name(cached.stdout)["work"]
    assert len(fake.log("usage")) == 2
    assert_no_secrets([p.stdout + p.stderr for p in acct.calls], store_secrets(ctx))


def test_ls_is_a_hidden_alias(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner) -> None:
    seed_account(fake, ctx, "work")
    assert "work@example.com" in acct("ls", check=True).stdout
    assert " ls " not in acct("--help", check=True).stdout


def test_json_document_carries_the_table_data(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    work = seed_account(fake, ctx, "work", five_hour=37.0, seven_day=12.0)
    fake.set_usage(work.uuid, weekly_scoped={"Opus": 55})
    proc = acct("list", "--usage", "--json", check=True)
    doc = json.loads(proc.stdout)
    assert doc["version"] == 1 and doc["kind"] == "accounts"
    (row,) = doc["accounts"]
    assert row["name"] == "work" and row["email"] == "work@example.com" and row["plan"] == "max"
    assert row["state"] == "ok" and row["usable"] is True
    assert row["fingerprint"] == work.fingerprint
    five = row["usage"]["five_hour"]
    assert five["utilization"] == 37.0
    assert abs(time.time() + 4 * 3600 - five["resets_at_epoch"]) < 3700
    assert five["resets_at"].endswith(("+00:00", "Z")) or "T" in five["resets_at"]
    assert row["usage"]["seven_day"]["utilization"] == 12.0
    assert row["usage"]["scoped"][0]["label"] == "Opus"
    assert row["usage"]["error"] is None
    assert row["resets_at_epoch"] == five["resets_at_epoch"]
    assert row["account_kind"] == "oauth" and "kind" not in row
    # One convention: `<x>_at` is ISO-8601, `<x>_at_epoch` whole seconds.
    assert isinstance(five["resets_at_epoch"], int)
    assert isinstance(row["usage"]["fetched_at"], str)
    assert isinstance(row["usage"]["fetched_at_epoch"], int)
    assert isinstance(row["usage"]["age_seconds"], int)
    assert "last_used_at_epoch" in row
    assert "polling" not in proc.stderr
    assert_no_secrets([proc.stdout, proc.stderr], store_secrets(ctx))
    assert "token" not in {k.lower() for k in row}


def test_row_states(fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, home: Any) -> None:
    seed_account(fake, ctx, "fine", five_hour=1.0)
    benched = seed_account(fake, ctx, "resting", five_hour=100.0)
    seed_account(fake, ctx, "lent", five_hour=20.0)
    seed_account(fake, ctx, "off", five_hour=2.0)
    seed_account(fake, ctx, "gone", five_hour=3.0)
    key_owner = fake.add_account(email="key@example.com")
    path = str(home / ".claude" / ".credentials.json")
    with ctx.store.transaction() as accounts:
        accounts.put(
            accounts.get("lent").copy(
                holder=Holder("claude-code", path, "abcd1234", int(time.time()))
            )
        )
        accounts.put(accounts.get("off").copy(enabled=False))
        accounts.put(accounts.get("gone").copy(needs_login=True))
        accounts.add(Account(name="key", kind="api_key", api_key=fake.api_key(key_owner["uuid"])))
    ctx.state.bench(benched.id, time.time() + 7200, kind="quota", reason="5-hour limit reached")

    proc = acct("list", "--usage", check=True)
    rows = rows_by_name(proc.stdout)
    assert " ok " in rows["fine"]
    assert "benched 1h59m" in rows["resting"] or "benched 2h00m" in rows["resting"]
    assert "5-hour limit reached" in rows["resting"]
    assert "held by claude-code" in rows["lent"]
    assert path not in proc.stdout  # `acct status` shows the file; the table does not repeat it
    assert "disabled" in rows["off"]
    assert "needs login" in rows["gone"]
    assert "api key" in rows["key"]
    # Disabled, logged-out and API-key accounts are not polled; benched and lent ones are.
    assert len(fake.log("usage")) == 3

    doc = {a["name"]: a for a in json.loads(acct("list", "--json", check=True).stdout)["accounts"]}
    assert doc["resting"]["state"] == "benched" and doc["resting"]["bench"]["kind"] == "quota"
    assert doc["resting"]["resets_at_epoch"] == doc["resting"]["bench"]["until_at_epoch"]
    assert doc["lent"]["state"] == "held" and doc["lent"]["usable"] is True
    assert doc["lent"]["holder"] == {"target": "claude-code", "path": path}
    assert doc["off"]["state"] == "disabled" and doc["gone"]["state"] == "needs_login"
    assert doc["key"]["account_kind"] == "api_key" and doc["key"]["usage"]["note"]
    assert_no_secrets([p.stdout + p.stderr for p in acct.calls], store_secrets(ctx))


@pytest.mark.parametrize("args", [("list",), ("list", "--usage"), ("list", "--json")])
def test_corrupt_store_is_reported_and_left_alone(
    ctx: Ctx, acct: AcctRunner, args: tuple[str, ...]
) -> None:
    path = ctx.paths.accounts_file
    path.parent.mkdir(parents=True, mode=0o700)
    garbage = b'version = 1\n[[accounts]]\nname = "work"\nid = \n\xff'
    path.write_bytes(garbage)
    proc = acct(*args)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("acct: ") and str(path) in lines[0]
    assert path.read_bytes() == garbage
    if "--json" in args:
        assert json.loads(proc.stdout)["error"]["code"] == "corrupt"


# --- width: nothing that identifies an account is cut ----------------------------------------


def _list_on_a_terminal(env: dict[str, str], columns: int) -> str:
    """`acct list` with stdout on a pseudo-terminal `columns` wide; what it showed."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "acct", "list"],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env={**env, "COLUMNS": str(columns)},
        cwd=env["HOME"],
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # bold and dim: what a terminal shows as style


def _narrow_fixture(fake: FakeAnthropic, ctx: Ctx) -> list[Account]:
    alice = seed_account(
        fake, ctx, "alice@example.com", email="alice@example.com", five_hour=37.0, seven_day=12.0
    )
    work = seed_account(fake, ctx, "work", email="bob.longname@corp.example.org", five_hour=5.0)
    gone = seed_account(fake, ctx, "gone")
    with ctx.store.transaction() as accounts:
        accounts.put(accounts.get("gone").copy(needs_login=True))
    now = time.time()
    from acct.base.models import Usage, Window

    ctx.state.put_usage(alice.id, Usage(Window(37.0, now + 3 * 3600), Window(12.0, now + 86400)))
    ctx.state.put_usage(work.id, Usage(Window(5.0, now + 3600), Window(0.0, now + 86400)))
    ctx.state.put_usage_error(gone.id, "rate_limited", "429", backoff_until=now + 600)
    return [alice, work, ctx.store.read().get("gone")]


def test_list_at_80_columns_cuts_no_name_plan_state_usage_or_token(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str]
) -> None:
    accounts = _narrow_fixture(fake, ctx)
    text = _list_on_a_terminal(env, 80)
    assert "…" not in text, text
    header = text.splitlines()[0]
    for title in ("NAME", "PLAN", "STATE", "5H", "7D", "TOKEN"):
        assert title in header, text
    for acc in accounts:
        assert acc.name in text and acc.fingerprint in text, text
    assert "needs login" in text and "37%" in text and "12%" in text and "max" in text
    # What no longer fits beside the row follows the table.
    assert "gone: usage: rate-limited, retry in" in text
    assert all(len(line) <= 80 for line in text.splitlines()), text


def test_list_into_a_pipe_is_never_cut_to_the_terminal_width(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    accounts = _narrow_fixture(fake, ctx)
    proc = acct("list", env={"COLUMNS": "40"})
    assert proc.returncode == 0, proc.stderr
    rows = rows_by_name(proc.stdout)
    assert "…" not in proc.stdout
    assert all(h in proc.stdout.splitlines()[0] for h in (*HEADERS, "NOTE"))
    assert "bob.longname@corp.example.org" in rows["work"]
    assert "usage: rate-limited, retry in" in rows["gone"]
    for acc in accounts:
        assert acc.fingerprint in rows[acc.name]


def test_email_is_left_out_when_it_only_repeats_the_name(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "alice@example.com", email="alice@example.com")
    header = acct("list", check=True).stdout.splitlines()[0]
    assert "EMAIL" not in header and "NAME" in header


def test_list_suggests_polling_only_when_a_polled_account_lacks_usage(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    seed_account(fake, ctx, "gone")
    with ctx.store.transaction() as accounts:
        accounts.put(accounts.get("gone").copy(needs_login=True))
    assert "--usage" not in acct("list", check=True).stderr  # a logged-out account is never polled
    seed_account(fake, ctx, "fresh")
    assert "`acct list --usage` fetches usage" in acct("list", check=True).stderr


# --- a held account with an email for a name; full windows ----------------------------------


def _held_fixture(fake: FakeAnthropic, ctx: Ctx, home: Any) -> list[Account]:
    from acct.base.models import Usage, Window

    personal = seed_account(fake, ctx, "personal@example.com", email="personal@example.com")
    work = seed_account(fake, ctx, "work", email="bob.longname@corp.example.org")
    path = str(home / ".claude" / ".credentials.json")
    with ctx.store.transaction() as accounts:
        accounts.put(
            accounts.get(personal.name).copy(
                holder=Holder("claude-code", path, "abcd1234", int(time.time()))
            )
        )
    now = time.time()
    ctx.state.put_usage(personal.id, Usage(Window(37.0, now + 3600), Window(12.0, now + 86400)))
    ctx.state.put_usage(work.id, Usage(Window(5.0, now + 3600), Window(0.0, now + 86400)))
    return [personal, work]


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_list_at_80_columns_with_a_held_email_name_never_wraps_a_row(
    fake: FakeAnthropic, ctx: Ctx, env: dict[str, str], home: Any
) -> None:
    pexpect = pytest.importorskip("pexpect")
    import sys

    accounts = _held_fixture(fake, ctx, home)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "acct", "list"],
        env={**env, "COLUMNS": "80", "TERM": "xterm"},
        cwd=env["HOME"],
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 80),
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    text = _strip_ansi(child.before).replace("\r\n", "\n")
    lines = [x for x in text.splitlines() if x.strip()]
    assert all(len(x) <= 80 for x in lines), text
    header = lines[0]
    # The short state words come first, then USAGE AGE goes; TOKEN still fits.
    assert "USAGE AGE" not in header and "TOKEN" in header, text
    rows = {x.split()[0]: x for x in lines[1:]}
    for acc in accounts:  # one line per account, token included: nothing wrapped
        assert acc.fingerprint in rows[acc.name], text
    assert "in claude-code" in rows["personal@example.com"] and "held by" not in text
    assert ".credentials.json" not in text  # `acct status` shows the file


def test_list_into_a_pipe_has_no_trailing_padding(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner, home: Any
) -> None:
    _held_fixture(fake, ctx, home)
    proc = acct("list", env={"COLUMNS": "80"}, check=True)
    lines = proc.stdout.splitlines()
    assert lines and all(x == x.rstrip() for x in lines), proc.stdout
    assert "USAGE AGE" in lines[0] and "EMAIL" in lines[0]  # unlimited width: every column
    assert "held by claude-code" in proc.stdout


def test_a_window_at_100_percent_shows_full_until_it_resets(
    fake: FakeAnthropic, ctx: Ctx, acct: AcctRunner
) -> None:
    from acct.base.models import Usage, Window

    now = time.time()
    five = seed_account(fake, ctx, "five")
    seven = seed_account(fake, ctx, "seven")
    reset = seed_account(fake, ctx, "reset")
    ctx.state.put_usage(five.id, Usage(Window(100.0, now + 3600), Window(40.0, now + 86400)))
    ctx.state.put_usage(seven.id, Usage(Window(100.0, now + 600), Window(100.0, now + 86400)))
    ctx.state.put_usage(reset.id, Usage(Window(100.0, now - 60), Window(30.0, now + 86400)))
    rows = rows_by_name(acct("list", check=True).stdout)
    assert "full (5h)" in rows["five"]
    assert "full (7d)" in rows["seven"]  # usable again only when the weekly window resets
    assert " ok " in rows["reset"]
    doc = {a["name"]: a for a in json.loads(acct("list", "--json", check=True).stdout)["accounts"]}
    assert doc["five"]["state"] == "full" and doc["five"]["usable"] is False
    assert doc["five"]["full_window"] == "5h"
    assert doc["seven"]["full_window"] == "7d"
    assert doc["seven"]["resets_at_epoch"] == round(now + 86400)
    assert doc["reset"]["state"] == "ok" and doc["reset"]["full_window"] is None

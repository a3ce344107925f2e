"""Every command on the pool: machines are separate HOMEs with their own ACCT_HOST_ID running
real acct processes against the fake Anthropic server and a real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from acct.base.models import Account
from acct.services.context import Ctx
from tests.conftest import assert_no_secrets, seed_account
from tests.fake_anthropic.client import FakeAnthropic

Env = dict[str, str]


def acct(env: Env, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acct", *args], env=env, capture_output=True, text=True,
        timeout=timeout, cwd=env["HOME"], stdin=subprocess.DEVNULL,
    )  # fmt: skip


def ok(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    r = acct(env, *args)
    assert r.returncode == 0, f"acct {' '.join(args)}: {r.stdout}\n{r.stderr}"
    return r


def local(env: Env) -> Env:
    """The machine's environment without the pool (to seed its local store)."""
    return {k: v for k, v in env.items() if k != "ACCT_POOL"}


@pytest.fixture
def machines(machine_env, fake: FakeAnthropic) -> Callable[[str], Env]:  # type: ignore[no-untyped-def]
    key: dict[str, str] = {}

    def make(host: str) -> Env:
        env = {**machine_env(host), **fake.env()}
        if key:
            env["ACCT_POOL_KEY"] = key["path"]
        else:
            key["path"] = str(Path(env["ACCT_HOME"]) / "config" / "pool.key")
            env["ACCT_POOL_KEY"] = key["path"]
        return env

    return make


def seed(fake: FakeAnthropic, env: Env, *names: str) -> list[Account]:
    c = Ctx(env=local(env))
    return [seed_account(fake, c, n) for n in names]


def listed(env: Env) -> dict[str, dict[str, object]]:
    doc = json.loads(ok(env, "list", "--json").stdout)
    return {a["name"]: a for a in doc["accounts"]}


def test_pool_init_moves_the_accounts_and_every_machine_sees_them(
    machines, fake: FakeAnthropic
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    made = seed(fake, laptop, "work", "home")
    r = ok(laptop, "pool", "init")
    assert "moved work into the pool" in r.stdout and "moved home into the pool" in r.stdout
    # The local store gave the accounts up and says where they went.
    text = (Path(laptop["ACCT_HOME"]) / "data" / "accounts.toml").read_text()
    assert "moved_to_pool" in text and "sk-ant-" not in text
    desk = machines("desk")
    assert sorted(listed(desk)) == ["home", "work"]
    assert sorted(listed(laptop)) == ["home", "work"]
    # Tokens are the ones the laptop had (the pool decrypted them with the copied key).
    assert all(a.tokens for a in made)
    assert_no_secrets(
        [r.stdout, r.stderr], {a.tokens.refresh for a in made if a.tokens and a.tokens.refresh}
    )


def test_an_account_lent_on_one_machine_is_refused_on_another_naming_the_machine(
    machines, fake: FakeAnthropic
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    seed(fake, laptop, "work")
    ok(laptop, "pool", "init")
    desk = machines("desk")
    ok(laptop, "use", "work", "--target", "claude-code")
    refused = acct(desk, "use", "work", "--target", "claude-code")
    assert refused.returncode != 0
    assert "on machine laptop" in refused.stderr
    assert not (Path(desk["HOME"]) / ".claude" / ".credentials.json").exists()
    st = json.loads(ok(desk, "pool", "status", "--json").stdout)
    holds = {m["host_id"]: [h["account"] for h in m["holds"]] for m in st["machines"]}
    assert holds == {"laptop": ["work"], "desk": []}


def test_a_refresh_on_one_machine_is_what_the_other_machine_uses_next(
    machines, fake: FakeAnthropic
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    (work,) = seed(fake, laptop, "work")
    ok(laptop, "pool", "init")
    desk = machines("desk")
    before = listed(desk)["work"]["fingerprint"]
    ok(desk, "refresh", "work")
    assert listed(laptop)["work"]["fingerprint"] != before
    # The laptop sees the desk's refresh as just done (the pool's tokens): it sends nothing, so
    # no spent refresh token is ever presented.
    ok(laptop, "refresh", "work")
    lineage = fake.lineage(uuid=work.uuid)
    assert not lineage["revoked"] and lineage["refresh_count"] == 1
    ok(desk, "use", "work", "--target", "claude-code")


def test_config_pool_key_turns_the_pool_on_and_a_password_in_it_is_refused(
    machines, fake: FakeAnthropic
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    seed(fake, laptop, "work")
    conninfo = laptop.pop("ACCT_POOL")
    config = Path(laptop["ACCT_HOME"]) / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'pool = "{conninfo}"\nlease_timeout = 60\n')
    ok(laptop, "pool", "init")
    assert sorted(listed(laptop)) == ["work"]
    config.write_text(f'pool = "{conninfo} password=hunter2"\n')
    r = acct(laptop, "list")
    assert r.returncode != 0 and "password" in r.stderr and "hunter2" not in r.stderr
    config.write_text('pool = ""\n')
    assert acct(laptop, "list").returncode != 0


def test_joining_keeps_one_login_of_an_account_both_machines_have(
    machines, fake: FakeAnthropic
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    (work,) = seed(fake, laptop, "work")
    ok(laptop, "pool", "init")
    desk = machines("desk")
    # The desk logged in to the same account on its own: a second lineage of it.
    c = Ctx(env=local(desk))
    tok = fake.mint(work.uuid or "")
    from acct.base.models import Tokens

    second = work.copy(
        name="mine",
        tokens=Tokens(
            tok["access_token"], tok["refresh_token"], work.tokens.expires_at if work.tokens else 0
        ),
    )
    with c.store.transaction() as accounts:
        accounts.add(second.copy(id="other-id", org_uuid=None))
    r = ok(desk, "pool", "join")
    assert "pool has another login of this account and keeps it" in r.stdout
    assert sorted(listed(desk)) == ["work"]


def test_leave_gives_the_lent_lineage_back_to_the_pool(machines, fake: FakeAnthropic) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    seed(fake, laptop, "work")
    ok(laptop, "pool", "init")
    ok(laptop, "use", "work", "--target", "claude-code")
    r = ok(laptop, "pool", "leave")
    assert "work: its lineage is back in the pool" in r.stdout
    assert "left pool" in r.stdout
    with psycopg.connect(laptop["ACCT_POOL"], autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM custody").fetchone() == (0,)
        left = conn.execute("SELECT left_at IS NOT NULL FROM machines WHERE host_id='laptop'")
        assert left.fetchone() == (True,)
    desk = machines("desk")
    ok(desk, "use", "work", "--target", "claude-code")


def test_a_command_after_leave_does_not_silently_rejoin_the_pool(
    machines, fake: FakeAnthropic
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    seed(fake, laptop, "work")
    ok(laptop, "pool", "init")
    ok(laptop, "pool", "leave")
    home = Path(laptop["HOME"])
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    for args in (("list",), ("use", "work", "--target", "claude-code"), ("refresh", "work")):
        r = acct(laptop, *args)
        assert r.returncode != 0, f"acct {' '.join(args)} ran on a machine that left: {r.stdout}"
        lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert "this machine left the pool" in lines[0]
        assert "acct pool join" in lines[0] and "unset ACCT_POOL" in lines[0]
    with psycopg.connect(laptop["ACCT_POOL"], autocommit=True) as conn:
        left = conn.execute("SELECT left_at IS NOT NULL FROM machines WHERE host_id='laptop'")
        assert left.fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM custody").fetchone() == (0,)
    after = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    assert {p: b for p, b in after.items() if p.suffix != ".lock"} == {
        p: b for p, b in before.items() if p.suffix != ".lock"
    }
    ok(laptop, "pool", "join")
    assert "work" in listed(laptop)
    with psycopg.connect(laptop["ACCT_POOL"], autocommit=True) as conn:
        left = conn.execute("SELECT left_at IS NULL FROM machines WHERE host_id='laptop'")
        assert left.fetchone() == (True,)


def test_machines_polling_usage_together_send_one_request_per_account(
    machines, fake: FakeAnthropic
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    seed(fake, laptop, "a", "b", "c")
    ok(laptop, "pool", "init")
    desk, ci = machines("desk"), machines("ci")
    fake.reset_log()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "acct", "list", "--usage", "--json"],
            env=env,
            cwd=env["HOME"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for env in (laptop, desk, ci, laptop, desk, ci)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert sorted(a["name"] for a in json.loads(out)["accounts"]) == ["a", "b", "c"]
    polls = [r for r in fake.log("usage")]
    per_account = sorted(r.get("account_uuid") for r in polls)
    assert len(per_account) == 3 and len(set(per_account)) == 3, per_account


def test_an_account_without_an_organisation_is_the_same_account_in_the_pool(
    machines, fake: FakeAnthropic
) -> None:  # type: ignore[no-untyped-def]
    """Account.same_identity and the pool's merge follow one rule: an unknown organisation
    matches the account's known one (the pool once added such a login as a second account)."""
    laptop = machines("laptop")
    (work,) = seed(fake, laptop, "work")
    ok(laptop, "pool", "init")
    desk = machines("desk")
    with Ctx(env=local(desk)).store.transaction() as accounts:
        accounts.add(work.copy(id="desk-id", name="w", org_uuid=None))
    r = ok(desk, "pool", "join")
    assert "w (as work): the pool has it already (the same login)" in r.stdout
    assert sorted(listed(desk)) == ["work"]
    assert work.same_identity(work.uuid, None)


def test_two_machines_lending_one_account_at_once_exactly_one_gets_it(
    machines, fake: FakeAnthropic
) -> None:  # type: ignore[no-untyped-def]
    laptop = machines("laptop")
    names = [f"r{i}" for i in range(5)]
    made = seed(fake, laptop, *names)
    ok(laptop, "pool", "init")
    desk = machines("desk")
    for name in names:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "acct", "use", name, "--target", "claude-code"],
                env=env,
                cwd=env["HOME"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for env in (laptop, desk)
        ]
        done = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
        codes = sorted(code for code, _ in done)
        assert codes[0] == 0 and codes[1] != 0, done
        loser = next(err for code, err in done if code != 0)
        assert "on machine" in loser, loser
    # No lineage was revoked, and the pool records one holder for the last one lent.
    assert not any(fake.lineage(uuid=a.uuid)["revoked"] for a in made)
    with psycopg.connect(laptop["ACCT_POOL"], autocommit=True) as conn:
        held = conn.execute("SELECT a.name FROM custody c JOIN accounts a ON a.id = c.account_id")
        assert len([r for r in held.fetchall() if r[0] == names[-1]]) == 1


def test_without_a_pool_no_command_imports_psycopg(tmp_path: Path) -> None:
    from tests.conftest import clean_env

    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home, {"ACCT_HOME": str(home / "acct")})
    for args in (["list"], ["status"], ["prompt"]):
        r = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "acct", *args], env=env,
            capture_output=True, text=True, timeout=60, cwd=home, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        imported = [line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line]
        assert "psycopg" not in imported and "cryptography" not in imported, args
        assert "acct.services.pool.backend" not in imported

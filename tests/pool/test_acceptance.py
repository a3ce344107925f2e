"""The pool's acceptance trials (issue 10): machines that are separate HOMEs with their own
ACCT_HOST_ID, running acct as real processes against one real PostgreSQL and the fake Anthropic
server that revokes a whole chain when a spent refresh token comes back.

The evidence is the fake's (lineages revoked, usage requests logged, tokens issued) and the
pool's rows read with the key, never what acct says about itself.

Sizes: ACCT_POOL_SOAK_SECONDS (default 60; 300 is the acceptance's five minutes) and
ACCT_POOL_TRIALS (default 20; 100 is the acceptance's count). Each trial prints its figures (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import psycopg
import pytest

from acct.base.models import Tokens
from acct.base.paths import Paths
from acct.services import providers
from acct.services.context import Ctx
from acct.services.pool import accounts, custody
from tests.conftest import Silent
from tests.fake_anthropic.client import FakeAnthropic
from tests.fake_anthropic.server import CLIENT_ID
from tests.pool.helpers import waits_at_lock
from tests.pool.machines import Machine
from tests.pool.trials import (
    SOAK_SECONDS,
    TOOL_FILES,
    PoolMachine,
    Seeded,
    dump_leaks,
    forget_custody,
    lineage_problems,
    make_machines,
    most_in_a_window,
    pool_accounts,
    refreshes,
    revoked_chains,
    seed_pool,
    torn,
    usage_requests,
    wait_for,
)
from tests.pool_server import PgServer

pytestmark = pytest.mark.pool_trials

PATH = "/home/x/.claude/.credentials.json"


def _refresh_at(fake: FakeAnthropic, tokens: Tokens) -> Tokens:
    body = {"grant_type": "refresh_token", "refresh_token": tokens.refresh, "client_id": CLIENT_ID}
    doc = httpx.post(fake.token_url, json=body, timeout=10).raise_for_status().json()
    now = int(time.time())
    return Tokens(doc["access_token"], doc["refresh_token"], now + int(doc["expires_in"]),
                  tokens.scopes, now)  # fmt: skip


@pytest.fixture
def machines(machine_env, fake: FakeAnthropic, tmp_path: Path) -> list[PoolMachine]:  # type: ignore[no-untyped-def]
    return make_machines(machine_env, fake, tmp_path, ("laptop", "desk", "ci"))


# --- the evidence itself can fail ----------------------------------------------------------


def test_the_evidence_sees_a_login_copied_to_a_second_machine_and_a_revoked_chain(
    machines: list[PoolMachine], fake: FakeAnthropic
) -> None:
    laptop, desk, _ = machines
    seeded = seed_pool(laptop, fake, ["work"])
    assert lineage_problems(fake, machines, seeded) == []
    with laptop.pool() as pool:
        tokens = accounts.get(pool.conn, pool.key, seeded[0].id).account.tokens
    assert tokens is not None
    copy = desk.home / ".claude" / ".credentials.json"
    copy.parent.mkdir(parents=True)
    copy.write_text(json.dumps({"claudeAiOauth": {"refreshToken": tokens.refresh}}))
    assert lineage_problems(fake, machines, seeded) != []
    _refresh_at(fake, tokens)
    with pytest.raises(httpx.HTTPStatusError):
        _refresh_at(fake, tokens)  # the spent token again: the fake revokes the chain
    assert revoked_chains(fake, [seeded[0].uuid]) != []


# --- 5. a dump of the database holds none of the tokens the fake issued -----------------------


def test_pg_dump_holds_none_of_the_tokens_the_fake_issued(
    machines: list[PoolMachine], fake: FakeAnthropic, pg: PgServer
) -> None:
    """Every place a token goes in the pool: an account's row, a refresh's result, a lent
    lineage's pushed copy, a harvest at release; and the history of all of it."""
    laptop, desk, _ = machines
    seeded = seed_pool(laptop, fake, ["work", "personal", "team"])
    for s in seeded:  # acct's own refresh, as `acct refresh` runs it
        assert providers.refresh_result(Ctx(env=laptop.env), s.id, margin=10**9).sent
    with desk.pool() as pool:
        lent = custody.claim(pool, seeded[0].id, target="claude-code", path=PATH)
        assert lent.account.tokens is not None
        rotated = _refresh_at(fake, lent.account.tokens)
        custody.push(pool, seeded[0].id, rotated, lineage=lent.lineage or "")
        custody.release(pool, seeded[0].id, lineage=lent.lineage or "", harvested=rotated)
        custody.claim(pool, seeded[1].id, target="claude-code", path=PATH)
    assert len(fake.issued()) >= 2 * (3 + 3 + 1)
    assert dump_leaks(pg, laptop.env["ACCT_POOL"], fake) == []
    assert revoked_chains(fake, [s.uuid for s in seeded]) == []


# --- trials of acct as users run it on several machines --------------------------------------

TRIALS = int(os.environ.get("ACCT_POOL_TRIALS", "20"))  # 100: the acceptance's count
REFUSALS = ("lent to", "in use by", "on machine", "busy", "no account", "all accounts",
            "needs a new login", "try again")  # fmt: skip


def _names(doc_text: str) -> list[str]:
    return [a["name"] for a in json.loads(doc_text)["accounts"]]


def _sees(m: PoolMachine, seeded: list[Seeded], *more: str) -> None:
    """The machine's acct lists the pool's accounts (before any trial relies on it)."""
    listed = m.acct("list", "--json", *more)
    assert listed.returncode == 0, listed.stderr
    assert sorted(_names(listed.stdout)) == sorted(s.name for s in seeded)


def _at_the_gate(gate: Path, procs: dict[str, subprocess.Popen[str]]) -> bool:
    """Both processes wait at the gate (or one ended already: the test then shows why)."""
    ready = len(list(gate.parent.glob(f"{gate.name}.ready.*")))
    return ready == len(procs) or any(p.poll() is not None for p in procs.values())


def _waiting_on_a_lock(control: psycopg.Connection[tuple[object, ...]]) -> int:
    row = control.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'acct' "
        "AND wait_event_type = 'Lock'"
    ).fetchone()
    return int(row[0]) if row else 0


def _one_line_refusal(p: subprocess.CompletedProcess[str] | tuple[int, str]) -> str:
    code, err = (p.returncode, p.stderr) if not isinstance(p, tuple) else p
    assert code != 0 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines and all(x.startswith(("acct: ", "  ")) for x in lines), err
    return lines[-1]


# 2. Two machines lending the same account at the same instant.


def test_two_machines_lending_one_account_at_the_same_instant_one_gets_it_the_other_is_told(
    machines: list[PoolMachine], fake: FakeAnthropic, tmp_path: Path
) -> None:
    """Both machines' ``acct use work`` (even trials) or ``acct exec`` picking the best account
    (odd trials) start at one instant (tests/pool/gated_acct.py): exactly one gets "work";
    the other says why not, or runs on another account."""
    laptop, desk, _ = machines
    seeded = seed_pool(laptop, fake, ["work", "spare"])
    fake.set_usage(seeded[0].uuid, five_hour=5, seven_day=5)
    fake.set_usage(seeded[1].uuid, five_hour=60, seven_day=60)
    for m in (laptop, desk):
        _sees(m, seeded, "--usage")
    wins = {"laptop": 0, "desk": 0}
    with psycopg.connect(laptop.env["ACCT_POOL"], autocommit=True) as control:
        for trial in range(TRIALS):
            named = trial % 2 == 0
            args = (
                ["use", "work", "--target", "claude-code", "--json"]
                if named
                else ["exec", "--no-proxy", "--target", "claude-code", "--", "claude", "-p", "hi"]
            )
            fake.reset_log()
            gate = tmp_path / f"gate-{trial}"
            procs = {m.host: m.popen_gated(gate, *args) for m in (laptop, desk)}
            wait_for(partial(_at_the_gate, gate, procs), "both machines at the gate")
            gate.touch()
            said = {h: p.communicate(timeout=120) for h, p in procs.items()}
            done = {h: (procs[h].returncode, *said[h]) for h in procs}
            for out in done.values():
                assert "Traceback" not in out[2], out[2]
            held = control.execute(
                "SELECT host_id FROM custody WHERE account_id = %s", (seeded[0].id,)
            ).fetchall()
            if named:
                won = [h for h, (code, _, _) in done.items() if code == 0]
                assert len(won) == 1, f"trial {trial}: {done}"
                lost = next(h for h in done if h not in won)
                why = _one_line_refusal((done[lost][0], done[lost][2]))
                assert "'work'" in why and "lent" in why and f"machine {won[0]}" in why, why
                assert held == [(won[0],)], f"trial {trial}: custody {held}, won {won}"
                wins[won[0]] += 1
            else:
                # One session ran on "work", the other on the account it picked instead.
                assert all(code == 0 for code, _, _ in done.values()), f"trial {trial}: {done}"
                ran_on = sorted(e["account_uuid"] for e in fake.log("messages"))
                assert ran_on == sorted(s.uuid for s in seeded), f"trial {trial}: {done}"
                assert len(held) <= 1, f"trial {trial}: custody {held}"
            forget_custody(machines)
    assert sum(wins.values()) == (TRIALS + 1) // 2
    assert revoked_chains(fake, [s.uuid for s in seeded]) == []
    print(f"lend race: {TRIALS} trials, `use work` won by {wins}, the other told why; "
          f"{TRIALS // 2} `exec` pairs each on two accounts; chains revoked 0")  # fmt: skip


# 3. kill -9 during lend, harvest and refresh, and the database restarted mid-run.


def _killed_at_random(m: PoolMachine, args: list[str], rng: random.Random) -> bool:
    """Run acct, kill -9 it (and whatever it started) at a random point; True if it was still
    running when killed."""
    p = subprocess.Popen(
        [sys.executable, "-m", "acct", *args], env=m.env, cwd=m.home, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    time.sleep(rng.uniform(0.0, 1.5))
    alive = p.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    return alive


def _free_and_lent(m: PoolMachine) -> tuple[list[str], dict[str, str]]:
    rows = pool_accounts(m)
    free = [p.account.name for p in rows if p.custody is None and not p.account.needs_login]
    lent = {p.account.name: p.custody.host_id for p in rows if p.custody is not None}
    return free, lent


def _a_lend_works(laptop: PoolMachine, machines: list[PoolMachine]) -> None:
    """A lend after the trials works: of a free account, or (when killed lends left every
    account recorded on a file) of a lent one again, on its machine, to the file holding it,
    which leaves the file as it is."""
    free, _ = _free_and_lent(laptop)
    if free:
        assert laptop.acct("use", free[0], "--target", "claude-code").returncode == 0
        return
    held = next(p for p in pool_accounts(laptop) if p.custody and not p.account.needs_login)
    assert held.custody is not None
    holder = next(m for m in machines if m.host == held.custody.host_id)
    again = holder.acct("use", held.account.name, "--target", held.custody.target)
    assert again.returncode == 0, again.stderr


def test_kill_9_during_lend_harvest_and_refresh_and_a_database_restart_tear_nothing(
    machines: list[PoolMachine], fake: FakeAnthropic, pg: PgServer
) -> None:
    laptop, desk, _ = machines
    two = [laptop, desk]
    seeded = seed_pool(laptop, fake, ["work", "personal", "team", "spare"])
    for m in two:
        _sees(m, seeded)
    rng = random.Random(10)
    killed_mid_run = dict.fromkeys(
        (
            "lend",
            "harvest",
            "refresh",
            "refresh cut off after sending",
            "recovered from the journal",
        ),
        0,
    )
    for trial in range(TRIALS):
        m = rng.choice(two)
        free, lent = _free_and_lent(m)
        kind = ("lend", "harvest", "refresh")[trial % 3]
        if kind == "harvest":
            # The tool rotates the login it holds (run to its end), then acct lends another
            # account to that file: it takes the rotated login back first.
            if not (m.home / TOOL_FILES[0]).exists() and free:
                assert m.acct("use", free.pop(0), "--target", "claude-code").returncode == 0
            tool = subprocess.run(["claude", "-p", "hi"], env={**m.env, "FAKE_TOOL_REFRESH": "1"},
                                  cwd=m.home, capture_output=True, text=True, timeout=60)  # fmt: skip
            # Not logged in: a lend killed after it recorded custody, before it wrote the file.
            assert tool.returncode == 0 or "Not logged in" in tool.stdout, tool.stderr
            args = ["use", rng.choice(free or ["work"]), "--target", "claude-code"]
        elif kind == "lend":
            args = ["use", rng.choice(free or ["work"]), "--target", rng.choice(["pi", "opencode"])]
        else:
            name = rng.choice(free or ["work"])
            _obtained_an_hour_ago(m, next(x for x in seeded if x.name == name))
            args = ["refresh", name]
        if trial == TRIALS // 2:
            p = m.popen(*args)
            pg.restart_immediate()
            _, err = p.communicate(timeout=120)
            assert "Traceback" not in err, err
        elif _killed_at_random(m, args, rng):
            killed_mid_run[kind] += 1
        for other in two:
            assert torn(pool_accounts(other)) == [], f"trial {trial} ({kind})"
        problems = lineage_problems(fake, machines, seeded)
        for s in [x for x in seeded if _refresh_mark(m, x.id) is not None]:
            # A refresh (of `acct refresh`, or the one a lend makes first) killed after its
            # request went out, before the commit of its answer: the next refresh, on the
            # other machine, sends nothing and says why; the next command on this machine
            # stores the answer it had journaled, if it had one.
            killed_mid_run["refresh cut off after sending"] += 1
            journaled = _journaled(m, s)
            sent_before = refreshes(fake, [s.uuid])
            other = next(x for x in two if x is not m)
            done = other.acct("refresh", s.name)
            assert done.returncode == 4 and "cut off" in done.stderr, done.stderr
            assert refreshes(fake, [s.uuid]) == sent_before, done.stderr
            row = next(p for p in pool_accounts(other) if p.account.id == s.id)
            assert row.account.needs_login and _refresh_mark(m, s.id) is None
            assert revoked_chains(fake, [x.uuid for x in seeded]) == [], f"trial {trial}"
            # The courier journaled its intent (never sent), or the answer as it came.
            assert journaled, f"trial {trial}: nothing journaled for {s.name}"
        # The next command on this machine stores what a killed refresh journaled.
        listed = m.acct("list")
        assert listed.returncode == 0, listed.stderr
        recovered = listed.stderr.count("could not store")
        killed_mid_run["recovered from the journal"] += recovered
        left = [x.name for x in seeded if _journaled(m, x)]
        assert left == [], f"trial {trial}: rescue files left after a command: {left}"
        problems = lineage_problems(fake, machines, seeded)
        assert problems == [], f"trial {trial} ({kind})"
        assert revoked_chains(fake, [s.uuid for s in seeded]) == [], f"trial {trial} ({kind})"
    # The next command on each machine works.
    for m in two:
        done = m.acct("list", "--json")
        assert done.returncode == 0, done.stderr
        assert sorted(_names(done.stdout)) == sorted(s.name for s in seeded)
    _a_lend_works(laptop, machines)
    assert lineage_problems(fake, machines, seeded) == []
    assert [p.account.name for p in pool_accounts(laptop) if p.account.needs_login] == []
    print(f"kill -9 trials: {TRIALS}, still running when killed: {killed_mid_run}, "
          f"refreshes seen by the fake: {refreshes(fake, [s.uuid for s in seeded])}, "
          "chains revoked: 0")  # fmt: skip


# 4. A machine silenced mid-session, reclaimed, then back.


def test_a_machine_silenced_then_reclaimed_then_back_ends_with_one_live_lineage_and_says_so(
    machines: list[PoolMachine], fake: FakeAnthropic, tmp_path: Path
) -> None:
    laptop, desk, _ = machines
    seeded = seed_pool(laptop, fake, ["work"])
    _sees(desk, seeded)
    gate = tmp_path / "gate"
    session = desk.popen(
        "exec", "--no-proxy", "--target", "claude-code", "--", "claude", "-p", "hi",
        extra={"FAKE_TOOL_REFRESH": "1", "FAKE_TOOL_GATE": str(gate)},
    )  # fmt: skip
    try:
        wait_for(lambda: any(e["event"] == "messages" for e in desk.tool_events()),
                 "the tool answered on desk")  # fmt: skip
        live = fake.lineage(seeded[0].uuid)["live_refresh_sha8"]

        def pushed() -> bool:
            with laptop.pool() as pool:
                row = pool.conn.execute(b"SELECT pushed_lineage FROM custody").fetchone()
            return row is not None and row[0] == live

        wait_for(pushed, "the session pushed the tool's rotated tokens")
        session.send_signal(signal.SIGSTOP)  # silent: no heartbeat, no contact
        with psycopg.connect(laptop.env["ACCT_POOL"], autocommit=True) as control:
            control.execute(
                "UPDATE machines SET last_contact = now() - interval '16 minutes' "
                "WHERE host_id = 'desk'"
            )
        status = json.loads(laptop.acct("pool", "status", "--json").stdout)
        assert {m["host_id"]: m["silent"] for m in status["machines"]}["desk"] is True
        reclaimed = laptop.acct("pool", "reclaim", "desk")
        assert reclaimed.returncode == 0, reclaimed.stderr
        taken = laptop.acct("use", "work", "--target", "claude-code")
        assert taken.returncode == 0, taken.stderr
        session.send_signal(signal.SIGCONT)
        gate.touch()
        out, err = session.communicate(timeout=120)
    finally:
        if session.poll() is None:
            session.send_signal(signal.SIGCONT)
            session.kill()
            session.wait()
    assert "Traceback" not in err, err
    assert "work" in err and ("lost" in err or "reclaimed" in err), err
    lineages = fake.lineage(seeded[0].uuid)["lineages"]
    assert [lin for lin in lineages if not lin["revoked"]] != []
    assert [lin for lin in lineages if lin["revoked"]] == []
    assert lineage_problems(fake, machines, seeded) == []
    # The returning machine's next command works, and laptop's tool can refresh its login.
    again = desk.acct("list", "--json")
    assert again.returncode == 0 and _names(again.stdout) == ["work"], again.stderr
    tool = subprocess.run(["claude", "-p", "hi"], env={**laptop.env, "FAKE_TOOL_REFRESH": "1"},
                          cwd=laptop.home, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert tool.returncode == 0, tool.stderr
    assert revoked_chains(fake, [seeded[0].uuid]) == []
    assert lineage_problems(fake, machines, seeded) == []


# 1. Three machines, eight processes each, for SOAK_SECONDS.

MIN_AGE = 15.0  # usage_min_age on every machine: several windows even in CI's short soak
SOAK_ACCOUNTS = ("work", "personal", "team", "spare", "eve", "night", "ops", "lab")


def _soak_command(slot: int, rng: random.Random) -> list[str]:
    """Slots 0 and 1 run sessions (one target each, so no two tools share a file: the fake
    tools take no lock around their own refresh); the others mix reads, refreshes and lends."""
    if slot < 2:
        target, tool = (("claude-code", "claude"), ("pi", "pi"))[slot]
        return ["exec", "--no-proxy", "--target", target, "--", tool, "-p", "hi"]
    name = rng.choice(SOAK_ACCOUNTS)
    return rng.choice(
        (["list", "--usage", "--json"], ["refresh", name],
         ["use", name, "--target", "opencode", "--json"])
    )  # fmt: skip


@dataclass
class SoakLog:
    runs: list[tuple[str, list[str], int, str, str]] = field(default_factory=list)
    reads: int = 0
    torn: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, host: str, args: list[str], p: subprocess.CompletedProcess[str]) -> None:
        with self.lock:
            self.runs.append((host, args, p.returncode, p.stdout, p.stderr))


def _soak_slot(m: PoolMachine, slot: int, until: float, log: SoakLog) -> None:
    rng = random.Random(f"{m.host}-{slot}")
    while time.monotonic() < until:
        args = _soak_command(slot, rng)
        extra = {"FAKE_TOOL_REFRESH": "1"} if args[0] == "exec" else {}
        log.add(m.host, args, m.acct(*args, extra=extra, timeout=300))


def _soak_reader(m: PoolMachine, until: float, log: SoakLog) -> None:
    """Reads the pool's rows the whole time: every read whole and consistent."""
    while time.monotonic() < until:
        rows = pool_accounts(m)
        problems = torn(rows) + (
            [] if sorted(p.account.name for p in rows) == sorted(SOAK_ACCOUNTS) else ["accounts"]
        )
        with log.lock:
            log.reads += 1
            log.torn += problems
        time.sleep(0.2)


def _judge_run(host: str, args: list[str], code: int, out: str, err: str) -> str:
    """'ok', or the refusal's kind; fails on anything else."""
    assert "Traceback" not in err, err
    if code == 0:
        if args[0] == "list":
            assert sorted(_names(out)) == sorted(SOAK_ACCOUNTS), out
        return "ok"
    line = _one_line_refusal((code, err))
    assert any(r in line for r in REFUSALS), f"{host} {args}: {err}"
    return "refused"


def test_three_machines_eight_processes_each_revoke_no_chain_and_lose_no_account(
    machines: list[PoolMachine], fake: FakeAnthropic, pg: PgServer
) -> None:
    seeded = seed_pool(machines[0], fake, SOAK_ACCOUNTS, five_hour=20, seven_day=20)
    for m in machines:
        m.config(usage_min_age=MIN_AGE)
        _sees(m, seeded)
    fake.reset_log()
    log = SoakLog()
    until = time.monotonic() + SOAK_SECONDS
    threads = [
        threading.Thread(target=_soak_slot, args=(m, slot, until, log))
        for m in machines
        for slot in range(8)
    ] + [threading.Thread(target=_soak_reader, args=(machines[1], until, log))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes: dict[tuple[str, str], int] = {}
    for host, args, code, out, err in log.runs:
        key = (args[0], _judge_run(host, args, code, out, err))
        outcomes[key] = outcomes.get(key, 0) + 1
    uuids = [s.uuid for s in seeded]
    assert revoked_chains(fake, uuids) == []
    assert log.torn == [] and log.reads > 0
    assert lineage_problems(fake, machines, seeded) == []
    assert [p.account.name for p in pool_accounts(machines[0]) if p.account.needs_login] == []
    polls = usage_requests(fake)
    per_window = {s.name: most_in_a_window(polls.get(s.uuid, []), MIN_AGE) for s in seeded}
    assert max(per_window.values()) <= 1, per_window
    assert sum(len(v) for v in polls.values()) > 0
    sessions = [e for m in machines for e in m.tool_events() if e["event"] == "messages"]
    assert sessions and all(e["status"] == 200 for e in sessions)
    assert dump_leaks(pg, machines[0].env["ACCT_POOL"], fake) == []
    print(f"soak {SOAK_SECONDS:.0f} s: {len(log.runs)} commands {outcomes}, {log.reads} pool "
          f"reads, refreshes {refreshes(fake, uuids)}, usage requests "
          f"{ {s.name: len(polls.get(s.uuid, [])) for s in seeded} }, most per {MIN_AGE:.0f} s "
          f"window {per_window}, chains revoked 0")  # fmt: skip


def _obtained_an_hour_ago(m: PoolMachine, s: Seeded) -> None:
    """Age the account's tokens in the pool, so `acct refresh` sends (it leaves a login obtained
    within the last minute alone)."""
    with m.pool() as pool, pool.conn.transaction():
        p = accounts.get(pool.conn, pool.key, s.id)
        if p.account.tokens is None:
            return
        aged = dataclasses.replace(p.account.tokens, obtained_at=int(time.time()) - 3600)
        accounts.put(pool.conn, pool.key, p.account.copy(tokens=aged))


def _journaled(m: PoolMachine, s: Seeded) -> bool:
    """Whether the machine kept the answer of the account's refresh in its rescue file, or the
    courier's journal of its request."""
    rescued = Paths.from_env(m.env).state_dir / "rescued"
    return (rescued / f"{s.id}.json").exists() or (rescued / f"{s.id}.flight").exists()


def _refresh_mark(m: PoolMachine, account_id: str) -> str | None:
    """The lineage of the account's "refresh in flight" mark, if one is left."""
    with m.pool() as pool:
        row = pool.conn.execute(
            "SELECT refreshing_lineage FROM accounts WHERE id = %s", (account_id,)
        ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def _refresh_cut_off(other: Machine, m: PoolMachine, fake: FakeAnthropic, s: Seeded) -> None:
    """A refresh killed after it committed its mark (before or after the fake answered): the
    next refresher, on another machine, sends nothing and the account needs a new login."""
    seen = next(p.lineage for p in pool_accounts(m) if p.account.id == s.id)
    sent_before = refreshes(fake, [s.uuid])
    other.send(f"refresh 0 {s.id} {seen} {fake.token_url}")
    answer = other.ask_line()
    assert answer.startswith("error needs_login ") and "cut off" in answer, answer
    assert refreshes(fake, [s.uuid]) == sent_before, answer  # never presented again
    row = next(p for p in pool_accounts(m) if p.account.id == s.id)
    assert row.account.needs_login and row.lineage == seen and row.custody is None
    assert _refresh_mark(m, s.id) is None


def test_kill_9_of_a_machine_mid_lend_or_mid_refresh_and_a_database_restart_tear_nothing(
    machines: list[PoolMachine], fake: FakeAnthropic, pg: PgServer
) -> None:
    """The pool's part of point 3, through the services acct's commands use: a machine's
    process (tests/pool/machine_worker.py) lends (records custody, then writes the file) or
    refreshes, and is killed with SIGKILL at a random instant of it; halfway, the server is
    restarted with ``pg_ctl restart -m immediate`` under a running lend."""
    laptop, desk, _ = machines
    seeded = seed_pool(laptop, fake, ["work", "personal", "team", "spare"])
    rng = random.Random(3)
    workers = {m.host: Machine(m.env) for m in (laptop, desk)}
    figures = dict.fromkeys(("lend", "refresh", "lend done before the kill",
                             "refresh done before the kill", "refresh cut off after sending",
                             "of which recovered from the journal",
                             ), 0)  # fmt: skip
    try:
        for trial in range(TRIALS):
            m = rng.choice([laptop, desk])
            free, _ = _free_and_lent(m)
            if not free:  # everything lent: give it all back (nothing was spent in the files)
                forget_custody(machines)
                free, _ = _free_and_lent(m)
            name = rng.choice(free)
            s = next(x for x in seeded if x.name == name)
            if trial % 2 == 0:
                kind, line = "lend", f"lend 0 {s.id} {m.home / TOOL_FILES[0]}"
            else:
                seen = next(p.lineage for p in pool_accounts(m) if p.account.id == s.id)
                kind, line = "refresh", f"refresh 0 {s.id} {seen} {fake.token_url}"
            figures[kind] += 1
            worker = workers[m.host]
            worker.send(line)
            if trial == TRIALS // 2:
                pg.restart_immediate()
                answer = worker.ask_line()
                assert answer in ("won", "sent") or "pool_unreachable" in answer, answer
                worker.proc.kill()
                other = next(h for h in workers if h != m.host)
                workers[other].stop()  # its connections died with the server: a new process
                workers[other] = Machine(next(x for x in machines if x.host == other).env)
            else:
                # Over the whole of the operation (a refresh waits for the fake's answer).
                time.sleep(rng.uniform(0.0, 0.05 if kind == "lend" else 0.25))
                worker.proc.kill()
            worker.proc.wait(timeout=30)
            assert worker.proc.stdout is not None
            said = worker.proc.stdout.read()
            if said:
                assert said.split()[0] in ("won", "sent"), said
                figures[f"{kind} done before the kill"] += 1
            workers[m.host] = Machine(m.env)
            assert torn(pool_accounts(m)) == [], f"trial {trial} ({kind})"
            problems = lineage_problems(fake, machines, seeded)
            if kind == "refresh" and not said and _refresh_mark(m, s.id) is not None:
                # Killed after its request went out, before the commit of the answer: the
                # next refresher, on the other machine, sends nothing; then the next command
                # on this machine stores the answer it had journaled, if it had one.
                figures["refresh cut off after sending"] += 1
                journaled = _journaled(m, s)
                other = next(h for h in workers if h != m.host)
                _refresh_cut_off(workers[other], m, fake, s)
                assert revoked_chains(fake, [x.uuid for x in seeded]) == [], f"trial {trial}"
                workers[m.host].send("recover 0")
                recovered = workers[m.host].ask_line()
                # The courier journaled its intent (never sent), or the answer as it came.
                assert journaled, f"trial {trial}: nothing journaled"
                assert recovered == f"recovered {s.name}", f"trial {trial}: {recovered}"
                figures["of which recovered from the journal"] += 1
                problems = lineage_problems(fake, machines, seeded)
            elif kind == "refresh" and not said:
                # Killed before its request went out (no mark) or after the commit.
                # Nothing to store: never sent, or stored (a journal left behind just goes).
                workers[m.host].send("recover 0")
                assert workers[m.host].ask_line() == "recovered -", f"trial {trial}"
                # A journal left behind (an intent whose mark never committed) just goes.
                assert not _journaled(m, s), f"trial {trial}"
                problems = lineage_problems(fake, machines, seeded)
            assert problems == [], f"trial {trial} ({kind})"
            assert revoked_chains(fake, [x.uuid for x in seeded]) == [], f"trial {trial}"
        # The next command on each machine works.
        forget_custody(machines)
        for m in (laptop, desk):
            workers[m.host].send(f"lend 0 {seeded[0].id} {m.home / TOOL_FILES[0]}")
        answers = sorted(w.ask_line() for w in workers.values())
        assert answers[1] == "won" and answers[0].startswith("held "), answers
    finally:
        for w in workers.values():
            if w.proc.poll() is None:
                w.stop()
    print(
        f"kill -9 trials: {TRIALS} {figures}, refreshes seen by the fake "
        f"{refreshes(fake, [x.uuid for x in seeded])}, chains revoked 0, no lineage lost otherwise"
    )


def test_a_refresh_killed_after_the_answer_never_has_its_spent_token_presented_again(
    machines: list[PoolMachine], fake: FakeAnthropic
) -> None:
    laptop, desk, _ = machines
    seeded = seed_pool(laptop, fake, ["work"])
    seen = pool_accounts(laptop)[0].lineage
    fake.configure(token_delay_ms=3000)  # the fake has rotated the chain; its answer waits
    worker = Machine(laptop.env)
    try:
        worker.send(f"refresh 0 {seeded[0].id} {seen} {fake.token_url}")
        wait_for(lambda: fake.stats()["token_refresh"] >= 1, "the refresh reached the fake")
        worker.proc.kill()
        worker.proc.wait(timeout=30)
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
    fake.configure(token_delay_ms=0)
    other = Machine(desk.env)
    try:
        other.send(f"refresh 0 {seeded[0].id} {seen} {fake.token_url}")
        answer = other.ask_line()
    finally:
        other.stop()
    # Losing that answer is unavoidable (the account needs a new login); revoking the whole
    # chain by presenting the spent token again is not.
    assert revoked_chains(fake, [seeded[0].uuid]) == [], answer
    assert refreshes(fake, [seeded[0].uuid]) == 1, answer  # the second machine sent nothing
    assert answer.startswith("error needs_login ") and "cut off" in answer, answer
    (row,) = pool_accounts(desk)
    assert row.account.needs_login and row.lineage == seen
    # Lending it is refused as well (the row still holds the spent token).
    lender = Machine(laptop.env)
    try:
        lender.send(f"lend 0 {seeded[0].id} {laptop.home / TOOL_FILES[0]}")
        lent = lender.ask_line()
    finally:
        lender.stop()
    assert lent.startswith("error needs_login "), lent
    assert not (laptop.home / TOOL_FILES[0]).exists()
    assert revoked_chains(fake, [seeded[0].uuid]) == []
    # The courier that carried the request outlived the process, and journaled the answer
    # when it came: the next command on the laptop stores it, and the account is whole again.
    worker = Machine(laptop.env)
    try:
        deadline = time.monotonic() + 30
        while True:
            worker.send("recover 0")
            recovered = worker.ask_line()
            if recovered != "recovered -" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        worker.stop()
    assert recovered == "recovered work", recovered
    (row,) = pool_accounts(desk)
    assert not row.account.needs_login and row.lineage != seen and row.custody is None
    assert _refresh_mark(desk, seeded[0].id) is None
    assert revoked_chains(fake, [seeded[0].uuid]) == [] and refreshes(fake, [seeded[0].uuid]) == 1


def test_a_refresh_killed_after_its_answer_came_loses_nothing_on_any_machine(
    machines: list[PoolMachine], fake: FakeAnthropic
) -> None:
    """kill -9 once the answer is in hand, inside the pool's commit of it (a trigger holds the
    update of the lineage): the other machine sends nothing (the mark says the token may be
    spent), and the next command on the killed one stores the answer it journaled first."""
    laptop, desk, _ = machines
    seeded = seed_pool(laptop, fake, ["work"])
    seen = pool_accounts(laptop)[0].lineage
    journal = Paths.from_env(laptop.env).state_dir / "rescued" / f"{seeded[0].id}.json"
    with psycopg.connect(laptop.env["ACCT_POOL"], autocommit=True) as control:
        control.execute(
            "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_advisory_xact_lock_shared({_HOLD}); RETURN NEW; END $$"
        )
        control.execute(
            "CREATE TRIGGER hold BEFORE UPDATE ON accounts FOR EACH ROW "
            "WHEN (OLD.lineage IS DISTINCT FROM NEW.lineage) EXECUTE FUNCTION hold()"
        )
        control.execute("SELECT pg_advisory_lock(%s)", (_HOLD,))
        worker = Machine(laptop.env)
        try:
            worker.send(f"refresh 0 {seeded[0].id} {seen} {fake.token_url}")
            wait_for(journal.exists, "the answer was journaled")
            wait_for(partial(waits_at_lock, control, _HOLD), "the commit waited")
            assert _refresh_mark(laptop, seeded[0].id) == seen
            worker.proc.kill()
            worker.proc.wait(timeout=30)
        finally:
            if worker.proc.poll() is None:
                worker.proc.kill()
            control.execute("DROP TRIGGER hold ON accounts")
            control.execute("DROP FUNCTION hold()")
            control.execute("SELECT pg_advisory_unlock(%s)", (_HOLD,))
    assert refreshes(fake, [seeded[0].uuid]) == 1
    assert lineage_problems(fake, machines, seeded) != []  # the pool's copy is spent
    _cut_off_elsewhere_then_stored_here(machines, fake, seeded[0], seen)
    assert not journal.exists()
    assert refreshes(fake, [seeded[0].uuid]) == 1


_HOLD = 4243


def _cut_off_elsewhere_then_stored_here(
    machines: list[PoolMachine], fake: FakeAnthropic, s: Seeded, seen: str | None
) -> None:
    """After laptop's refresh of ``s`` died with its answer journaled: desk's refresh finds the
    mark and sends nothing, then laptop's next command stores the answer; one live lineage.
    The pool holds ``s`` alone."""
    laptop, desk, _ = machines
    other = Machine(desk.env)
    try:
        _refresh_cut_off(other, laptop, fake, s)
    finally:
        other.stop()
    back = laptop.acct("list")
    assert back.returncode == 0, back.stderr
    assert (
        f"acct: stored the tokens an earlier refresh of {s.name!r} could not store" in back.stderr
    )
    (row,) = pool_accounts(desk)
    assert row.account.id == s.id and not row.account.needs_login and row.lineage != seen
    assert lineage_problems(fake, machines, [s]) == []
    assert revoked_chains(fake, [s.uuid]) == []


def test_a_refresh_killed_before_its_request_went_out_leaves_a_good_token_for_every_machine(
    machines: list[PoolMachine], fake: FakeAnthropic, silent: Silent
) -> None:
    """kill -9 while the refresh is still connecting (a token endpoint that never finishes the
    TLS handshake): nothing was sent, so no mark is left, and the other machine's refresh goes
    through instead of finding the account "cut off"."""
    laptop, desk, _ = machines
    seeded = seed_pool(laptop, fake, ["work"])
    _obtained_an_hour_ago(laptop, seeded[0])
    seen = pool_accounts(laptop)[0].lineage
    stuck = laptop.popen(
        "refresh",
        "work",
        extra={"ACCT_TOKEN_URL": f"https://127.0.0.1:{silent.port}/v1/oauth/token"},
    )
    try:
        wait_for(lambda: silent.accepted >= 1, "the refresh connected")
        time.sleep(0.3)  # well into the handshake, which never ends
        assert stuck.poll() is None
        assert _refresh_mark(laptop, seeded[0].id) is None
    finally:
        stuck.kill()
        stuck.communicate(timeout=30)
    done = desk.acct("refresh", "work")
    assert done.returncode == 0, done.stderr
    (row,) = pool_accounts(desk)
    assert not row.account.needs_login and row.lineage != seen
    assert refreshes(fake, [seeded[0].uuid]) == 1
    assert lineage_problems(fake, machines, seeded) == []
    assert revoked_chains(fake, [seeded[0].uuid]) == []


def test_the_database_crashing_during_a_refresh_loses_nothing(
    machines: list[PoolMachine], fake: FakeAnthropic, pg: PgServer
) -> None:
    """The server stops as a crash would (``-m immediate``) while a refresh waits for the token
    endpoint: the answer cannot be stored, so it stays in the machine's rescue file; the refresh
    lock (an advisory lock of a session) died with the server, but the mark did not, so once the
    server is back the other machine sends nothing, and the next command on the first one
    stores the answer."""
    laptop, desk, _ = machines
    seeded = seed_pool(laptop, fake, ["work"])
    seen = pool_accounts(laptop)[0].lineage
    fake.configure(token_delay_ms=1500)
    worker = Machine(laptop.env)
    try:
        worker.send(f"refresh 0 {seeded[0].id} {seen} {fake.token_url}")
        wait_for(lambda: refreshes(fake, [seeded[0].uuid]) >= 1, "the refresh reached the fake")
        pg.halt()
        try:
            answer = worker.ask_line()
        finally:
            pg.resume()
    finally:
        worker.stop()
    fake.configure(token_delay_ms=0)
    assert answer.startswith("error ") and "were saved to" in answer, answer
    assert refreshes(fake, [seeded[0].uuid]) == 1
    _cut_off_elsewhere_then_stored_here(machines, fake, seeded[0], seen)

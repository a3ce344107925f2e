"""The harness of the pool's acceptance trials: machines that run acct as real processes against
one pool and one fake Anthropic server, and the evidence the trials judge by.

A machine is a HOME of its own (its tools' files, acct's local files) with its own
``ACCT_HOST_ID``, the fake tools first on its PATH, and the pool's key copied from the machine
that ran ``init``. The evidence is what acct cannot fake: the fake server's request log and
lineages (a chain revoked, a usage request too many), the pool's rows read with the key, and
every file on every machine that holds a token.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acct.base.models import PLAN_BY_ORG_TYPE, Account
from acct.services.pool import accounts, core
from acct.services.pool.accounts import Pooled
from tests.conftest import REPO, exec_env
from tests.fake_anthropic.client import FakeAnthropic
from tests.pool.helpers import init_machine, minted_tokens, open_machine

# The long soak runs for ACCT_POOL_SOAK_SECONDS (300: the five minutes of the acceptance); CI
# runs a short one.
SOAK_SECONDS = float(os.environ.get("ACCT_POOL_SOAK_SECONDS", "60"))
REFRESH_TOKEN = re.compile(r"sk-ant-ort01-[A-Za-z0-9_-]+")


@dataclass
class PoolMachine:
    """One machine of the pool: acct run as a real process in its own HOME."""

    host: str
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return Path(self.env["HOME"])

    @property
    def acct_home(self) -> Path:
        return Path(self.env["ACCT_HOME"])

    def _argv(self, args: Iterable[str]) -> list[str]:
        return [sys.executable, "-m", "acct", *args]

    def acct(
        self, *args: str, extra: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self._argv(args),
            env={**self.env, **(extra or {})},
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        self.outputs += [done.stdout, done.stderr]
        return done

    def popen(self, *args: str, extra: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self._argv(args),
            env={**self.env, **(extra or {})},
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def popen_gated(self, gate: Path, *args: str) -> subprocess.Popen[str]:
        """acct held at ``gate`` (tests/pool/gated_acct.py) with its imports done."""
        return subprocess.Popen(
            [sys.executable, "-m", "tests.pool.gated_acct", str(gate), *args],
            env={
                **self.env,
                "PYTHONPATH": os.pathsep.join(
                    x for x in (self.env.get("PYTHONPATH"), str(REPO)) if x
                ),
            },  # fmt: skip
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def pool(self) -> core.Pool:
        return open_machine(self.env)

    def config(self, **settings: Any) -> None:
        """acct's config.toml on this machine (flat keys: numbers, strings, booleans)."""
        path = self.acct_home / "config" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))

    def tool_events(self) -> list[dict[str, Any]]:
        log = Path(self.env["FAKE_TOOL_LOG"])
        if not log.exists():
            return []
        return [json.loads(x) for x in log.read_text().splitlines() if x.strip()]


def make_machines(
    machine_env: Any, fake: FakeAnthropic, tmp_path: Path, hosts: Iterable[str]
) -> list[PoolMachine]:
    """The machines of one pool: the first runs init (creating the key), the others join with a
    copy of its key file (as the README says to move it)."""
    out: list[PoolMachine] = []
    key_path: str | None = None
    for host in hosts:
        env = {**machine_env(host), **fake.env()}
        if key_path is None:
            key_path = init_machine(env).key_path
        else:
            env["ACCT_POOL_KEY"] = key_path
        where = tmp_path / f"{host}-tools"
        where.mkdir()
        exec_env(env, fake, where, where / "tool.jsonl")
        out.append(PoolMachine(host, env))
    return out


@dataclass(frozen=True)
class Seeded:
    name: str
    uuid: str
    id: str


def seed_pool(
    machine: PoolMachine, fake: FakeAnthropic, names: Iterable[str], **usage: float
) -> list[Seeded]:
    """Accounts on the fake, each with a freshly minted lineage, straight into the pool (as
    ``acct pool init`` moves them from a machine's store)."""
    out: list[Seeded] = []
    with machine.pool() as pool:
        for name in names:
            who = fake.add_account(email=f"{name}@example.com", plan="claude_max")
            if usage:
                fake.set_usage(who["uuid"], **usage)
            tokens = minted_tokens(fake.mint(who["uuid"]))
            acc = Account(
                name=name, uuid=who["uuid"], email=f"{name}@example.com",
                org_uuid=who.get("org_uuid"), org_name=who.get("org_name"),
                plan=PLAN_BY_ORG_TYPE.get("claude_max"), tier=who.get("rate_limit_tier"),
                tokens=tokens,
            )  # fmt: skip
            with pool.conn.transaction():
                accounts.put(pool.conn, pool.key, acc)
            out.append(Seeded(name, who["uuid"], acc.id))
    return out


# --- evidence -----------------------------------------------------------------------------


def revoked_chains(fake: FakeAnthropic, uuids: Iterable[str]) -> list[tuple[str, str]]:
    """(account uuid, lineage id) of every chain the fake revoked."""
    out = []
    for uuid in uuids:
        for lin in fake.lineage(uuid)["lineages"]:
            if lin["revoked"]:
                out.append((uuid, str(lin.get("lineage_id"))))
    return out


def refreshes(fake: FakeAnthropic, uuids: Iterable[str]) -> int:
    return sum(
        int(lin["refresh_count"]) for uuid in uuids for lin in fake.lineage(uuid)["lineages"]
    )


def usage_requests(fake: FakeAnthropic) -> dict[str, list[float]]:
    """When each account's usage was asked for (the fake's log), oldest first."""
    out: dict[str, list[float]] = {}
    for e in fake.log("usage"):
        if "account_uuid" in e:
            out.setdefault(e["account_uuid"], []).append(float(e["t"]))
    return {k: sorted(v) for k, v in out.items()}


def most_in_a_window(times: list[float], window: float) -> int:
    """The most requests that fell in any span of ``window`` seconds."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def refresh_tokens_in_files(machines: Iterable[PoolMachine]) -> dict[str, list[Path]]:
    """Every refresh token found in a file of a machine's tools (anything in its HOME outside
    acct's own directory), and where."""
    out: dict[str, list[Path]] = {}
    for m in machines:
        for path in m.home.rglob("*"):
            if not path.is_file() or path.name.endswith(".jsonl") or m.acct_home in path.parents:
                continue
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                continue  # a write's temporary a kill -9 left behind: no tool reads it
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            for token in set(REFRESH_TOKEN.findall(text)):
                out.setdefault(token, []).append(path)
    return out


def pool_accounts(machine: PoolMachine) -> list[Pooled]:
    with machine.pool() as pool:
        return accounts.all_accounts(pool.conn, pool.key)


def torn(rows: list[Pooled]) -> list[str]:
    """What is inconsistent in one read of the pool: a custody record of a lineage the account
    no longer has, an account without tokens that is not marked as needing a login."""
    bad = []
    for p in rows:
        tokens = p.account.tokens
        if p.custody is not None and p.custody.lineage != p.lineage:
            bad.append(f"{p.account.name}: custody of {p.custody.lineage}, row has {p.lineage}")
        if not p.account.needs_login and (tokens is None or tokens.refresh is None):
            bad.append(f"{p.account.name}: no tokens and not marked as needing a login")
    return bad


@dataclass(frozen=True)
class Holding:
    """Where an account's live refresh token (the fake's) is, against where custody says."""

    account: str
    live: str | None  # sha8 of the fake's live refresh token of the newest lineage
    in_pool: bool
    files: tuple[Path, ...]
    custody_host: str | None


def holdings(
    fake: FakeAnthropic, machines: list[PoolMachine], seeded: Iterable[Seeded]
) -> list[Holding]:
    rows = {p.account.id: p for p in pool_accounts(machines[0])}
    found = refresh_tokens_in_files(machines)
    by_sha = {FakeAnthropic.sha8(t): paths for t, paths in found.items()}
    out = []
    for s in seeded:
        p = rows[s.id]
        live = fake.lineage(s.uuid).get("live_refresh_sha8")
        pool_token = p.account.tokens.refresh if p.account.tokens else None
        in_pool = pool_token is not None and FakeAnthropic.sha8(pool_token) == live
        files = tuple(by_sha.get(live, ())) if live else ()
        host = p.custody.host_id if p.custody else None
        out.append(Holding(s.name, live, in_pool, files, host))
    return out


def lineage_problems(
    fake: FakeAnthropic, machines: list[PoolMachine], seeded: Iterable[Seeded]
) -> list[str]:
    """One live holder per lineage, checked against the fake: an account the pool holds has the
    live token in the pool and in no file; one lent has it in one file, on the machine custody names (or
    still in the pool, when the tool has not rotated it yet); an account the pool marks as
    needing a login is allowed to have none."""
    homes = {m.host: m.home for m in machines}
    rows = {p.account.name: p for p in pool_accounts(machines[0])}
    bad = []
    for h in holdings(fake, machines, seeded):
        if rows[h.account].account.needs_login:
            continue
        if h.live is None:
            bad.append(f"{h.account}: the fake has no live refresh token (lost)")
            continue
        if h.custody_host is None:
            if not h.in_pool:
                bad.append(f"{h.account}: held by the pool, whose copy is not the live token")
            if h.files:
                bad.append(f"{h.account}: held by the pool, live token also in {list(h.files)}")
            continue
        home = homes[h.custody_host]
        elsewhere = [p for p in h.files if home not in p.parents]
        if elsewhere:
            bad.append(f"{h.account}: lent to {h.custody_host}, live token also in {elsewhere}")
        if not h.files and not h.in_pool:
            bad.append(f"{h.account}: lent to {h.custody_host}, live token nowhere")
    return bad


TOOL_FILES = (".claude/.credentials.json", ".pi/agent/auth.json", ".local/share/opencode/auth.json")


def forget_custody(machines: list[PoolMachine]) -> None:
    """Between trials that spent nothing: every lineage back in the pool, no tool file left
    holding one (so no lineage has two holders after)."""
    with machines[0].pool() as pool:
        pool.conn.execute(b"DELETE FROM custody")
    for m in machines:
        for rel in TOOL_FILES:
            path = m.home / rel
            for left in path.parent.glob(path.name + "*"):  # and any half-written temporary
                left.unlink()


def wait_for(predicate: Any, what: str, limit: float = 120) -> None:
    """A guard against a hang, not a timing assertion."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.02)


def dump_leaks(pg: Any, conninfo: str, fake: FakeAnthropic) -> list[str]:
    """The tokens the fake ever issued that a pg_dump of the pool holds (their first
    characters only), and any token-shaped text in it."""
    dump = pg.client("pg_dump", "--no-owner", conninfo).stdout
    assert "CREATE TABLE public.accounts" in dump
    leaked = [t[:16] for t in fake.issued() if t in dump]
    return leaked + [m[:16] for m in re.findall(r"sk-ant-[a-z]{3}[0-9]{2}-", dump)]

"""The ``acct exec`` session: pick an account, lend it, run the tool, harvest, classify, rotate.

This is where rotation happens. One run: pick an account, lend it to the tool's file (custody
refreshes it first while the store holds it), run the tool on the same terminal, harvest the file
back, classify the ending.

- ``quota``: one usage fetch confirms it; the account is benched until the reset the tool named
  (or the full window's reset), or for ``cooloff`` when usage shows room left. Then the next
  account is lent and the tool re-runs with its resume arguments.
- ``auth``: a blanked file marks the account "needs login" (harvest); otherwise it rests for
  ``cooloff``. The next account takes over, resuming.
- ``throttle``: the server asks every client to slow down; that says nothing about the account.
  No bench, no rotation: acct exits with the tool's status and the user re-runs when ready.
- ``ok`` / ``other``: acct exits with the tool's status (128+N when signal N killed it).

Accounts lent to another tool's file are never taken from it (only ``acct use`` moves an
account): that tool may be spending its refresh token. Nothing is benched or rotated when the
user interrupted the run, when the file cannot be read back, or when the file held another
account by the end of the run (an ``acct use`` switched it meanwhile).

A loopback proxy in front of the tool (:mod:`acct.services.proxy`, ``--no-proxy`` turns it off)
reads the rate-limit headers of every answer: they keep the usage cache live without polling. A
quota refusal is sent again on the next account in flight (Claude Code, OpenCode, Pi, Codex), so
the tool never sees it; a refusal that did reach the tool ends a failed run as ``quota`` with the
server's exact reset, even when the tool wrote its words to a terminal acct does not read, and a
tool that would sleep on it (OpenCode, Pi) is ended for it (:class:`_RefusalEnder`).

``[targets.NAME] resume_args`` in ``config.toml`` replaces the arguments of a resumed run;
``{prompt}`` in them becomes the continuation prompt.

The session never prints: it tells a :class:`Reporter` (the CLI's writes to stderr).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from acct.base.config import POLICIES
from acct.base.errors import (
    AcctError,
    AllLimited,
    HeldByTarget,
    NeedsLogin,
    NotFound,
    UsageError,
)
from acct.base.fsio import holder_path
from acct.base.models import Account, Holder, UsageRecord
from acct.base.timefmt import human_duration, local_time
from acct.domain.classify import Ending, classify
from acct.domain.limits import Rest, fresh, full_windows, quota_rest
from acct.domain.pick import Choice, pick
from acct.services import custody, events, oauth, prompt_state, sessions, usage
from acct.services.context import Ctx
from acct.services.custody import HarvestResult
from acct.services.proxy import Plan, Route, Watch, claude_route
from acct.services.proxy.failover import rest_for
from acct.services.runner import RunResult, run
from acct.services.sessions import Opened
from acct.services.targets import EXTRA_USAGE_NOTE, get_target, target_for_command
from acct.services.targets.base import JsonTarget
from acct.services.targets.route import ToolRoute

# Where each tool prints its limit: when acct does not see that stream, it asks the
# usage endpoint instead.
LIMIT_STREAMS: dict[str, tuple[int, ...]] = {
    "claude-code": (1,),
    "opencode": (2,),
    "pi": (2,),
    "codex": (2,),  # `codex exec` prints its errors on stderr, nothing on stdout
}
# Tools acct puts its usage proxy in front of: Claude Code through ANTHROPIC_BASE_URL, OpenCode
# through an OPENCODE_CONFIG_CONTENT overlay, Pi through an extension loaded with `-e`, Codex
# through a provider given with `-c` (each target's proxy_env/proxy_argv; docs/tools.md and
# docs/codex.md have what was measured).
PROXIED = ("claude-code", "opencode", "pi", "codex")
# Tools whose proxy fails over in flight: a quota refusal is sent again on the next account and
# the tool gets that account's answer (acct.services.proxy.failover).
FAILS_OVER = ("claude-code", "codex", "opencode", "pi")
TERMINATING = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
# Tools that do not exit on a quota refusal: OpenCode sleeps for the retry-after (hours), Pi 0.73
# too unless its retries are off, Pi 1.x retries for about 15 s. A refusal reaches them only when
# no account could take over in flight (or --no-rotate): when it stays the last answer the tool
# got for this grace, acct ends the run itself (SIGTERM), so the exit-based loop benches the
# account and resumes on the next one, or says that every account is limited.
SLEEPS_ON_REFUSAL = ("opencode", "pi")
REFUSAL_GRACE_S = 1.0
_POLL_S = 0.1


class Reporter(Protocol):
    """What a session says while it runs. The CLI writes it to stderr; tests may collect it."""

    def note(self, message: str) -> None:
        """One line of news (``switching to B``)."""

    def warn(self, message: str) -> None:
        """Something the user should look at; the session goes on."""

    def wait(self, until: float, message: str) -> None:
        """Wait until ``until`` (every account is limited and ``--wait`` was given); raises
        :class:`acct.base.errors.Interrupted` when the user cancels."""


class SilentReporter:
    """A reporter that keeps what it is told (for callers without a terminal)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.lines.append(f"warning: {message}")

    def wait(self, until: float, message: str) -> None:
        self.lines.append(message)
        while (left := until - time.time()) > 0:
            time.sleep(min(1.0, left))


@dataclass(frozen=True)
class ExecOptions:
    argv: list[str]
    target: str | None = None
    account: str | None = None
    policy: str | None = None
    explain: bool = False
    rotate: bool = True
    max_rotations: int | None = None
    wait: bool = False
    nested: bool = False
    proxy: bool | None = None  # None: on unless the config turns it off
    isolate: bool = False

    def validate(self, c: Ctx) -> tuple[str, str]:
        """The target and policy this run uses; :class:`UsageError` for anything that cannot run."""
        if not self.argv:
            raise UsageError("no command to run", hint="acct exec -- claude [ARGS...]")
        if c.env.get("ACCT_EXEC") and not self.nested:
            raise UsageError(
                "acct exec is already running around this shell (ACCT_EXEC is set): a nested run "
                "would take the tool's file over from the outer one",
                hint="pass --nested to run it anyway",
            )
        name = self.target or target_for_command(self.argv[0])
        if name is None:
            raise UsageError(
                f"cannot tell which tool {os.path.basename(self.argv[0])!r} is",
                hint="pass --target claude-code, opencode, pi or codex",
            )
        policy = self.policy or c.config.policy
        if policy not in POLICIES:
            raise UsageError(f"unknown policy {policy!r} (policies: {', '.join(POLICIES)})")
        if self.max_rotations is not None and self.max_rotations < 0:
            raise UsageError("--max-rotations must be 0 or more")
        return name, policy


@dataclass
class Session:
    c: Ctx
    opts: ExecOptions
    target: JsonTarget
    policy: str
    here: tuple[str, str]  # the file this run lends to, as custody records it (target, path)
    tried: set[str] = field(default_factory=set)
    waited: bool = False  # the last choice waited for a reset (--wait)
    rotations: int = 0
    pending_rotation: dict[str, Any] | None = None
    watch: Watch | None = None  # the usage proxy in front of the tool, while it runs
    route: ToolRoute | None = None  # the tool's own route the proxy forwards to (not Claude Code)
    live: Opened | None = None  # this run's record among the running sessions
    out: Reporter = field(default_factory=lambda: SilentReporter())

    @property
    def tool_env(self) -> Mapping[str, str]:
        """The environment the tool reads its file by (an isolated session's own directory)."""
        return self.live.env if self.live is not None else self.c.env

    # --- choosing ----------------------------------------------------------------------------

    def _runnable(self, accounts: list[Account]) -> list[Account]:
        """Accounts of the tool's provider. API keys can run Claude Code only (through
        ANTHROPIC_API_KEY); other tools need a login."""
        return [
            a
            for a in accounts
            if a.provider == self.target.provider
            and (a.is_oauth or self.target.name == "claude-code")
        ]

    def _pick(self, exclude: set[str]) -> Choice:
        st = self.c.state
        now = time.time()
        accounts = self._runnable(list(self.c.store.read()))
        return pick(
            accounts,
            st.all_usage(),
            st.benches(now),
            now,
            self.policy,
            last_used=st.last_used(),
            exclude=exclude,
            here=self.here,
            provider=self.target.provider,
        )

    def choose(self) -> Account:
        """The next account to run: probes never-polled ones once, waits with ``--wait``."""
        probed = False
        while True:
            choice = self._pick(self.tried)
            if choice.account is None and self.tried:
                choice = self._pick(set())
            if choice.account is not None and choice.probe and not probed:
                probed = True
                self._probe(choice.probe)
                continue
            if self.opts.explain:
                for text in explain(choice):
                    self.out.note(text)
            if choice.account is not None:
                return choice.account
            self._wait_or_give_up(choice)
            self.tried.clear()

    def _probe(self, ids: tuple[str, ...]) -> None:
        accounts = [a for a in self.c.store.read() if a.id in ids]
        with contextlib.suppress(AcctError):
            usage.poll(self.c, accounts)

    def _wait_or_give_up(self, choice: Choice) -> None:
        earliest = self._earliest_reset()
        if earliest is None:
            accounts = list(self.c.store.read())
            if not accounts:
                raise NotFound("there are no accounts yet", hint="run `acct login`")
            if any(a.needs_login for a in accounts):
                raise NeedsLogin(
                    choice.reason, hint="run `acct login NAME` for the accounts that need it"
                )
            if any(self._elsewhere(a) for a in accounts):
                raise HeldByTarget(
                    choice.reason,
                    hint=f"`acct use NAME --target {self.target.name}` moves an account here",
                )
            raise UsageError(choice.reason, hint="`acct enable NAME` or `acct login`")
        name, until = earliest
        when = f"{name} at {local_time(until)} (in {human_duration(until - time.time())})"
        if not self.opts.wait:
            raise AllLimited(
                f"every account is rate-limited; the earliest reset is {when}",
                hint="pass --wait to wait for it",
            )
        self.out.wait(
            until,
            f"every account is rate-limited; waiting for {name}'s reset at {local_time(until)}",
        )
        self.waited = True

    def _earliest_reset(self) -> tuple[str, float] | None:
        now = time.time()
        benches = self.c.state.benches(now)
        usable = [
            a
            for a in self._runnable(list(self.c.store.read()))
            if a.enabled and not a.needs_login and a.id in benches and not self._elsewhere(a)
        ]
        if not usable:
            return None
        a = min(usable, key=lambda x: (benches[x.id].until, x.name))
        return a.name, benches[a.id].until

    def first(self) -> Account:
        shared = self._shared()
        if shared is not None:
            return shared
        if self.opts.account is None:
            return self.choose()
        acc = self.c.store.read().get(self.opts.account)
        if not acc.enabled:
            self.out.warn(f"{acc.name} is disabled; running it because --account names it")
        bench = self.c.state.benches().get(acc.id)
        if bench is not None:
            self.out.warn(
                f"{acc.name} is benched until {local_time(bench.until)} ({bench.reason}); running it as asked"
            )
        if self.opts.explain:
            self.out.note(f"{acc.name}: chosen with --account")
        return acc

    def _shared(self) -> Account | None:
        """With another live session on this file, the account the file holds: lending another
        would switch it under that session (OpenCode and Pi have no file per session)."""
        if self.live is None or not self.live.shared_with:
            return None
        accounts = self.c.store.read()
        acc = next(iter(self._runnable(accounts.held_by(*self.here))), None)
        if acc is None:
            return None
        pids = ", ".join(str(r.pid) for r in self.live.shared_with)
        if self.opts.account is not None and accounts.get(self.opts.account).id != acc.id:
            raise UsageError(
                f"another acct exec (pid {pids}) runs {self.target.name} on {acc.name}; "
                f"--account {self.opts.account} would switch its file under it",
                hint=f"run this one on {acc.name}, or wait until that session ends",
            )
        self.out.note(
            f"note: another acct exec (pid {pids}) runs {self.target.name} on {acc.name}; "
            "this session shares it"
        )
        return acc

    # --- one run -----------------------------------------------------------------------------

    def child_env(self, base: Mapping[str, str], acc: Account) -> dict[str, str]:
        env = dict(base)
        env.update(ACCT_ACCOUNT=acc.name, ACCT_TARGET=self.target.name, ACCT_EXEC="1")
        if self.watch is not None and self.route is not None:
            env.update(self.target.proxy_env(self.route.via(self.watch.url), env))
        elif self.watch is not None:
            env.update(self.watch.child_env(env))
        if not acc.is_oauth and acc.api_key:
            env["ANTHROPIC_API_KEY"] = acc.api_key
        return env

    def _elsewhere(self, acc: Account) -> Holder | None:
        """The other tool file ``acc`` is lent to, if any (this run's own file does not count)."""
        h = acc.holder
        return h if h is not None and (h.target, h.path) != self.here else None

    def _refuse_elsewhere(self, acc: Account) -> None:
        current = self.c.store.read().by_id(acc.id) or acc
        h = self._elsewhere(current)
        if h is not None:
            raise HeldByTarget(
                f"account {acc.name!r} is lent to {h.target} ({h.path}); acct exec does not "
                "take it from there",
                hint=f"run another account, or move it with `acct use {acc.name} --target "
                f"{self.target.name}`",
            )

    def lend(self, acc: Account) -> Account:
        """Lend ``acc`` (or, when it needs a login or another tool holds it, the next one)."""
        while True:
            if not acc.is_oauth:
                return acc
            try:
                self._refuse_elsewhere(acc)
                result = custody.lend(self.c, acc.id, self.target.name, self.tool_env, move=False)
                for message in result.warnings:
                    self.out.warn(message)
                return acc
            except (NeedsLogin, HeldByTarget, oauth.RefreshUnanswered) as e:
                if self.opts.account is not None and not self.rotations:
                    raise
                if isinstance(e, HeldByTarget) and not self._held_elsewhere_now(acc):
                    raise  # about the file, not the account: another account would fare no better
                self.out.warn(f"{e.message}; trying another account")
                self.tried.add(acc.id)
                acc = self.choose()

    def _held_elsewhere_now(self, acc: Account) -> bool:
        current = self.c.store.read().by_id(acc.id)
        return current is not None and self._elsewhere(current) is not None

    def run_once(
        self, acc: Account, argv: list[str], env: Mapping[str, str]
    ) -> tuple[RunResult, Ending]:
        self.c.state.close()  # no SQLite handle held open across the child's lifetime
        if self.watch is not None:
            self.watch.begin(acc)
        child = self.child_env(env, acc)
        if self.watch is not None and self.route is not None:
            argv = self.target.proxy_argv(argv, child)
        ender = (
            _RefusalEnder(self.watch, acc, self.out, self._name_of)
            if self.watch is not None and self.target.name in SLEEPS_ON_REFUSAL
            else None
        )

        def started(pid: int) -> None:
            self._started(pid, acc)
            if ender is not None:
                ender.start(pid)

        try:
            result = run(argv, child, on_start=started)
        finally:
            if ender is not None:
                ender.stop()
        if self.watch is not None:
            self.watch.settle()
        ending = self._ending(acc, result)
        self._record_run(acc, result, ending)
        return result, ending

    def _name_of(self, account_id: str) -> str:
        try:
            acc = self.c.store.read().by_id(account_id)
        except AcctError:
            acc = None
        return acc.name if acc is not None else account_id

    def _started(self, pid: int, acc: Account) -> None:
        if self.live is not None:
            sessions.note_run(self.c, self.live.row, pid, acc.id)
            self.c.state.close()

    def _ending(self, acc: Account, result: RunResult) -> Ending:
        """How the run ended, for the account it ran on; ``other`` whenever acct must not act."""
        held: str | None = acc.id
        who = acc.name
        hv: HarvestResult | None = None
        if acc.is_oauth:
            try:
                hv = custody.harvest(self.c, self.target.name, self.tool_env)
            except AcctError as e:
                self.out.warn(f"{e.message}; not benching or rotating after this run")
                return Ending("other", None, e.message)
            if hv.status == "blank" and hv.account_id == acc.id:
                return Ending("auth", None, hv.message)
            held, who = self._file_held(hv)
        ending = classify(
            self.target,
            result.status,
            result.tail,
            time.time(),
            extra=self.c.config.target(self.target.name),
        )
        ending = self._proxy_says(acc, result, ending)
        if ending.kind == "login" and (hv is None or hv.status != "unchanged"):
            # The tool named a refused refresh, but its file moved on (it renewed the login
            # after all, as OpenCode's plugin does when it races itself): not a dead login.
            ending = replace(ending, kind="auth")
        if ending.kind == "other" and held == acc.id and self._unseen(result):
            ending = self._usage_says(acc, result) or ending
        if ending.kind in ("quota", "auth", "login") and held != acc.id:
            self.out.warn(
                f"{self.target.name}'s file held {who} when the run ended, not {acc.name} "
                f"(switched during the run); not benching {acc.name} or rotating"
            )
            return replace(ending, kind="other")
        return ending

    def _proxy_says(self, acc: Account, result: RunResult, ending: Ending) -> Ending:
        """A refusal for quota that the proxy saw as the run's last word makes a failed run a
        quota ending with the server's exact reset, whether or not acct read the tool's words."""
        seen = self.watch.quota(acc.id) if self.watch is not None else None
        if seen is None or result.status == 0 or ending.kind not in ("other", "quota"):
            return ending
        if self._answered_in_flight(result):
            return ending  # the refusal was answered from another account: not this run's end
        message = ending.message or "the server refused a request for quota"
        return Ending("quota", seen.reset_at, message, seen.window or ending.window)

    def _answered_in_flight(self, result: RunResult) -> bool:
        """Whether the proxy's last switch during this run found an account to answer."""
        switches = [
            s for s in (self.watch.switches if self.watch else []) if s.at >= result.started_at
        ]
        return bool(switches) and switches[-1].to is not None

    def _learn_from_proxy(self, acc: Account, result: RunResult) -> None:
        """A quota refusal the proxy saw as the last word for ``acc`` benches it until the
        reset even when the run did not end on a limit: interactive Claude Code waits on a
        limit and exits 0 when the user quits, and the next run must not pick it again. A
        refusal answered in flight was benched and told by the proxy already."""
        seen = self.watch.quota(acc.id) if self.watch is not None else None
        if seen is None or self._answered_in_flight(result):
            return
        until, kind, reason = rest_for(seen, time.time(), self.c.config.cooloff)
        with contextlib.suppress(AcctError):
            self.c.state.bench(acc.id, until, kind=kind, reason=reason)
            self.c.state.record(
                "bench",
                account_id=acc.id,
                target=self.target.name,
                until=until,
                kind=kind,
                reason=reason,
            )
        prompt_state.refresh_quietly(self.c)
        self.out.note(
            f"{acc.name} hit its {seen.window or 'usage'} limit during the run (resets "
            f"{local_time(until)}, seen by the usage proxy); benched until then"
        )

    def _file_held(self, hv: HarvestResult) -> tuple[str | None, str]:
        """The account the tool's file held after the run (id or None, and how to name it)."""
        held = hv.known_id if hv.status == "foreign" else hv.account_id
        if hv.status == "absent":
            held = None
        acc = self.c.store.read().by_id(held) if held is not None else None
        if acc is not None:
            return held, acc.name
        return held, hv.identity or (
            "no login" if hv.entry is None else "a login acct does not track"
        )

    def _unseen(self, result: RunResult) -> bool:
        """Whether the tool ended with an error on a stream acct did not read (a terminal)."""
        streams = LIMIT_STREAMS.get(self.target.name, (1, 2))
        missed = any(fd not in result.captured for fd in streams)
        return missed and 0 < result.status < 128 and not result.interrupted

    def _usage_says(self, acc: Account, result: RunResult) -> Ending | None:
        """Unseen words: a full 5-hour or 7-day window in a fresh fetch tells a limit. Per-model
        weekly caps do not: a run they stop names them, and a full one would bench for days."""
        rec, _ = self._confirm(acc, result)
        if rec is None or not fresh(rec, result.started_at):
            return None
        now = time.time()
        full = [
            (label, reset)
            for label, reset in full_windows(rec.usage)
            if reset is None or reset > now
        ]
        if not full:
            return None
        label, reset = max(full, key=lambda w: w[1] or 0)
        return Ending("quota", reset, "usage shows a full window", label)

    def _confirm(self, acc: Account, result: RunResult) -> tuple[UsageRecord | None, float]:
        """One usage fetch unless the cache holds values fetched since the run began."""
        t0 = time.monotonic()
        current = self.c.store.read().by_id(acc.id) or acc
        try:
            rec: UsageRecord | None = usage.confirm(
                self.c, current, max_age=max(0.0, time.time() - result.started_at)
            )
        except AcctError:
            rec = None
        return rec, time.monotonic() - t0

    # --- after a limit -----------------------------------------------------------------------

    def rest(self, acc: Account, ending: Ending, result: RunResult) -> tuple[Rest, float]:
        """Bench the account after a quota or auth ending; returns the rest and the time spent
        confirming with the usage endpoint."""
        now = time.time()
        cfg = self.c.config
        if ending.kind == "login":
            self._needs_login(acc)
            return Rest(now, "needs_login", "login", "its login is dead"), 0.0
        if ending.kind == "auth":
            current = self.c.store.read().by_id(acc.id)
            if current is not None and current.needs_login:
                return Rest(now, "needs_login", "login"), 0.0
            r = Rest(now + cfg.cooloff, "auth", "login", "its login was refused")
            self._bench(acc, r)
            return r, 0.0
        rec, spent = self._confirm(acc, result)
        r = quota_rest(
            ending,
            rec if rec is not None and fresh(rec, result.started_at) else None,
            now,
            cfg.cooloff,
        )
        self._bench(acc, r)
        return r, spent

    def _needs_login(self, acc: Account) -> None:
        """Mark ``acc`` as needing a new login: the tool's refresh with the lineage acct lent it
        was refused and the file still holds that lineage, so no one can renew it."""
        with self.c.store.transaction() as accounts:
            current = accounts.by_id(acc.id)
            if current is not None and not current.needs_login:
                accounts.put(current.copy(needs_login=True))
        with contextlib.suppress(AcctError):
            self.c.state.record(
                "needs_login", account_id=acc.id, target=self.target.name, reason="refresh refused"
            )
        prompt_state.refresh_quietly(self.c)

    def _bench(self, acc: Account, r: Rest) -> None:
        reason = f"{r.label} limit" + (f"; {r.note}" if r.note else "")
        if r.kind == "auth":
            reason = r.note
        self.c.state.bench(acc.id, r.until, kind=r.kind, reason=reason)
        with contextlib.suppress(AcctError):
            self.c.state.record(
                "bench",
                account_id=acc.id,
                target=self.target.name,
                until=r.until,
                kind=r.kind,
                reason=reason,
            )
        prompt_state.refresh_quietly(self.c)

    def _record_run(self, acc: Account, result: RunResult, ending: Ending) -> None:
        with contextlib.suppress(AcctError):
            st = self.c.state
            if self.pending_rotation is not None:
                gap = result.started_at - float(self.pending_rotation.pop("ended_at"))
                st.record(
                    "rotate",
                    target=self.target.name,
                    gap_ms=round(gap * 1000, 1),
                    **self.pending_rotation,
                )
                self.pending_rotation = None
            st.record(
                "exec",
                account_id=acc.id,
                target=self.target.name,
                status=result.status,
                ending=ending.kind,
                rotation=self.rotations,
                started_at=result.started_at,
                ended_at=result.ended_at,
            )

    # --- the loop ----------------------------------------------------------------------------

    def watched(self) -> int:
        """:meth:`run` with the usage proxy in front of the tool when it can be (acct.services.proxy)."""
        asked = (
            self.opts.proxy
            if self.opts.proxy is not None
            else (None if self.c.config.proxy else False)
        )
        if self.target.name in PROXIED and self.target.name != "claude-code":
            # OpenCode, Pi and Codex: pointed at the proxy by their targets' overlays; it fails
            # over in flight, and a sleeping run whose refusal no account could take is ended
            # (_RefusalEnder).
            plan = self._plan() if self.target.name in FAILS_OVER else None
            self.watch, self.route = start_tool_watch(self.c, self.target, asked, self.out, plan)
        else:  # Claude Code, and a tool the proxy cannot be put in front of (it says so)
            self.watch = start_watch(self.c, self.target.name, asked, self.out, self._plan())
        try:
            return self.run()
        finally:
            if self.watch is not None:
                self.watch.stop()

    def _plan(self) -> Plan:
        """What the proxy needs to fail over in flight for this session."""
        return Plan(
            target=self.target.name,
            here=self.here,
            tool_env=dict(self.tool_env),
            policy=self.policy,
            session_id=self.live.row.id if self.live is not None else None,
            wait=self.opts.wait,
            switch_back=self.c.config.switch_back,
            max_switches=self._max_rotations() if self.opts.rotate else 0,
            announce=self.out.note,
            provider=self.target.provider,
        )

    def _max_rotations(self) -> int:
        limit = self.opts.max_rotations
        return self.c.config.max_rotations if limit is None else limit

    def run(self) -> int:
        env = scrubbed_env(self.tool_env, self.target, self.out)
        acc = self.lend(self.first())
        if self.target.extra_usage_billing and acc.is_oauth:
            self.out.note(f"note: {EXTRA_USAGE_NOTE.format(tool=self.target.name)}")
        argv = list(self.opts.argv)
        while True:
            result, ending = self.run_once(acc, argv, env)
            if ending.kind not in ("quota", "auth"):
                self._learn_from_proxy(acc, result)
            if result.interrupted or any(s in TERMINATING for s in result.forwarded):
                return result.status
            if ending.kind == "throttle":
                self.out.note(
                    f"{acc.name} was throttled by the server (not a usage limit); not rotating"
                )
            if ending.kind not in ("quota", "auth", "login"):
                return result.status
            self.tried.add(acc.id)
            r, confirm_s = self.rest(acc, ending, result)
            limit = self._max_rotations()
            if not self.opts.rotate or self.rotations >= limit:
                self.out.note(
                    f"{acc.name} {_what(r)}{'' if self.opts.rotate else ' (--no-rotate)'}; "
                    + (
                        f"stopping after {self.rotations} rotations"
                        if self.opts.rotate
                        else "not rotating"
                    )
                )
                return result.status
            self.waited = False
            nxt = self.lend(self.choose())
            if nxt.id == acc.id:
                self.out.note(f"{acc.name} {_what(r)}; waited for its reset → resuming on it")
            else:
                after = "waited for a reset, " if self.waited else ""
                self.out.note(f"{acc.name} {_what(r)} → {after}switching to {nxt.name}")
            self.rotations += 1
            _rotated(self.c, acc, nxt, r.kind)
            self.pending_rotation = {
                "account_id": acc.id,
                "to": nxt.id,
                "reason": r.kind,
                "ended_at": result.ended_at,
                "confirm_ms": round(confirm_s * 1000, 1),
            }
            session = self.target.run_session(self.tool_env, _cwd(), result.started_at)
            argv = resumed_argv(self.target, self.opts.argv, self.c, session)
            acc = nxt


# --- helpers ---


def _rotated(c: Ctx, acc: Account, nxt: Account, reason: str) -> None:
    """Count the switch for the metrics and tell observers (textfile, alerts)."""
    events.count(c, "rotations", account_id=acc.id, reason=reason)
    events.emit(c, "rotation", account_id=acc.id, to=nxt.id, reason=reason)


def _what(r: Rest) -> str:
    if r.kind == "needs_login":
        return "needs a new login"
    if r.kind == "auth":
        return f"had its login refused (resting {human_duration(r.until - time.time())})"
    text = f"hit its {r.label} limit (resets {local_time(r.until)})"
    if r.kind == "cooloff":
        text = f"reported its {r.label} limit ({r.note}; resting {human_duration(r.until - time.time())})"
    return text


def scrubbed_env(env: Mapping[str, str], target: JsonTarget, out: Reporter) -> dict[str, str]:
    """The child's environment without variables that would override the file acct writes
    (``target.overriding_env``; Pi reads its file before its variables: those stay)."""
    child = dict(env)
    for name in target.overriding_env:
        if child.pop(name, None) is not None:
            out.warn(
                f"{name} is set; removed for this run so {target.name} uses the account acct "
                "lends it"
            )
    return child


def resumed_argv(
    target: JsonTarget, argv: list[str], c: Ctx, session: str | None = None
) -> list[str]:
    """The argv of the run that resumes the interrupted one; ``session``: the interrupted
    run's session id when the tool's resume must name it (Codex)."""
    tc = c.config.target(target.name)
    prompt = tc.continuation_prompt or c.config.continuation_prompt
    if tc.resume_args is not None:
        return [argv[0], *(a.replace("{prompt}", prompt) for a in tc.resume_args)]
    return target.resume_session_args(argv, prompt, session)


def _cwd() -> Path:
    try:
        return Path.cwd()
    except OSError:
        return Path(".")


def explain(choice: Choice) -> list[str]:
    """How a pick ranked the accounts, one line each, then the choice."""
    lines = []
    for i, r in enumerate(choice.ranking, 1):
        mark = f"{i:>2}." if r.eligible else " -"
        lines.append(f"{mark} {r.name}: {r.why}")
    if choice.account is not None:
        lines.append(f"chose {choice.account.name} ({choice.reason})")
    return lines


def start_watch(
    c: Ctx, target: str, asked: bool | None, out: Reporter, plan: Plan | None = None
) -> Watch | None:
    """The usage proxy for this session, or None (off, not safe to put on the tool's route, or
    it could not start: one line says why).

    Claude Code's settings files may set its base URL, HTTP proxy or certificates over the
    environment acct gives it: then the route is theirs, and the proxy stays out of it unless
    ``--proxy`` asks for it (it then forwards to the settings' base URL, never claiming
    Anthropic's own API).
    """
    if asked is False or (asked is None and target not in PROXIED):
        return None
    if target not in PROXIED:
        out.warn(
            f"the usage proxy works with {', '.join(PROXIED)} only; running {target} without it"
        )
        return None
    route = claude_route(c.env)
    if route.unreadable is not None:
        out.warn(
            f"cannot read {route.unreadable} as JSON; running {target} without the usage proxy"
        )
        return None
    if route.provider is not None:
        out.note(f"note: {target} uses {route.provider}; running it without the usage proxy")
        return None
    if route.set_by_settings:
        path, name = route.set_by_settings[-1]
        if asked is None:
            out.note(
                f"note: {path} sets {name} for {target}; running it without the usage "
                "proxy (--proxy puts it in front anyway)"
            )
            return None
        if route.base_url_from_settings:
            out.note(
                f"note: the proxy forwards to the ANTHROPIC_BASE_URL of {target}'s "
                "settings, which it may use instead of the proxy's address"
            )
    try:
        return Watch(c.env, route=route, plan=plan).start()
    except Exception as e:  # noqa: BLE001  (the tool runs all the same, only unobserved)
        why = str(e) if isinstance(e, ValueError) else type(e).__name__
        out.warn(f"cannot start the usage proxy ({why}); running without it")
        return None


class _RefusalEnder:
    """Ends a run whose tool got a quota refusal and would sleep on it (``SLEEPS_ON_REFUSAL``).

    What the tool received decides (:meth:`Watch.reached`), not the run's first account: a
    refusal the proxy answered in flight from another account, or holds with ``--wait``, never
    reached the tool, and the run goes on on the account the session is on now. A refusal that
    did reach it and stays the last answer for ``REFUSAL_GRACE_S`` ends the child with SIGTERM;
    the run then ends as ``quota`` with the server's reset (``Session._proxy_says``).
    """

    def __init__(
        self, watch: Watch, acc: Account, out: Reporter, name_of: Callable[[str], str]
    ) -> None:
        self.watch, self.acc, self.out, self.name_of = watch, acc, out, name_of
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, pid: int) -> None:
        self._thread = threading.Thread(target=self._watch, args=(pid,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self, pid: int) -> None:
        since: float | None = None
        while not self._done.wait(_POLL_S):
            reached = self.watch.reached(self.acc.id)
            if reached is None:
                since = None
                continue
            since = since if since is not None else time.monotonic()
            if time.monotonic() - since >= REFUSAL_GRACE_S:
                self.out.note(
                    f"{self.name_of(reached[0])}'s limit reached the tool, which would wait for "
                    "it; ending the run to go on"
                )
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
                return


def start_tool_watch(
    c: Ctx, target: JsonTarget, asked: bool | None, out: Reporter, plan: Plan | None = None
) -> tuple[Watch | None, ToolRoute | None]:
    """The usage proxy for a tool that is pointed at it by its target's overlay (OpenCode, Pi),
    forwarding to the tool's own route; (None, None) when it is off or cannot be used."""
    if asked is False:
        return None, None
    try:
        cwd = Path.cwd()
    except OSError:
        cwd = Path(".")
    tool = target.route(c.env, cwd)
    name = target.name
    if tool.unreadable is not None:
        out.warn(f"cannot read {tool.unreadable}; running {name} without the usage proxy")
        return None, None
    if tool.beyond is not None:
        out.note(f"note: {tool.beyond}; running {name} without the usage proxy")
        return None, None
    if not tool.usable:
        out.note(f"note: {name}'s base URL is not one acct can proxy; running it without the proxy")
        return None, None
    route = Route({**c.env, "ANTHROPIC_BASE_URL": tool.upstream})
    try:
        return Watch(c.env, route=route, plan=plan).start(), tool
    except Exception as e:  # noqa: BLE001  (the tool runs all the same, only unobserved)
        why = str(e) if isinstance(e, ValueError) else type(e).__name__
        out.warn(f"cannot start the usage proxy ({why}); running without it")
        return None, None


def run_exec(c: Ctx, opts: ExecOptions, out: Reporter) -> int:
    """The whole ``acct exec``: validate, open the session record, run the rotation loop, close."""
    from acct.app import pool_beat  # lazy: psycopg only with a pool

    name, policy = opts.validate(c)
    target = get_target(name)
    for message in sessions.sweep(c):
        out.warn(message)
    live = sessions.open_session(c, target, isolate=opts.isolate)
    try:
        here = (target.name, holder_path(target.path(live.env)))
        if live.row.isolated and not opts.isolate:
            out.note(
                f"another acct exec runs {target.name} on {target.path(c.env)}; this one "
                "gets a credentials file of its own"
            )
        with pool_beat.beating(c, target, live.row, live.env, out.warn):
            return Session(c, opts, target, policy, here, live=live, out=out).watched()
    finally:
        _close_session(c, live, out)
        if c.pool_settings is not None:
            with contextlib.suppress(Exception):  # the session's own outcome stands
                for message in pool_beat.settle_lost(c):
                    out.warn(message)


def _close_session(c: Ctx, live: Opened, out: Reporter) -> None:
    """Give the session's login back to the store (see acct.services.sessions); a failure only warns."""
    try:
        kept = sessions.close(c, live.row)
    except AcctError as e:
        kept = f"{e.message}; `acct status` tries again"
    if kept is not None:
        out.warn(kept)

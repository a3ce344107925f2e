"""An ``acct exec`` session's view of the proxy: what it learns lands in the state."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

from acct.base.models import fingerprint
from acct.services import prompt_state
from acct.services.proxy.failover import Failover, Plan, Switch
from acct.services.proxy.headers import Observation, QuotaSignal
from acct.services.proxy.route import ASSUME_FIRST_PARTY, FIRST_PARTY_HOST, Route, upstream_for
from acct.services.proxy.server import Proxy
from acct.services.proxy.upstream import no_proxy_hosts

if TYPE_CHECKING:
    from acct.base.models import Account
    from acct.domain.answers import AnswerUsage
    from acct.services.context import Ctx

PROMPT_EVERY = 10.0  # seconds between prompt-file rewrites from live usage
SETTLE_TIMEOUT = 2.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Answered:
    """An answer the proxy relayed, and the usage it reported (None: it said none)."""

    credential: str
    usage: AnswerUsage | None


class Watch:
    """The proxy for one ``acct exec`` session, and what it learns.

    Observations are queued by the proxy and written by one daemon thread with a context of its
    own (an SQLite connection belongs to its thread): each becomes the usage of the account whose
    credential it carried, and the prompt files follow at most every ``PROMPT_EVERY`` seconds. For
    the account of the current run (``begin``) it keeps the last word on quota: a refusal, or
    nothing once a later answer was allowed.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        route: Route | None = None,
        prompt_every: float = PROMPT_EVERY,
        plan: Plan | None = None,
        provider: str = "anthropic",
    ) -> None:
        self.env = dict(env)
        self.route = route if route is not None else Route(dict(env))
        self.prompt_every = prompt_every
        # In-flight failover, when the session says what it is (acct.services.proxy.failover).
        self.failover = Failover(self.env, plan) if plan is not None else None
        self.proxy = Proxy(
            upstream_for(self.route.env),
            self._submit,
            env=self.route.env,
            broker=self.failover,
            provider=plan.provider if plan is not None else provider,
        )
        self.proxy.on_answer = self._answered
        # Token accounting names the tool and the session the answers belong to.
        self.tool = plan.target if plan is not None else "claude-code"
        self.session = plan.session_id if plan is not None else None
        self._queue: queue.SimpleQueue[Observation | Answered | None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._submitted = 0
        self._done = 0
        self._account_id: str | None = None
        self._quota: QuotaSignal | None = None
        self._owners: dict[str, str | None] = {}  # credential fingerprint → account id
        self._prompt_at = 0.0
        self._prompt_due = False
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.proxy.url

    def child_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The variables that point a tool run with ``env`` at the proxy.

        Claude Code withholds first-party features (1M context, tool search, some betas) when
        ``ANTHROPIC_BASE_URL`` names another host than api.anthropic.com; when the proxy's
        upstream is that host, and no settings file has a say in the route, its own switch says
        so. Behind the user's HTTP proxy, loopback joins the union of ``NO_PROXY`` and
        ``no_proxy``, set under both names (readers differ in which one they read first), so the
        tool reaches 127.0.0.1 directly.
        """
        out = {"ANTHROPIC_BASE_URL": self.url}
        first_party = urlsplit(self.proxy.upstream).hostname == FIRST_PARTY_HOST
        if first_party and not self.route.set_by_settings:
            out[ASSUME_FIRST_PARTY] = "1"
        if any(env.get(k) for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")):
            hosts = no_proxy_hosts(env)
            joined = ",".join(hosts if "127.0.0.1" in hosts else [*hosts, "127.0.0.1"])
            if env.get("NO_PROXY") != joined or env.get("no_proxy") != joined:
                out["NO_PROXY"] = out["no_proxy"] = joined
        return out

    def start(self) -> Self:
        self.proxy.start()
        self._thread = threading.Thread(target=self._write_loop, name="acct-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the proxy, then let the writer write what it has and end (bounded by
        ``timeout``): a write cut off by the process's exit would leave a temporary file."""
        self.proxy.stop()
        if self.failover is not None:
            self.failover.drain(timeout)
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def begin(self, account: Account) -> None:
        """A run on ``account`` starts: what earlier runs saw no longer decides anything."""
        self.settle()
        with self._cond:
            self._account_id = account.id
            self._quota = None
        if self.failover is not None:
            self.failover.begin(account)

    @property
    def switches(self) -> list[Switch]:
        """The in-flight switches so far (the account refused, the one that took over)."""
        return list(self.failover.switches) if self.failover is not None else []

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until what the proxy has seen so far is written (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        if self.failover is not None:
            self.failover.drain(timeout)
        with self._cond:
            target = self._submitted
            while self._done < target and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)

    def quota(self, account_id: str) -> QuotaSignal | None:
        """The refusal that ended ``account_id``'s run, when the last answer it got was one."""
        with self._cond:
            return self._quota if self._account_id == account_id else None

    def reached(self, account_id: str) -> tuple[str, QuotaSignal] | None:
        """The account and quota refusal the tool of ``account_id``'s run received and is left
        with (no allowed answer came after it). With failover that is the refusal no account
        could take over, whichever account the session is on by then; a refusal answered in
        flight, or held with ``--wait``, never reached the tool. Without failover, the refusal
        that is the last word for the run's account."""
        if self.failover is not None:
            return self.failover.reached
        seen = self.quota(account_id)
        return (account_id, seen) if seen is not None else None

    # --- the writer thread -------------------------------------------------------------------

    def _answered(self, credential: str, usage: AnswerUsage | None) -> None:
        self._submit(Answered(credential, usage))

    def _submit(self, obs: Observation | Answered) -> None:
        with self._cond:
            self._submitted += 1
        self._queue.put(obs)

    def _write_loop(self) -> None:
        from acct.services.context import Ctx

        ctx = Ctx(env=self.env)
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            seen = [o for o in batch if o is not None]
            try:
                # A failed cache write must never stop the session (nor reach the terminal).
                with contextlib.suppress(Exception):
                    self._write(ctx, seen)
            finally:
                with contextlib.suppress(Exception):
                    ctx.state.close()  # no connection held open while the tool runs
                with self._cond:
                    self._done += len(seen)
                    self._cond.notify_all()
            if any(o is None for o in batch):
                return

    def _write(self, ctx: Ctx, items: list[Observation | Answered]) -> None:
        from acct.services import usage

        seen = [o for o in items if isinstance(o, Observation)]
        self._count(ctx, [a for a in items if isinstance(a, Answered)])
        latest: dict[str, Observation] = {}
        for obs in seen:
            owner = self._owner(ctx, obs.credential)
            if owner is None:
                continue
            latest[owner] = obs
            if owner == self._account_id and obs.status is not None:
                with self._cond:
                    self._quota = obs.quota
        for owner, obs in latest.items():
            five_hour, seven_day = obs.windows()
            if five_hour is not None or seven_day is not None:
                usage.record_observed(ctx, owner, five_hour, seven_day, now=obs.at)
                self._prompt_due = True
        self._update_prompt(ctx, force=not seen)

    def _count(self, ctx: Ctx, answers: list[Answered]) -> None:
        """The answers' tokens into the state (the accounting is imported once there are any)."""
        if not answers:
            return
        from acct.services.accounting import record_answer_usage

        for answer in answers:
            owner = self._owner(ctx, answer.credential)
            if owner is not None:
                record_answer_usage(ctx, owner, self.tool, self.session, None, answer.usage)

    def _owner(self, ctx: Ctx, credential: str) -> str | None:
        """The account a credential belongs to: the one whose token (acct's copy or its tool
        file's) it is; otherwise the current run's, since the tool refreshes the token acct lent
        it into one acct has not seen yet."""
        if credential == "-":
            return None
        if credential not in self._owners:
            from acct.services.custody import access_token_for

            for acc in ctx.store.read():
                live = fingerprint(access_token_for(ctx, acc)) if acc.is_oauth else "-"
                if credential in (acc.fingerprint, live):
                    self._owners[credential] = acc.id
                    break
        return self._owners.get(credential, self._account_id)

    def _update_prompt(self, ctx: Ctx, *, force: bool) -> None:
        now = time.monotonic()
        if not self._prompt_due or (not force and now - self._prompt_at < self.prompt_every):
            return
        self._prompt_at, self._prompt_due = now, False
        prompt_state.refresh_quietly(ctx)


def start_watch(env: Mapping[str, str]) -> Watch:
    """A started :class:`Watch`; raises ``OSError`` when no loopback port can be had."""
    return Watch(env).start()

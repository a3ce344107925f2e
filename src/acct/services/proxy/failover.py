"""In-flight failover: a request refused for quota is sent again on the next account.

When an answer to a request carrying the session's credential is a quota refusal (429 with
``anthropic-ratelimit-unified-status: rejected``), :class:`Failover` benches that account until
the reset the headers name (in the shared state, as the exit-based loop does), picks the next
account with the session's policy, and sends the same request again with that account's access
token: the tool receives the successful answer and never sees the refusal. The session then stays
on the new account (sticky: the prompt cache stays warm), until it is refused in turn, or, with
``switch_back``, until the first account can run again.

Which requests it touches: only those whose credential is the one acct lent to this session, or
the successor the tool refreshed it into (read back from the tool's file). Any other request
(another local process, an API key, the token endpoint) passes unchanged and is never sent
again, so nobody can borrow an account through the proxy.

Custody (see the package docstring for why no lineage gets two holders): the tool's file keeps
the lineage it holds; the tokens put into requests are access tokens of accounts whose lineage
acct's store holds, refreshed by acct under the account's lock (:func:`acct.services.oauth.
ensure_fresh`, which refuses an account lent to a file) well before they expire.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from acct.base.models import fingerprint
from acct.base.timefmt import human_duration, local_time
from acct.services.proxy.headers import Observation, QuotaSignal
from acct.services.proxy.server import Outgoing

if TYPE_CHECKING:
    from acct.base.models import Account
    from acct.services.context import Ctx

PER_MODEL = ("Opus weekly", "Sonnet weekly")
HOLD_STEP = 1.0  # seconds between looks at a departed client while holding for a reset
# The countdown of a held request, one line at a time: the tool owns the terminal, so nothing
# is redrawn under it.
HOLD_TELL_EVERY = 300.0
# Claude Code 2.1 sends metadata.user_id = JSON text with the account uuid from ~/.claude.json
# (``{"device_id":…,"account_uuid":…,"session_id":…}``); older releases sent
# ``user_<hash>_account_<uuid>_session_<uuid>``.
_LEGACY_USER = re.compile(r"(_account_)([0-9a-fA-F-]{36})(_)")


@dataclass(frozen=True)
class Plan:
    """What the exec session tells the proxy about itself."""

    target: str
    here: tuple[str, str]  # the tool's file, as custody records it (target, path)
    tool_env: Mapping[str, str]  # the environment the tool reads its file by
    policy: str
    session_id: str | None = None
    wait: bool = False
    switch_back: bool = False
    max_switches: int = 8  # 0 (``--no-rotate``, ``--max-rotations 0``): refusals pass through
    announce: Callable[[str], None] = field(default=lambda message: None)
    # Whose accounts serve the session ("anthropic", "chatgpt"): how answers are read, which
    # accounts may take over and how a request is dressed for one (a ChatGPT request names its
    # workspace in chatgpt-account-id besides the bearer token).
    provider: str = "anthropic"


@dataclass(frozen=True)
class Switch:
    """One in-flight change of account."""

    at: float
    source: str  # account id
    to: str | None  # None: no account could take over; the refusal went to the tool
    why: QuotaSignal


class Unavailable(Exception):
    """This account cannot serve the session's requests now."""


def rest_for(signal: QuotaSignal, now: float, cooloff: float) -> tuple[float, str, str]:
    """Until when a refused account rests (until, kind, reason): the reset the headers name; a
    per-model weekly cap (``Opus weekly``) stops one model only, so it rests for ``cooloff``
    and is asked again, as the exit-based loop does when usage shows room."""
    label = signal.window or "usage"
    if signal.window in PER_MODEL:
        return now + cooloff, "cooloff", f"{label} limit; seen by the usage proxy"
    until = signal.reset_at if signal.reset_at and signal.reset_at > now else now + cooloff
    return until, "quota", f"{label} limit; seen by the usage proxy"


@contextlib.contextmanager
def _closing(c: Ctx) -> Iterator[Ctx]:
    """A context of its own for one piece of work on a handler thread; its SQLite connection
    (which belongs to this thread) is closed after."""
    try:
        yield c
    finally:
        with contextlib.suppress(Exception):
            c.state.close()


def rewrite_user_id(body: bytes | None, old_uuid: str | None, new_uuid: str | None) -> bytes | None:
    """The body with ``metadata.user_id`` naming ``new_uuid`` where it named ``old_uuid``;
    unchanged when it names no account or the body is not a JSON object."""
    if body is None or not old_uuid or not new_uuid or old_uuid.encode() not in body:
        return body
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("user_id"), str):
        return body
    user: str = meta["user_id"]
    new_user = _renamed(user, old_uuid, new_uuid)
    if new_user == user:
        return body
    old_text, new_text = json.dumps(user).encode(), json.dumps(new_user).encode()
    if body.count(old_text) == 1:  # the bytes as the tool wrote them, one value changed
        return body.replace(old_text, new_text)
    meta["user_id"] = new_user
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _renamed(user: str, old_uuid: str, new_uuid: str) -> str:
    with contextlib.suppress(ValueError):
        inner = json.loads(user)
        if isinstance(inner, dict):
            if inner.get("account_uuid") != old_uuid:
                return user
            inner["account_uuid"] = new_uuid
            return json.dumps(inner, ensure_ascii=False, separators=(",", ":"))
    return _LEGACY_USER.sub(
        lambda m: m.group(1) + (new_uuid if m.group(2) == old_uuid else m.group(2)) + m.group(3),
        user,
    )


def _bearer(headers: list[tuple[bytes, bytes]], token: str) -> list[tuple[bytes, bytes]]:
    out = [(k, v) for k, v in headers if k.lower() not in (b"authorization", b"x-api-key")]
    return [*out, (b"authorization", b"Bearer " + token.encode("ascii"))]


ACCOUNT_HEADER = b"chatgpt-account-id"


def _workspace(
    headers: list[tuple[bytes, bytes]], account: str | None
) -> list[tuple[bytes, bytes]]:
    """ChatGPT's ``chatgpt-account-id`` naming ``account`` (the token's own workspace), in
    place of the lent account's; dropped when the account has none on record."""
    out = [(k, v) for k, v in headers if k.lower() != ACCOUNT_HEADER]
    if account is None:
        return out
    return [*out, (ACCOUNT_HEADER, account.encode("ascii", "replace"))]


def workspace_of(acc: Account) -> str | None:
    """The ChatGPT workspace an account's tokens are for (``tokens.extra["account_id"]``, else
    the account's ``org_uuid``, else the id_token's ``chatgpt_account_id``)."""
    from acct.domain.chatgpt import parse_id_claims

    extra = acc.tokens.extra if acc.tokens is not None else {}
    given = extra.get("account_id")
    if isinstance(given, str) and given:
        return given
    return acc.org_uuid or parse_id_claims(acc.id_token).account_id


class Failover:
    """The broker of one exec session's proxy (:class:`acct.services.proxy.server.Broker`)."""

    def __init__(self, env: Mapping[str, str], plan: Plan) -> None:
        self.env = dict(env)
        self.plan = plan
        self._lock = threading.RLock()
        self._lent: str | None = None  # the account acct lent to the tool's file this run
        self._serving: str | None = None  # the account the session's requests go to
        self._credentials: set[str] = set()  # fingerprints of the session's own credential
        self._file_seen: tuple[int, int, int] | None = None
        self._tokens: dict[str, tuple[str, float]] = {}  # account id -> (access, expires_at)
        self._uuids: dict[str, str | None] = {}
        self._workspaces: dict[str, str | None] = {}  # account id -> chatgpt-account-id
        self.switches: list[Switch] = []
        # The quota refusal the tool got last (account id, signal), until an allowed answer to
        # one of the session's requests follows it: what an exec session ends a sleeping run on.
        self._reached: tuple[str, QuotaSignal] | None = None
        self._chores: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._chores_done = threading.Condition()
        self._pending = 0
        self._worker: threading.Thread | None = None

    # --- bookkeeping, off the request's path ---------------------------------------------

    def _later(self, chore: Callable[[], None]) -> None:
        """Run ``chore`` after the ones before it, on a worker thread: the re-sent request does
        not wait for the state, history and prompt writes."""
        with self._chores_done:
            self._pending += 1
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, name="acct-failover", daemon=True
                )
                self._worker.start()
        self._chores.put(chore)

    def _work(self) -> None:
        while True:
            chore = self._chores.get()
            try:
                with contextlib.suppress(Exception):
                    chore()
            finally:
                with self._chores_done:
                    self._pending -= 1
                    self._chores_done.notify_all()

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until the bookkeeping of the switches so far is written (bounded)."""
        deadline = time.monotonic() + timeout
        with self._chores_done:
            while self._pending and (left := deadline - time.monotonic()) > 0:
                self._chores_done.wait(left)

    # --- what the exec session asks -------------------------------------------------------

    def begin(self, account: Account) -> None:
        """A run on ``account`` (just lent to the tool's file) starts."""
        with self._lock:
            self._lent = self._serving = account.id
            self._uuids[account.id] = account.uuid
            self._credentials = {account.fingerprint} if account.is_oauth else set()
            self._file_seen = None
            self._reached = None
            self._read_file()

    @property
    def serving(self) -> str | None:
        with self._lock:
            return self._serving

    @property
    def reached(self) -> tuple[str, QuotaSignal] | None:
        """The account and quota refusal the tool received last, while no allowed answer to the
        session's requests came after it; None while every refusal was answered in flight (or
        is held with ``--wait``)."""
        with self._lock:
            return self._reached

    # --- the broker -----------------------------------------------------------------------

    def outgoing(self, request: Outgoing) -> Outgoing:
        if not self._ours(request.credential):
            return request
        with self._lock:
            lent, serving = self._lent, self._serving
            if serving != lent and self.plan.switch_back and lent and self._usable(lent):
                self._switch_to(lent, None, "its limit reset")
                serving = lent
        if serving is None or serving == lent:
            return replace(request, account_id=lent, original=request)
        try:
            return self._dressed(request, serving)
        except Unavailable:
            with self._lock:
                self._serving = lent
            return replace(request, account_id=lent, original=request)

    def after(self, obs: Observation | None, sent: Outgoing) -> Outgoing | None:
        if sent.account_id is None or obs is None:
            return None
        if obs.http_status < 400:
            with self._lock:
                self._reached = None  # the tool is answered: whatever it was refused is past
            return None
        signal = obs.quota if obs.http_status == 429 else None
        if signal is None:
            return None  # a plain throttle, or paid overage: not this account's quota
        again = self._again(signal, sent, sent.account_id)
        if again is None:
            with self._lock:
                self._reached = (sent.account_id, signal)
        return again

    def _again(self, signal: QuotaSignal, sent: Outgoing, refused: str) -> Outgoing | None:
        """The refused request dressed for the next account; None: the refusal goes to the tool."""
        original = sent.original or sent
        tried = {*sent.tried, refused}
        with self._lock:
            self._later(lambda: self._bench(refused, signal))
            if len([s for s in self.switches if s.to]) >= self.plan.max_switches:
                self._refused_everywhere(refused, signal, quiet=True)
                return None
            if self._serving not in tried and self._serving is not None:
                # A parallel request already switched: follow it.
                with contextlib.suppress(Unavailable):
                    return self._resend(original, self._serving, tried)
            nxt = self._next(tried)
        if nxt is None and self.plan.wait:
            nxt = self._hold()  # without the lock: other requests go on meanwhile
        with self._lock:
            if nxt is None:
                self._refused_everywhere(refused, signal)
                return None
            if nxt != self._serving:
                self._switch_to(nxt, refused, signal)
            try:
                return self._resend(original, nxt, tried)
            except Unavailable:
                return None

    # --- whose credential -----------------------------------------------------------------

    def _ours(self, credential: str) -> bool:
        if credential == "-":
            return False
        with self._lock:
            if credential in self._credentials:
                return True
            self._read_file()  # only when the file changed since it was last read
            return credential in self._credentials

    def _read_file(self) -> None:
        """The access token the tool's file holds now: the one acct lent, or the successor the
        tool refreshed it into (the file is the lineage's only holder)."""
        from acct.services.targets import get_target

        with contextlib.suppress(Exception):
            target = get_target(self.plan.target)
            st = os.stat(target.path(self.plan.tool_env))
            seen = (st.st_mtime_ns, st.st_size, st.st_ino)
            if seen == self._file_seen:
                return
            self._file_seen = seen
            entry = target.read(self.plan.tool_env)
            if entry is not None and not entry.blank and entry.tokens.access:
                self._credentials.add(fingerprint(entry.tokens.access))

    # --- tokens -----------------------------------------------------------------------------

    def _ctx(self) -> Ctx:
        from acct.services.context import Ctx

        return Ctx(env=self.env)

    def _token(self, account_id: str) -> str:
        """An access token of ``account_id`` good for a while, refreshed by acct under the
        account's lock when it runs low; :class:`Unavailable` when the store does not hold the
        account's lineage (lent to a file) or it cannot be had."""
        from acct.base.errors import AcctError
        from acct.services import providers

        with self._lock:
            cached = self._tokens.get(account_id)
            c = self._ctx()
            try:
                margin = c.config.refresh_margin
                acc = c.store.read().get_by_id(account_id)
                if not acc.is_oauth or acc.holder is not None or acc.needs_login:
                    raise Unavailable(acc.name)
                if cached is not None and cached[1] - time.time() > margin:
                    return cached[0]
                acc = providers.ensure_fresh(c, account_id, margin)
                if acc.tokens is None or not acc.tokens.access:
                    raise Unavailable(acc.name)
                self._tokens[account_id] = (acc.tokens.access, float(acc.tokens.expires_at))
                self._uuids[account_id] = acc.uuid
                self._workspaces[account_id] = workspace_of(acc)
                return acc.tokens.access
            except AcctError as e:
                raise Unavailable(type(e).__name__) from None
            finally:
                with contextlib.suppress(Exception):
                    c.state.close()

    def _dressed(self, request: Outgoing, account_id: str) -> Outgoing:
        """The tool's request as the account's own tool would send it."""
        token = self._token(account_id)
        if self.plan.provider == "chatgpt":
            headers = _workspace(_bearer(request.headers, token), self._workspaces.get(account_id))
            return Outgoing(headers, request.body, account_id, original=request)
        lent_uuid = self._uuids.get(self._lent or "")
        body = rewrite_user_id(request.body, lent_uuid, self._uuids.get(account_id))
        return Outgoing(_bearer(request.headers, token), body, account_id, original=request)

    def _resend(self, original: Outgoing, account_id: str, tried: set[str]) -> Outgoing:
        if account_id == self._lent:
            return replace(
                original, account_id=account_id, original=original, tried=frozenset(tried)
            )
        out = self._dressed(original, account_id)
        return replace(out, tried=frozenset(tried))

    # --- choosing --------------------------------------------------------------------------

    def _usable(self, account_id: str) -> bool:
        c = self._ctx()
        try:
            return account_id not in c.state.benches(time.time())
        except Exception:  # noqa: BLE001
            return False
        finally:
            with contextlib.suppress(Exception):
                c.state.close()

    def _next(self, tried: set[str]) -> str | None:
        """The next account by the session's policy: the lent one (its own token) or one whose
        lineage the store holds and whose token can be had now."""
        from acct.domain.pick import pick
        from acct.services.targets import get_target

        provider = get_target(self.plan.target).provider
        exclude = set(tried)
        while True:
            c = self._ctx()
            try:
                now = time.time()
                accounts = [
                    a
                    for a in c.store.read()
                    if a.is_oauth
                    and a.provider == self.plan.provider
                    and (a.holder is None or a.id == self._lent)
                ]
                choice = pick(
                    accounts,
                    c.state.all_usage(),
                    c.state.benches(now),
                    now,
                    self.plan.policy,
                    last_used=c.state.last_used(),
                    exclude=exclude,
                    here=self.plan.here,
                    provider=provider,
                )
            except Exception:  # noqa: BLE001  (no choice: the refusal goes to the tool)
                return None
            finally:
                with contextlib.suppress(Exception):
                    c.state.close()
            if choice.account is None:
                return None
            if choice.account.id == self._lent:
                return choice.account.id
            try:
                self._token(choice.account.id)
                return choice.account.id
            except Unavailable:
                exclude.add(choice.account.id)

    def _hold(self) -> str | None:
        """``--wait``: hold the request until the earliest reset of the accounts refused, then
        choose again; None when the client left meanwhile."""
        from acct.services.proxy import cancel

        self.drain()  # the benches of this request's refusals are written
        c = self._ctx()
        try:
            benches = c.state.benches(time.time())
            names = {a.id: a.name for a in c.store.read()}
        finally:
            with contextlib.suppress(Exception):
                c.state.close()
        waiting = [(b.until, i) for i, b in benches.items() if i in names]
        if not waiting:
            return None
        until, who = min(waiting)
        self.plan.announce(
            f"every account is rate-limited; holding the request until {names[who]}'s reset at "
            f"{local_time(until)}"
        )
        ticket = cancel.current()
        told = time.monotonic()
        while (left := until - time.time()) > 0:
            if ticket is not None and ticket.cancelled:
                return None
            if time.monotonic() - told >= HOLD_TELL_EVERY:
                told = time.monotonic()
                self.plan.announce(f"{human_duration(left)} left until {names[who]}'s reset")
            time.sleep(min(HOLD_STEP, left))
        return self._next(set())

    # --- what a switch changes ---------------------------------------------------------------

    def _bench(self, account_id: str, signal: QuotaSignal) -> None:
        c = self._ctx()
        # The answer matters more than the bookkeeping: a failed write never fails it.
        with contextlib.suppress(Exception), _closing(c):
            until, kind, reason = rest_for(signal, time.time(), c.config.cooloff)
            c.state.bench(account_id, until, kind=kind, reason=reason)
            c.state.record(
                "bench",
                account_id=account_id,
                target=self.plan.target,
                until=until,
                kind=kind,
                reason=reason,
            )

    def _names(self) -> dict[str, str]:
        c = self._ctx()
        try:
            return {a.id: a.name for a in c.store.read()}
        except Exception:  # noqa: BLE001
            return {}

    def _switch_to(self, account_id: str, source: str | None, why: QuotaSignal | str) -> None:
        previous = self._serving
        self._serving = account_id
        names = self._names()
        if isinstance(why, QuotaSignal):
            self.switches.append(Switch(time.time(), source or "", account_id, why))
            reset = f" (resets {local_time(why.reset_at)})" if why.reset_at else ""
            text = (
                f"{names.get(source or '', source)} hit its {why.window or 'usage'} limit{reset} "
                f"→ switching to {names.get(account_id, account_id)} in flight"
            )
        else:
            text = (
                f"{names.get(account_id, account_id)}: {why} → switching back from "
                f"{names.get(previous or '', previous)}"
            )

        if isinstance(why, QuotaSignal):
            reason = "cooloff" if why.window in PER_MODEL else "quota"
        else:
            source, reason = previous, "switch_back"

        def chore() -> None:
            self._reflect(account_id, source, reason)
            self.plan.announce(text)

        self._later(chore)

    def _refused_everywhere(
        self, account_id: str, signal: QuotaSignal, *, quiet: bool = False
    ) -> None:
        self.switches.append(Switch(time.time(), account_id, None, signal))
        if quiet:
            return
        names = self._names()
        reset = f" (resets {local_time(signal.reset_at)})" if signal.reset_at else ""
        text = (
            f"{names.get(account_id, account_id)} hit its {signal.window or 'usage'} limit{reset}; "
            "no other account can take over"
        )

        def chore() -> None:
            self.plan.announce(text)
            self._reflect(None, account_id)

        self._later(chore)

    def _reflect(self, account_id: str | None, source: str | None, reason: str = "quota") -> None:
        """The session registry, the history and the prompt files name the account at once."""
        from acct.services import events, prompt_state

        c = self._ctx()
        with contextlib.suppress(Exception), _closing(c):
            if account_id is not None and self.plan.session_id:
                c.state.update_session(self.plan.session_id, account_id=account_id)
            if account_id is not None:
                c.state.record(
                    "rotate",
                    account_id=source,
                    to=account_id,
                    target=self.plan.target,
                    in_flight=True,
                )
            if account_id is not None and source:
                # Counted and told as the exit-based loop's switches are (metrics, alerts).
                events.count(c, "rotations", account_id=source, reason=reason)
                events.emit(c, "rotation", account_id=source, to=account_id, reason=reason)
            prompt_state.refresh_quietly(c)

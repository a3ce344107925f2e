"""The small interface every target (a coding tool's credential file) implements."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from acct.base.errors import Busy, CorruptFile, NeedsLogin, UsageError
from acct.base.fsio import atomic_write, dir_lock, os_error, read_json_object, touch_lock
from acct.base.models import Account, ProviderName, Tokens, fingerprint
from acct.base.timefmt import MS_THRESHOLD
from acct.domain.classify import Patterns
from acct.services.targets.route import ANTHROPIC_API, ToolRoute


@dataclass(frozen=True)
class Entry:
    """The Anthropic OAuth entry a tool's file holds now."""

    tokens: Tokens
    blank: bool = False  # the tool blanked it (invalid_grant): the account needs a new login
    subscription_type: str | None = None
    rate_limit_tier: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def lineage_fingerprint(self) -> str:
        return self.tokens.lineage_fingerprint

    @property
    def access_fingerprint(self) -> str:
        return fingerprint(self.tokens.access)


class Target(Protocol):
    name: str  # "claude-code" | "opencode" | "pi" | "codex"
    provider: ProviderName  # whose logins it takes: only accounts of this provider are lent to it
    commands: tuple[str, ...]  # basenames that select it: ("claude",)
    refresh_margin: float  # seconds before expiry at which the tool refreshes by itself
    patterns: Patterns
    extra_usage_billing: bool  # Anthropic bills this harness's OAuth traffic as extra usage

    def path(self, env: Mapping[str, str]) -> Path:
        """The credential file, honouring the tool's environment relocation."""

    def read(self, env: Mapping[str, str], *, path: Path | None = None) -> Entry | None:
        """The Anthropic OAuth entry, or None when there is none. CorruptFile when unparseable.
        ``path`` reads another file of the same format instead of the tool's own."""

    def write(
        self,
        env: Mapping[str, str],
        account: Account,
        *,
        path: Path | None = None,
        expect: str | None = None,
    ) -> Entry:
        """Write the account's tokens as the tool's entry: atomic, 0600, under the tool's lock,
        keeping every other key. Refuses (CorruptFile) a file it cannot parse. With ``expect``
        (see ``entry_fingerprint``) the write happens only if the file still holds that."""

    def remove(
        self, env: Mapping[str, str], *, path: Path | None = None, expect: str | None = None
    ) -> bool:
        """Take the entry out of the file (other keys kept); False when there was none."""

    def resume_args(self, argv: Sequence[str], continuation_prompt: str) -> list[str]:
        """The argv that resumes the interrupted work in the tool (argv[0] is the command)."""


# --- shared machinery of the JSON credential files -------------------------------------------
# (Everything below is added for the three targets; the interface above stays as it was.)


@dataclass
class Check:
    """One finding of ``acct doctor``."""

    target: str
    check: str
    ok: bool
    message: str
    path: str | None = None  # the file or directory the message is about
    fixed: bool = False
    fix: str | None = None  # what --fix would do, when it can
    done: str | None = None  # what --fix did


def merge_json(doc: Mapping[str, object], patch: Mapping[str, object]) -> dict[str, object]:
    """``doc`` with ``patch`` laid over it, objects merged key by key (RFC 7396 without deletes)."""
    out = dict(doc)
    for k, v in patch.items():
        old = out.get(k)
        out[k] = merge_json(old, v) if isinstance(v, Mapping) and isinstance(old, dict) else v
    return out


NO_ENTRY = "none"  # entry_fingerprint() of a file without an entry


class TargetChanged(Busy):
    """The tool wrote its file between acct's look and acct's write: look again, then retry."""

    code = "target_changed"


def entry_fingerprint(entry: Entry | None) -> str:
    """What a file holds, for compare-and-swap: the lineage fingerprint, ``-`` when blanked."""
    if entry is None:
        return NO_ENTRY
    return "-" if entry.blank else entry.lineage_fingerprint


@dataclass(frozen=True)
class Slot:
    """What sits under the target's entry key: an OAuth entry, another kind of login, or nothing.

    ``other`` describes a login acct does not write (an API key in OpenCode's or Pi's
    ``anthropic`` entry); ``fingerprint`` is what compare-and-swap expects, for all three cases.
    """

    entry: Entry | None
    other: str | None = None
    other_fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        return self.other_fingerprint or entry_fingerprint(self.entry)


def lock_owners(env: Mapping[str, str]) -> Path:
    """Where acct records the tool lock directories it holds (see ``fsio.dir_lock``)."""
    from acct.base.paths import Paths

    return Paths.from_env(env).locks_dir


@contextlib.contextmanager
def _kept_fresh(lock: Path, owners: Path | None = None, every: float = 2.0) -> Iterator[None]:
    """Touch a held proper-lockfile directory every few seconds, as proper-lockfile itself does,
    so the tool does not take it over as stale while acct waits for the token endpoint."""
    stop = threading.Event()

    def touch() -> None:
        while not stop.wait(every):
            touch_lock(lock, owners)

    worker = threading.Thread(target=touch, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()


_MAX_MS = 2**53  # beyond it, a number is no time a tool wrote (and float() loses it)


def epoch_seconds(value: object) -> int:
    """An expiry the tools write in milliseconds; a value that can only be seconds is read as such.

    Not a number: 0 (expired). ``ValueError`` for a number no tool writes as a time (beyond
    2**53 ms, not finite): the caller reports the entry as unreadable."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if not -_MAX_MS <= value <= _MAX_MS:  # also NaN and infinities
        raise ValueError("is not a time")
    v = max(0.0, float(value))
    return int(v // 1000) if v >= MS_THRESHOLD else int(v)


def want_epoch(obj: Mapping[str, object], key: str, path: Path, entry_key: str) -> int:
    """``epoch_seconds`` of ``obj[key]``; a number that is no time makes the entry unreadable."""
    try:
        return epoch_seconds(obj.get(key))
    except ValueError:
        raise corrupt_entry(path, entry_key, f"has an {key!r} that is no time") from None


def epoch_ms(seconds: int) -> int:
    return int(seconds) * 1000


def home_of(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def env_dir(env: Mapping[str, str], var: str) -> Path | None:
    """An absolute directory named by ``var`` (``~`` expanded against the env's HOME), or None."""
    value = env.get(var, "").strip()
    if not value:
        return None
    if value == "~" or value.startswith("~/"):
        value = str(home_of(env)) + value[1:]
    return Path(value) if os.path.isabs(value) else None


def corrupt_entry(path: Path, key: str, problem: str) -> CorruptFile:
    return CorruptFile(
        f"{path}: the {key!r} entry {problem}; acct leaves the file untouched",
        hint=f"fix or move {path} aside, then try again",
    )


def want_str(
    obj: Mapping[str, object], key: str, path: Path, entry_key: str, *, optional: bool = False
) -> str:
    v = obj.get(key)
    if v is None and optional:
        return ""
    if not isinstance(v, str):
        raise corrupt_entry(path, entry_key, f"has no text {key!r}")
    return v


_NEEDS = {"anthropic": "a Claude subscription login", "chatgpt": "a ChatGPT login"}


def require_oauth(account: Account, target: str, provider: ProviderName = "anthropic") -> Tokens:
    """The tokens to hand a tool; API keys, logins of another provider and logins that need
    renewing are refused."""
    if account.provider != provider:
        raise UsageError(
            f"account {account.name!r} is an {account.provider} login; {target} needs "
            f"{_NEEDS[provider]}",
            hint="`acct list` shows each account's provider",
        )
    if not account.is_oauth or account.tokens is None:
        raise UsageError(
            f"account {account.name!r} is an API key; {target} needs a Claude subscription login",
            hint="set ANTHROPIC_API_KEY for the tool instead",
        )
    if account.needs_login or account.tokens.is_blank:
        raise NeedsLogin(
            f"account {account.name!r} needs a new login", hint=f"run `acct login {account.name}`"
        )
    return account.tokens


def dump_json(doc: Mapping[str, object]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


class JsonTarget:
    """A tool whose credentials live under one key of a JSON object file.

    Subclasses say where the file is, which lock the tool honours, and how an account becomes an
    entry. This class does the safe part once: read (``CorruptFile`` when the file does not parse),
    and read-modify-write under the tool's lock with compare-and-swap, keeping every other key.
    """

    name: str = ""
    provider: ProviderName = "anthropic"
    entry_key: str = ""
    commands: tuple[str, ...] = ()
    refresh_margin: float = 0.0
    patterns: Patterns = Patterns()
    extra_usage_billing: bool = False
    # Variables that override the credential file (acct exec removes them for the run), and
    # variables the tool uses only when its file has no Anthropic entry (doctor mentions them).
    overriding_env: tuple[str, ...] = ()
    fallback_env: tuple[str, ...] = ()

    def __init__(self, *, lock_timeout: float = 10.0) -> None:
        self.lock_timeout = lock_timeout  # how long to wait for the tool's own lock

    # -- to provide ---------------------------------------------------------------------------

    def path(self, env: Mapping[str, str]) -> Path:
        raise NotImplementedError

    def lock_dir(self, env: Mapping[str, str], path: Path) -> Path | None:
        """The tool's proper-lockfile directory guarding ``path``, or None (no lock convention)."""
        return None

    def parse_entry(self, obj: Mapping[str, object], path: Path) -> Entry | None:
        """The OAuth entry, or None when ``obj`` is a login of another kind (see ``describe_other``)."""
        raise NotImplementedError

    def describe_other(self, obj: Mapping[str, object]) -> str:
        """Name, for a person, the login of another kind that ``parse_entry`` turned down."""
        return f"a {self.entry_key!r} entry acct does not write"

    def render_entry(self, account: Account, tokens: Tokens, old: object) -> dict[str, object]:
        raise NotImplementedError

    def check_store(self, env: Mapping[str, str]) -> None:
        """Refuse (UsageError) when the tool keeps its login somewhere other than its file."""

    def before_write(self, env: Mapping[str, str], path: Path) -> None:
        """Refuse early (before the credential file changes) what ``after_write`` would refuse."""

    def after_write(self, env: Mapping[str, str], path: Path, account: Account) -> None:
        """Anything else the tool needs besides its credential file (Claude Code's identity).

        Not part of :meth:`write`: custody runs it once the file's new holder is recorded, as a
        best effort whose failure is reported, never a reason to forget a lineage written."""

    def resume_args(self, argv: Sequence[str], continuation_prompt: str) -> list[str]:
        raise NotImplementedError

    def run_session(self, env: Mapping[str, str], cwd: Path, since: float) -> str | None:
        """The id of the session a run that began at ``since`` in ``cwd`` recorded, for tools
        whose resume must name it (Codex); None: the tool's own resume finds it."""
        return None

    def resume_session_args(
        self, argv: Sequence[str], continuation_prompt: str, session: str | None
    ) -> list[str]:
        """:meth:`resume_args`, naming ``session`` (from :meth:`run_session`) when given."""
        return self.resume_args(argv, continuation_prompt)

    def tool_dir(self, env: Mapping[str, str]) -> Path:
        """The tool's own directory: absent means the tool is not set up on this machine."""
        return self.path(env).parent

    def doctor_checks(self, env: Mapping[str, str], fix: bool) -> list[Check]:
        """The tool's own settings that decide whether acct can work with it (``acct doctor``);
        with ``fix``, repair what can be repaired, under the settings file's lock."""
        return []

    # -- the usage proxy in front of the tool (see acct.services.targets.route) ---------------

    def route(self, env: Mapping[str, str], cwd: Path) -> ToolRoute:
        """Where the tool, started with ``env`` in ``cwd``, sends its Messages requests.

        OpenCode and Pi read theirs here. Claude Code's is read by the proxy package
        (``acct.services.proxy.claude_route``: its settings files' ``env`` blocks decide), which
        points it there by ``ANTHROPIC_BASE_URL`` itself."""
        return ToolRoute(ANTHROPIC_API)

    def proxy_env(self, base_url: str, env: Mapping[str, str]) -> dict[str, str]:
        """The variables that make the tool, started with ``env``, use ``base_url`` (the proxy,
        see :meth:`ToolRoute.via`) for this run, its other settings unchanged."""
        raise NotImplementedError

    def proxy_argv(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """The command line that goes with :meth:`proxy_env` (most tools: ``argv`` itself)."""
        return list(argv)

    # -- shared -------------------------------------------------------------------------------

    def _file(self, env: Mapping[str, str], path: Path | None) -> Path:
        return Path(path) if path is not None else self.path(env)

    def _entry_of(self, doc: Mapping[str, object] | None, path: Path) -> Entry | None:
        return self._slot_of(doc, path).entry

    def _slot_of(self, doc: Mapping[str, object] | None, path: Path) -> Slot:
        if not doc or self.entry_key not in doc:
            return Slot(None)
        obj = doc[self.entry_key]
        if not isinstance(obj, dict):
            raise corrupt_entry(path, self.entry_key, "is not an object")
        entry = self.parse_entry(obj, path)
        if entry is not None:
            return Slot(entry)
        raw = json.dumps(obj, sort_keys=True, ensure_ascii=False)
        return Slot(None, self.describe_other(obj), "other-" + fingerprint(raw))

    def read(self, env: Mapping[str, str], *, path: Path | None = None) -> Entry | None:
        return self.look(env, path=path).entry

    def look(self, env: Mapping[str, str], *, path: Path | None = None) -> Slot:
        """What the entry key holds now: :meth:`read`, plus a login of another kind."""
        p = self._file(env, path)
        try:
            doc = read_json_object(p, what=f"{self.name} credentials")
        except OSError as e:
            raise os_error("read", p, e) from None
        return self._slot_of(doc, p)

    @contextlib.contextmanager
    def _locked(self, env: Mapping[str, str], path: Path) -> Iterator[None]:
        lock = self.lock_dir(env, path)
        if lock is None:
            yield
            return
        with dir_lock(
            lock,
            timeout=self.lock_timeout,
            what=f"{self.name}'s credentials ({lock})",
            owner_dir=lock_owners(env),
        ):
            yield

    def has_lock(self, env: Mapping[str, str], path: Path | None = None) -> bool:
        """Whether the tool takes a lock around its own refresh that acct can take too."""
        return self.lock_dir(env, self._file(env, path)) is not None

    def can_renew(self, env: Mapping[str, str], path: Path | None = None) -> bool:
        """Whether acct can refresh the file's login in place (:meth:`renew`) without the tool
        spending the same refresh token at the same moment: where the tool takes a lock around
        its own refresh that acct can take too."""
        return self.has_lock(env, path)

    @property
    def relogin(self) -> str:
        """How the user logs in again inside the tool."""
        return f"run /login in {self.name}"

    def _check(self, current: Slot, expect: str | None, path: Path) -> None:
        if expect is not None and current.fingerprint != expect:
            raise TargetChanged(
                f"{self.name} changed {path} while acct was writing it",
                hint="try again; the tool may be refreshing its login",
            )

    def write(
        self,
        env: Mapping[str, str],
        account: Account,
        *,
        path: Path | None = None,
        expect: str | None = None,
    ) -> Entry:
        """Write ``account`` as the entry. ``expect`` (a :attr:`Slot.fingerprint`) makes the
        write conditional: if the file holds anything else by then, :class:`TargetChanged`.

        Only the credential file changes; the caller runs :meth:`after_write` once the write
        is recorded (its failure must not undo a write that happened).
        """
        tokens = require_oauth(account, self.name, self.provider)
        p = self._file(env, path)
        self.before_write(env, p)
        try:
            with self._locked(env, p):
                doc = read_json_object(p, what=f"{self.name} credentials") or {}
                self._check(self._slot_of(doc, p), expect, p)
                doc[self.entry_key] = self.render_entry(account, tokens, doc.get(self.entry_key))
                atomic_write(p, dump_json(doc))
        except OSError as e:
            raise os_error("write", p, e) from None
        entry = self._entry_of(doc, p)
        assert entry is not None
        return entry

    def remove(
        self, env: Mapping[str, str], *, path: Path | None = None, expect: str | None = None
    ) -> bool:
        """Take the entry out of the file, keeping every other key. False when there was none."""
        p = self._file(env, path)
        try:
            with self._locked(env, p):
                doc = read_json_object(p, what=f"{self.name} credentials")
                if not doc or self.entry_key not in doc:
                    return False
                self._check(self._slot_of(doc, p), expect, p)
                del doc[self.entry_key]
                atomic_write(p, dump_json(doc))
        except OSError as e:
            raise os_error("write", p, e) from None
        return True

    def edit_others(
        self,
        env: Mapping[str, str],
        change: Callable[[dict[str, object]], bool],
        *,
        path: Path | None = None,
    ) -> None:
        """Change the file's other keys (never the entry) under the tool's lock: ``change``
        edits the parsed document and says whether it changed anything; only then is the file
        written. A file that does not parse is left alone (:class:`CorruptFile`)."""
        p = self._file(env, path)
        try:
            with self._locked(env, p):
                doc = read_json_object(p, what=f"{self.name} credentials") or {}
                entry = doc.get(self.entry_key)
                if change(doc):
                    if doc.get(self.entry_key) != entry:
                        raise ValueError(f"edit_others changed {self.entry_key!r} in {p}")
                    atomic_write(p, dump_json(doc))
        except OSError as e:
            raise os_error("write", p, e) from None

    def renew(
        self,
        env: Mapping[str, str],
        refresh: Callable[[Entry], Tokens | None],
        *,
        path: Path | None = None,
    ) -> Entry | None:
        """Refresh the file's login in place, as the tool itself does it.

        Under the tool's lock: read the entry, let ``refresh`` spend its refresh token (it
        returns the rotated tokens, or None to leave the entry as it is), write the rotated pair
        back with everything else kept. The tool refreshes under the same lock and re-reads the
        file, so the lineage never has two holders. Returns the entry the file holds afterwards.
        Refused for a tool without a lock: it could spend the same refresh token meanwhile.
        """
        p = self._file(env, path)
        lock = self.lock_dir(env, p)
        if lock is None:
            raise UsageError(f"{self.name} has no lock acct could take to refresh {p} safely")
        try:
            with self._locked(env, p):
                doc = read_json_object(p, what=f"{self.name} credentials") or {}
                entry = self._entry_of(doc, p)
                if entry is None or entry.blank:
                    return entry
                with _kept_fresh(lock, lock_owners(env)):
                    tokens = refresh(entry)
                if tokens is None:
                    return entry
                stand_in = Account(
                    name=self.name, plan=entry.subscription_type, tier=entry.rate_limit_tier
                )
                doc[self.entry_key] = self.render_entry(stand_in, tokens, doc[self.entry_key])
                atomic_write(p, dump_json(doc))
        except OSError as e:
            raise os_error("write", p, e) from None
        return self._entry_of(doc, p)


class ProviderEntryTarget(JsonTarget):
    """OpenCode and Pi: ``{"anthropic": {"type": "oauth", "refresh", "access", "expires"}}``.

    An ``anthropic`` entry of another type (the user's API key, ``{"type": "api", "key": ...}``)
    reads as "no OAuth entry", and :meth:`look` names it: custody refuses to replace it unless
    told to. Only the four keys above are written: OpenCode drops entries that fail its schema
    on its next write.
    """

    entry_key = "anthropic"

    def parse_entry(self, obj: Mapping[str, object], path: Path) -> Entry | None:
        if obj.get("type") != "oauth":
            return None
        access = want_str(obj, "access", path, self.entry_key, optional=True)
        refresh = want_str(obj, "refresh", path, self.entry_key, optional=True)
        expires = want_epoch(obj, "expires", path, self.entry_key)
        tokens = Tokens(access=access, refresh=refresh or None, expires_at=expires)
        known = {"type", "access", "refresh", "expires"}
        return Entry(
            tokens=tokens,
            blank=tokens.is_blank,
            extra={k: v for k, v in obj.items() if k not in known},
        )

    def describe_other(self, obj: Mapping[str, object]) -> str:
        kind, key = obj.get("type"), obj.get("key")
        if kind in ("api", "api_key") or isinstance(key, str):
            shown = f" (fp {fingerprint(key)})" if isinstance(key, str) and key else ""
            return f"an Anthropic API key{shown}"
        named = f" of type {kind!r}" if isinstance(kind, str) else ""
        return f"an Anthropic login{named}"

    def render_entry(self, account: Account, tokens: Tokens, old: object) -> dict[str, object]:
        return {
            "type": "oauth",
            "refresh": tokens.refresh or "",
            "access": tokens.access,
            "expires": epoch_ms(tokens.expires_at),
        }

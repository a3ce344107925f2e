"""The Codex CLI: ``${CODEX_HOME:-~/.codex}/auth.json``, its ChatGPT login under ``tokens``.

The file (Codex 0.171.0, docs/codex.md)::

    {"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
     "tokens": {"id_token", "access_token", "refresh_token", "account_id"},
     "last_refresh": "<RFC 3339>"}

Codex writes it atomically (a ``.auth-XXXXXX`` temporary, 0600, renamed over the file) while
holding ``flock`` on ``auth.lock`` and then ``auth.json.lock`` next to it; acct takes the same
two locks in the same order for its writes. Codex sends the refresh request BEFORE it takes them,
so the locks alone do not keep Codex from spending the refresh token while acct holds them. A
lend therefore hands Codex a fresh access token and leaves the refreshing to Codex (it refreshes
only after a 401). Codex rewrites the whole file from its own schema, so keys it does not know
are dropped on its next refresh; acct keeps them on its own writes.

``acct import`` of a login whose access token has expired (Codex sat idle) renews it in place
(:meth:`Codex.renew`), as Codex would after its 401, and that is safe for two reasons together:
on a 401 Codex first re-reads the file under both locks and, finding other tokens of the same
account there, retries with them and sends no refresh (seen); acct holds both locks from its
read of the file to its write, so a Codex that gets its 401 meanwhile waits and then takes the
rotated pair. What the locks cannot cover is a Codex already past that re-read, its refresh on
the wire: so acct refreshes only while no Codex process runs on this ``CODEX_HOME``
(:func:`running_codex`, looked at with the locks held).

With ``cli_auth_credentials_store`` set to ``keyring``, ``auto`` or ``ephemeral`` Codex does not
read (or may not read) this file at all: acct refuses to write it then.

Only ChatGPT accounts are lent to it (``provider = "chatgpt"``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from acct.base.errors import Busy, CorruptFile, HeldByTarget, UsageError
from acct.base.fsio import FILE_MODE, atomic_write, ensure_dir, os_error, read_json_object
from acct.base.models import Account, ProviderName, Tokens, fingerprint
from acct.domain.chatgpt import PATTERNS, parse_id_claims
from acct.domain.codex_resume import codex_resume_args, talks_to_the_model
from acct.services.providers.chatgpt import ChatGPTEndpoints
from acct.services.targets.base import (
    Check,
    Entry,
    JsonTarget,
    Slot,
    TargetChanged,
    dump_json,
    env_dir,
    home_of,
    require_oauth,
    want_str,
)
from acct.services.targets.route import ToolRoute, loopback_bypass

ENTRY_KEY = "tokens"
LOCK_NAMES = ("auth.lock", "auth.json.lock")  # Codex's flock files, in the order it takes them
# The provider acct gives Codex for one run to send its turns through the usage proxy (measured
# on 0.171.0: a custom provider with requires_openai_auth sends the ChatGPT login of auth.json
# to <base_url>/responses over HTTP/SSE; docs/codex.md). Given with -c before the subcommand,
# so nothing in the user's config.toml changes and the user's own -c after it still wins.
PROXY_PROVIDER = "acct"
PROXY_URL_VAR = "ACCT_CODEX_BASE_URL"  # the proxy's base URL, from proxy_env to proxy_argv
FILE_STORES = ("file",)
OTHER_STORES = ("keyring", "auto", "ephemeral")
OWN_KEYS = frozenset({"id_token", "access_token", "refresh_token", "account_id"})


def codex_home(env: Mapping[str, str]) -> Path:
    return env_dir(env, "CODEX_HOME") or home_of(env) / ".codex"


def config_file(env: Mapping[str, str]) -> Path:
    return codex_home(env) / "config.toml"


def read_config(env: Mapping[str, str]) -> dict[str, object]:
    """Codex's ``config.toml`` ({} when absent); :class:`CorruptFile` when it does not parse."""
    path = config_file(env)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise os_error("read", path, e) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CorruptFile(
            f"Codex config {path} does not parse ({e}); acct leaves auth.json untouched",
            hint=f"fix {path}, then try again",
        ) from None


def credentials_store(env: Mapping[str, str]) -> str:
    """``cli_auth_credentials_store`` from ``config.toml`` (Codex's default: ``file``)."""
    doc = read_config(env)
    value = doc.get("cli_auth_credentials_store", "file")
    return value if isinstance(value, str) else "file"


def check_file_store(env: Mapping[str, str]) -> None:
    """Refuse when Codex keeps its login somewhere other than ``auth.json``."""
    store = credentials_store(env)
    if store in FILE_STORES:
        return
    raise UsageError(
        f"Codex is set to keep its login in the {store!r} store "
        f"(cli_auth_credentials_store in {config_file(env)}), so it would not read the login "
        "acct writes to auth.json",
        hint='set cli_auth_credentials_store = "file" in that file to let acct lend Codex a login',
    )


@contextlib.contextmanager
def flock(path: Path, *, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600 if missing; never deleted)."""
    ensure_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as e:
        raise os_error("open the lock", path, e) from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise os_error("lock", path, e) from None
                if time.monotonic() >= deadline:
                    raise Busy(
                        f"{what} is locked by another process (waited {timeout:g}s)",
                        hint="try again in a moment",
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def proxy_config(base_url: str, provider: str = PROXY_PROVIDER) -> list[str]:
    """The ``-c`` options that send Codex's turns to ``base_url`` + ``/responses`` with the
    ChatGPT login of its ``auth.json`` (docs/codex.md, "Pointing Codex at a local server")."""
    table = (
        f'{{name="{provider}",base_url="{base_url}",wire_api="responses",'
        "requires_openai_auth=true}"
    )
    return ["-c", f"model_provider={provider}", "-c", f"model_providers.{provider}={table}"]


SESSION_META_MAX = 4 * 1024 * 1024  # the first line carries the base instructions (tens of kB)


def _session_meta(path: Path) -> dict[str, object] | None:
    try:
        with path.open("rb") as f:
            line = f.readline(SESSION_META_MAX)
        doc = json.loads(line)
    except (OSError, ValueError):
        return None
    payload = doc.get("payload") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("type") != "session_meta":
        return None
    return payload if isinstance(payload, dict) else None


def newest_session(sessions: Path, cwd: Path, since: float) -> str | None:
    """The id of the newest rollout under ``sessions`` written since ``since`` whose session
    began in ``cwd``; only the day directories of ``since`` and now are looked at (local time
    and UTC: the file names follow Codex's local date)."""
    days = {
        datetime.fromtimestamp(t, tz).strftime("%Y/%m/%d")
        for t in (since, time.time())
        for tz in (None, UTC)
    }
    found: list[tuple[float, Path]] = []
    for day in days:
        with contextlib.suppress(OSError):
            for f in (sessions / day).glob("rollout-*.jsonl"):
                mtime = f.stat().st_mtime
                if mtime >= since - 1:
                    found.append((mtime, f))
    here = os.path.realpath(cwd)
    for _, f in sorted(found, reverse=True):
        meta = _session_meta(f)
        sid = meta.get("id") if meta else None
        where = meta.get("cwd") if meta else None
        if isinstance(sid, str) and isinstance(where, str) and os.path.realpath(where) == here:
            return sid
    return None


def last_refresh_now() -> str:
    """``last_refresh`` as Codex writes it (RFC 3339, UTC)."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


PROGRAM = "codex"  # the name the kernel gives Codex's own binary (the npm launcher starts it)


def _environ(pid: str) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None  # gone, or another user's: it cannot be using this user's file either
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def _home_of_process(pid: str, environ: dict[str, str]) -> str:
    """The real path of the ``CODEX_HOME`` a Codex process uses (a relative one is its cwd's)."""
    value = environ.get("CODEX_HOME", "").strip()
    if value and not os.path.isabs(value) and not value.startswith("~"):
        with contextlib.suppress(OSError):
            environ = {
                **environ,
                "CODEX_HOME": os.path.join(os.readlink(f"/proc/{pid}/cwd"), value),
            }
    return os.path.realpath(codex_home(environ))


def running_codex(home: Path) -> list[int]:
    """The ids of the Codex processes of this user whose ``CODEX_HOME`` is ``home`` (symlinks
    resolved); none where the system does not tell (no ``/proc``)."""
    wanted = os.path.realpath(home)
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    except OSError:
        return []
    found: list[int] = []
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if comm.strip() != PROGRAM:
            continue
        environ = _environ(pid)
        if environ is not None and _home_of_process(pid, environ) == wanted:
            found.append(int(pid))
    return sorted(found)


class Codex(JsonTarget):
    name = "codex"
    provider: ProviderName = "chatgpt"
    entry_key = ENTRY_KEY
    commands = ("codex",)
    refresh_margin = 0.0  # Codex 0.171.0 refreshes only after a 401, whatever the expiry says
    patterns = PATTERNS
    extra_usage_billing = False
    # Seen with `codex exec` 0.171.0: CODEX_API_KEY is sent instead of the file's login, and
    # CODEX_ACCESS_TOKEN replaces it; OPENAI_API_KEY is ignored while the file holds a login.
    overriding_env = ("CODEX_API_KEY", "CODEX_ACCESS_TOKEN")
    fallback_env = ("OPENAI_API_KEY",)

    def path(self, env: Mapping[str, str]) -> Path:
        return codex_home(env) / "auth.json"

    def tool_dir(self, env: Mapping[str, str]) -> Path:
        return codex_home(env)

    # -- reading ---------------------------------------------------------------------------------

    def parse_entry(self, obj: Mapping[str, object], path: Path) -> Entry | None:
        access = want_str(obj, "access_token", path, self.entry_key, optional=True)
        refresh = want_str(obj, "refresh_token", path, self.entry_key, optional=True)
        id_token = want_str(obj, "id_token", path, self.entry_key, optional=True)
        account_id = want_str(obj, "account_id", path, self.entry_key, optional=True)
        claims = parse_id_claims(access)
        extra: dict[str, object] = {"id_token": id_token} if id_token else {}
        if account_id:
            extra["account_id"] = account_id
        tokens = Tokens(
            access=access, refresh=refresh or None, expires_at=claims.expires_at or 0, extra=extra
        )
        plan = parse_id_claims(id_token).plan_type
        return Entry(
            tokens=tokens,
            blank=tokens.is_blank,
            subscription_type=plan,
            extra={k: v for k, v in obj.items() if k not in OWN_KEYS},
        )

    def _slot_of(self, doc: Mapping[str, object] | None, path: Path) -> Slot:
        if doc and self.entry_key not in doc:
            key = doc.get("OPENAI_API_KEY")
            if isinstance(key, str) and key:
                return Slot(
                    None, f"an OpenAI API key (fp {fingerprint(key)})", "other-" + fingerprint(key)
                )
        return super()._slot_of(doc, path)

    def describe_other(self, obj: Mapping[str, object]) -> str:
        return "a Codex login acct does not write"

    # -- writing ---------------------------------------------------------------------------------

    def render_entry(self, account: Account, tokens: Tokens, old: object) -> dict[str, object]:
        id_token = tokens.extra.get("id_token")
        account_id = (
            tokens.extra.get("account_id")
            or parse_id_claims(id_token if isinstance(id_token, str) else None).account_id
        )
        kept = {k: v for k, v in old.items() if k not in OWN_KEYS} if isinstance(old, dict) else {}
        return {
            **kept,
            "id_token": id_token if isinstance(id_token, str) else "",
            "access_token": tokens.access,
            "refresh_token": tokens.refresh or "",
            "account_id": account_id if isinstance(account_id, str) else None,
        }

    def check_store(self, env: Mapping[str, str]) -> None:
        check_file_store(env)

    def before_write(self, env: Mapping[str, str], path: Path) -> None:
        check_file_store(env)

    @contextlib.contextmanager
    def _locked(self, env: Mapping[str, str], path: Path) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for name in LOCK_NAMES:
                lock = path.parent / name
                stack.enter_context(
                    flock(lock, timeout=self.lock_timeout, what=f"Codex's credentials ({lock})")
                )
            yield

    def write(
        self,
        env: Mapping[str, str],
        account: Account,
        *,
        path: Path | None = None,
        expect: str | None = None,
    ) -> Entry:
        """As :meth:`JsonTarget.write`, plus the file's own ``auth_mode`` and ``last_refresh``
        (and no API key beside the login: Codex would prefer it)."""
        tokens = require_oauth(account, self.name, self.provider)
        if not isinstance(tokens.extra.get("id_token"), str):
            raise UsageError(
                f"account {account.name!r} has no ChatGPT id_token; Codex needs a ChatGPT login",
                hint="log in with `acct login --provider chatgpt`",
            )
        p = self._file(env, path)
        self.before_write(env, p)
        try:
            with self._locked(env, p):
                doc = read_json_object(p, what=f"{self.name} credentials") or {}
                self._check(self._slot_of(doc, p), expect, p)
                doc["auth_mode"] = "chatgpt"
                doc["OPENAI_API_KEY"] = None
                doc[self.entry_key] = self.render_entry(account, tokens, doc.get(self.entry_key))
                doc["last_refresh"] = last_refresh_now()
                atomic_write(p, dump_json(doc))
        except OSError as e:
            raise os_error("write", p, e) from None
        entry = self._entry_of(doc, p)
        assert entry is not None
        return entry

    # -- renewing an expired login in place (acct import) ------------------------------------

    def can_renew(self, env: Mapping[str, str], path: Path | None = None) -> bool:
        """Yes, under both locks and while no Codex runs on the file (see the module docstring);
        :meth:`has_lock` stays False: Codex takes no lock around its refresh request."""
        return True

    @property
    def relogin(self) -> str:
        return "run `codex login`"

    def _refresh_hazard(self, p: Path) -> str | None:
        """Why refreshing the file's login now could spend its refresh token twice, or None."""
        pids = running_codex(p.parent)
        if not pids:
            return None
        return (
            f"Codex is running on {p.parent} (pid {', '.join(map(str, pids))}): it refreshes "
            "its expired login itself, and could be sending that refresh now, outside its locks"
        )

    def renew(
        self,
        env: Mapping[str, str],
        refresh: Callable[[Entry], Tokens | None],
        *,
        path: Path | None = None,
    ) -> Entry | None:
        """Refresh the file's login in place as Codex does after a 401: under both of Codex's
        locks from the read to the write, the rotated tokens written back with a new
        ``last_refresh`` (atomic, 0600, other keys kept). ``refresh`` spends the refresh token
        (it returns the rotated tokens, or None to leave the entry as it is); it is called only
        while no Codex process runs on this file (:class:`HeldByTarget` otherwise, nothing
        spent). Returns the entry the file holds afterwards."""
        p = self._file(env, path)
        self.before_write(env, p)
        try:
            with self._locked(env, p):
                doc = read_json_object(p, what=f"{self.name} credentials") or {}
                entry = self._entry_of(doc, p)
                if entry is None or entry.blank:
                    return entry
                hazard = self._refresh_hazard(p)
                if hazard is not None:
                    raise HeldByTarget(
                        f"{hazard}; acct will not spend the same refresh token",
                        hint="let that Codex run a turn (it renews the login) or quit it, "
                        "then try again",
                    )
                tokens = refresh(entry)
                if tokens is None:
                    return entry
                stand_in = Account(name=self.name, plan=entry.subscription_type)
                doc[self.entry_key] = self.render_entry(stand_in, tokens, doc[self.entry_key])
                doc["last_refresh"] = last_refresh_now()
                atomic_write(p, dump_json(doc))
        except OSError as e:
            raise os_error("write", p, e) from None
        return self._entry_of(doc, p)

    # -- the usage proxy in front of Codex ----------------------------------------------------

    def route(self, env: Mapping[str, str], cwd: Path) -> ToolRoute:
        """The Responses API of a ChatGPT login: ``ACCT_CHATGPT_API_BASE`` + ``/codex``
        (``https://chatgpt.com/backend-api/codex``). A ``model_provider`` of the user's own in
        ``config.toml`` sends the turns elsewhere: the proxy stays out of that route."""
        api = ChatGPTEndpoints.from_env(env).api_base
        source = "ACCT_CHATGPT_API_BASE" if env.get("ACCT_CHATGPT_API_BASE") else None
        try:
            doc = read_config(env)
        except CorruptFile:
            return ToolRoute(api + "/codex", source, unreadable=config_file(env))
        provider = doc.get("model_provider")
        if isinstance(provider, str) and provider not in ("openai", PROXY_PROVIDER):
            beyond = f"{config_file(env)} sets model_provider = {provider!r}"
            return ToolRoute(api + "/codex", source, beyond=beyond)
        return ToolRoute(api + "/codex", source)

    def proxy_env(self, base_url: str, env: Mapping[str, str]) -> dict[str, str]:
        return {PROXY_URL_VAR: base_url, **loopback_bypass(env)}

    def proxy_argv(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """``codex -c model_provider=acct -c model_providers.acct={…} ARGS``: the provider that
        sends the turns to the proxy, before the subcommand (root options apply to ``exec`` and
        ``exec resume`` alike; seen). Left as it is: subcommands that run no turns (``login``,
        ``mcp``...), a command that is not Codex itself, and a run without the proxy's URL."""
        words = list(argv)
        base_url = env.get(PROXY_URL_VAR)
        if not words or os.path.basename(words[0]) not in self.commands or not base_url:
            return words
        if not talks_to_the_model(words):
            return words
        return [words[0], *proxy_config(base_url), *words[1:]]

    def resume_args(self, argv: Sequence[str], continuation_prompt: str) -> list[str]:
        """``codex exec … resume --last <prompt>`` / ``codex … resume --last <prompt>``."""
        return codex_resume_args(argv, continuation_prompt)

    def resume_session_args(
        self, argv: Sequence[str], continuation_prompt: str, session: str | None
    ) -> list[str]:
        """``codex exec … resume <ID> <prompt>``: Codex's sessions belong to the account they
        began on, so after a switch ``--last`` would not find the interrupted one."""
        return codex_resume_args(argv, continuation_prompt, session)

    def run_session(self, env: Mapping[str, str], cwd: Path, since: float) -> str | None:
        """The newest session Codex recorded in ``cwd`` since ``since``: the ``session_meta``
        line that opens its ``sessions/YYYY/MM/DD/rollout-*.jsonl`` (docs/codex.md)."""
        return newest_session(codex_home(env) / "sessions", cwd, since)

    def doctor_checks(self, env: Mapping[str, str], fix: bool) -> list[Check]:
        try:
            check_file_store(env)
        except (UsageError, CorruptFile) as e:
            return [
                Check(self.name, "credentials-store", False, e.message, path=str(config_file(env)))
            ]
        return [
            Check(
                self.name,
                "credentials-store",
                True,
                "Codex keeps its login in auth.json (cli_auth_credentials_store = file)",
                path=str(config_file(env)),
            )
        ]


__all__ = [
    "Codex",
    "TargetChanged",
    "check_file_store",
    "codex_home",
    "credentials_store",
    "proxy_config",
    "running_codex",
]

"""Claude Code: ``claudeAiOauth`` in ``.credentials.json``, identity in ``.claude.json``.

The credentials live in Claude Code's secure-storage directory: ``$CLAUDE_SECURESTORAGE_CONFIG_DIR``
when it is set (``~/.claude`` when it is set but empty), else ``$CLAUDE_CONFIG_DIR`` or
``~/.claude``. Claude Code refreshes under two proper-lockfile directories, taken in this order:
``<that dir>/.oauth_refresh.lock``, then the legacy ``<realpath of that dir>.lock`` (the only one
older versions take); acct takes both, in the same order, for its writes. Expiry is in
milliseconds and the scopes must include ``user:inference`` or the tool says "Not logged in".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from acct.base.endpoints import SCOPES
from acct.base.errors import AuthError
from acct.base.fsio import atomic_write, dir_lock, read_json_object, real_path
from acct.base.models import Account, Tokens
from acct.base.paths import Paths
from acct.domain.classify import Patterns
from acct.domain.resume import claude_code_resume_args
from acct.services.targets.base import (
    Entry,
    JsonTarget,
    corrupt_entry,
    dump_json,
    env_dir,
    epoch_ms,
    home_of,
    lock_owners,
    want_epoch,
    want_str,
)

ENTRY_KEY = "claudeAiOauth"
INFERENCE_SCOPE = "user:inference"

# The keys of ``claudeAiOauth`` acct writes; anything else belongs to the lineage in the file.
OWN_KEYS = frozenset(
    {"accessToken", "refreshToken", "expiresAt", "scopes", "subscriptionType", "rateLimitTier"}
)
LOCK_STALE = 10.0  # seconds: Claude Code's proper-lockfile ``stale`` for its refresh locks

PATTERNS = Patterns(
    quota=(
        # What Claude Code 2.1.197 prints when the unified limit rejects a request (its
        # rate-limit message builder): "You've hit your session limit · resets 9:20am (UTC)"
        # (2.1.332: "You've hit your 5-hour limit");
        # also limit, weekly limit, Opus limit, Sonnet limit, Fable 5 limit, usage limit,
        # usage credit limit, (org's) monthly spend limit, org's monthly usage limit. Not the
        # fast-mode cooldown ("You've hit your fast limit · resets in 5m"): the run goes on.
        r"You(?:'|’)ve hit your (?!fast limit)(?:[\w'’-]+ ){0,3}limit",
        # 2.1.332 also words it "You've reached your <label> limit", and a model that the plan
        # leaves to usage credits "<Model> requires usage credits." when none are left.
        r"You(?:'|’)ve reached your (?!fast limit)(?:[\w'’-]+ ){0,3}limit",
        r"^\W*(?:[\w.\-]+ ){0,2}[\w.\-]+ requires usage credits\.",
        # The plan's limit is reached and extra usage cannot take over for this account.
        r"You(?:'|’)re out of (?:usage credits|extra usage)",
        r"Your org is out of usage",
        r"Your seat type doesn(?:'|’)t include (?:usage|extra usage)",
        r"Your usage allocation has been disabled by your admin",
        r"Your group(?:'|’)s usage limit is set to \$0",
        r"This service is disabled for your org",
        r'"api_error_status"\s*:\s*429',
        # A rejection that extra usage did not take over (acct.domain.classify reads these events).
        (
            r'"rate_limit_event"(?!.*"isUsingOverage"\s*:\s*true)'
            r'(?!.*"overageStatus"\s*:\s*"allowed).*"status"\s*:\s*"rejected"'
        ),
        r"Claude AI usage limit reached\|\d+",
    ),
    throttle=(
        r"not your usage limit",
        r"Server is temporarily limiting requests",
    ),
    # A dead login, as 2.1.332 says it (it blanks the file too); older versions said
    # "Not logged in" and blanked the file, which harvest reads.
    login=(
        r"Failed to authenticate: OAuth session expired and could not be refreshed",
        r"Failed to authenticate: this login reached its time limit and cannot be renewed",
        r"OAuth token revoked · Please run /login",
        r"Login expired · Please run /login",
    ),
    auth=(
        r"Not logged in",
        r"Please run /login",
        r"Invalid bearer token",
        r"OAuth token has expired",
        r'"api_error_status"\s*:\s*401',
        r"API Error: 401",
    ),
)


def config_dir(env: Mapping[str, str]) -> Path:
    """``$CLAUDE_CONFIG_DIR`` or ``~/.claude``: where Claude Code keeps its settings."""
    return env_dir(env, "CLAUDE_CONFIG_DIR") or home_of(env) / ".claude"


def storage_dir(env: Mapping[str, str]) -> Path:
    """Where Claude Code keeps its credentials and its refresh lock.

    ``$CLAUDE_SECURESTORAGE_CONFIG_DIR`` whenever it is set, ``~/.claude`` when it is set but
    empty (not ``$CLAUDE_CONFIG_DIR``); otherwise the config dir.
    """
    if "CLAUDE_SECURESTORAGE_CONFIG_DIR" in env:
        return env_dir(env, "CLAUDE_SECURESTORAGE_CONFIG_DIR") or home_of(env) / ".claude"
    return config_dir(env)


def identity_file(env: Mapping[str, str]) -> Path:
    """``~/.claude.json``, or ``$CLAUDE_CONFIG_DIR/.claude.json`` when that is set."""
    relocated = env_dir(env, "CLAUDE_CONFIG_DIR")
    return relocated / ".claude.json" if relocated else home_of(env) / ".claude.json"


def oauth_account_fields(account: Account) -> dict[str, str | None]:
    """The keys of ``oauthAccount`` acct owns (None: remove, the value belonged to another account)."""
    return {
        "accountUuid": account.uuid,
        "emailAddress": account.email,
        "organizationUuid": account.org_uuid,
        "organizationName": account.org_name,
        "displayName": account.display_name,
    }


class ClaudeCode(JsonTarget):
    name = "claude-code"
    entry_key = ENTRY_KEY
    commands = ("claude",)
    refresh_margin = 300.0  # Claude Code refreshes about five minutes before expiry
    patterns = PATTERNS
    extra_usage_billing = False
    overriding_env = ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")

    def path(self, env: Mapping[str, str]) -> Path:
        return storage_dir(env) / ".credentials.json"

    def tool_dir(self, env: Mapping[str, str]) -> Path:
        return config_dir(env)

    def is_own_file(self, env: Mapping[str, str], path: Path) -> bool:
        return real_path(path) == real_path(self.path(env))

    def lock_base(self, env: Mapping[str, str], path: Path) -> Path:
        """The directory Claude Code locks for ``path``: its storage dir, or the file's own."""
        return storage_dir(env) if self.is_own_file(env, path) else path.parent

    def lock_dir(self, env: Mapping[str, str], path: Path) -> Path:
        return self.lock_base(env, path) / ".oauth_refresh.lock"

    def legacy_lock_dir(self, env: Mapping[str, str], path: Path) -> Path:
        """``<realpath of the lock base>.lock`` (``~/.claude.lock``); the path as it is when it
        cannot be resolved, as Claude Code does."""
        base = self.lock_base(env, path)
        with contextlib.suppress(OSError):
            base = Path(os.path.realpath(base, strict=True))
        return Path(f"{base}.lock")

    @contextlib.contextmanager
    def _locked(self, env: Mapping[str, str], path: Path) -> Iterator[None]:
        """Both of Claude Code's refresh locks, in its order: the new one, then the legacy one."""
        lock = self.lock_dir(env, path)
        what = f"{self.name}'s credentials"
        owners = lock_owners(env)
        with dir_lock(
            lock,
            stale=LOCK_STALE,
            timeout=self.lock_timeout,
            what=f"{what} ({lock})",
            owner_dir=owners,
        ):
            legacy = self.legacy_lock_dir(env, path)  # resolved once the directory exists
            with dir_lock(
                legacy,
                stale=LOCK_STALE,
                timeout=self.lock_timeout,
                what=f"{what} ({legacy})",
                owner_dir=owners,
            ):
                yield

    def parse_entry(self, obj: Mapping[str, object], path: Path) -> Entry | None:
        access = want_str(obj, "accessToken", path, ENTRY_KEY, optional=True)
        refresh = want_str(obj, "refreshToken", path, ENTRY_KEY, optional=True)
        scopes = obj.get("scopes") or []
        if not isinstance(scopes, list):
            raise corrupt_entry(path, ENTRY_KEY, "has 'scopes' that are not a list")
        tokens = Tokens(
            access=access,
            refresh=refresh or None,
            expires_at=want_epoch(obj, "expiresAt", path, ENTRY_KEY),
            scopes=tuple(str(s) for s in scopes),
        )
        sub, tier = obj.get("subscriptionType"), obj.get("rateLimitTier")
        return Entry(
            tokens=tokens,
            blank=tokens.is_blank,
            subscription_type=sub if isinstance(sub, str) else None,
            rate_limit_tier=tier if isinstance(tier, str) else None,
            extra={k: v for k, v in obj.items() if k not in OWN_KEYS},
        )

    def render_entry(self, account: Account, tokens: Tokens, old: object) -> dict[str, object]:
        scopes = list(tokens.scopes) or list(SCOPES)
        if INFERENCE_SCOPE not in scopes:
            raise AuthError(
                f"account {account.name!r} has a login without the {INFERENCE_SCOPE} scope; "
                "Claude Code cannot use it",
                hint=f"run `acct login {account.name}`",
            )
        # Keys acct does not own (Claude Code's ``clientId``...) describe the lineage in the file:
        # kept when acct rewrites that very lineage (the same link, or the file's own successor
        # tokens when it renews the entry in place), never handed to another one.
        renewing = tokens is not account.tokens
        entry: dict[str, object] = {}
        if isinstance(old, dict) and (renewing or same_link(old, tokens)):
            entry.update(old)
        entry.update(
            accessToken=tokens.access,
            refreshToken=tokens.refresh or "",
            expiresAt=epoch_ms(tokens.expires_at),
            scopes=scopes,
            subscriptionType=account.plan,
            rateLimitTier=account.tier,
        )
        return entry

    def after_write(self, env: Mapping[str, str], path: Path, account: Account) -> None:
        """Merge the identity into ``oauthAccount`` key by key; nothing else in the file changes.

        Only done for the tool's own file (not for ``--from`` style paths), and not for the file
        of an isolated ``acct exec`` session: ``.claude.json`` is shared by every session, and
        keeps naming the account of the default credentials file. It is read before anything is
        written, so an unparseable one is refused and left alone.
        """
        if not account.uuid or not self.is_own_file(env, path) or _session_file(env, path):
            return
        ident = identity_file(env)
        doc = read_json_object(ident, what="Claude Code settings") or {}
        current = doc.get("oauthAccount")
        block: dict[str, object] = dict(current) if isinstance(current, dict) else {}
        for key, value in oauth_account_fields(account).items():
            if value is None:
                block.pop(key, None)
            else:
                block[key] = value
        if block == current:
            return
        doc["oauthAccount"] = block
        atomic_write(ident, dump_json(doc))

    def before_write(self, env: Mapping[str, str], path: Path) -> None:
        if self.is_own_file(env, path):
            read_json_object(identity_file(env), what="Claude Code settings")

    def resume_args(self, argv: Sequence[str], continuation_prompt: str) -> list[str]:
        """``claude --continue ...``; the prompt becomes the continuation prompt (see
        :func:`acct.domain.resume.claude_code_resume_args`)."""
        return claude_code_resume_args(argv, continuation_prompt)


def _session_file(env: Mapping[str, str], path: Path) -> bool:
    """Whether ``path`` is the credentials file of an isolated ``acct exec`` session."""

    return real_path(path).parent.parent == real_path(Paths.from_env(env).sessions_dir)


def same_link(old: Mapping[str, object], tokens: Tokens) -> bool:
    """Whether the old ``claudeAiOauth`` holds the very link of the lineage being written."""
    if tokens.refresh:
        return old.get("refreshToken") == tokens.refresh
    return bool(tokens.access) and old.get("accessToken") == tokens.access

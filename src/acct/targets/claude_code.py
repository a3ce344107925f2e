"""Claude Code: ``claudeAiOauth`` in ``.credentials.json``, identity in ``.claude.json``.

The credentials file is ``$CLAUDE_SECURESTORAGE_CONFIG_DIR`` > ``$CLAUDE_CONFIG_DIR`` >
``~/.claude``, then ``.credentials.json``. Claude Code refreshes under the proper-lockfile
directory ``<config dir>/.oauth_refresh.lock``; acct takes the same lock for its writes. Expiry is
in milliseconds and the scopes must include ``user:inference`` or the tool says "Not logged in".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from acct.endpoints import SCOPES
from acct.errors import AuthError
from acct.fsio import atomic_write, read_json_object, real_path
from acct.models import Account, Tokens
from acct.targets.base import (
    Entry,
    JsonTarget,
    Patterns,
    corrupt_entry,
    dump_json,
    env_dir,
    epoch_ms,
    epoch_seconds,
    has_flag,
    home_of,
    positionals,
    want_str,
)

ENTRY_KEY = "claudeAiOauth"
INFERENCE_SCOPE = "user:inference"

# Options of `claude` that take one value, and those that take several (commander variadics).
_VALUE_OPTS = frozenset(
    {
        "--model",
        "--fallback-model",
        "--output-format",
        "--input-format",
        "--permission-mode",
        "--permission-prompt-tool",
        "--append-system-prompt",
        "--system-prompt",
        "--settings",
        "--session-id",
        "--max-turns",
        "--agents",
        "--agent",
        "--setting-sources",
        "--max-budget-usd",
        "--json-schema",
        "--debug-file",
        "--plugin-dir",
        "--remote",
        "--teleport",
    }
)
_VARIADIC_OPTS = frozenset(
    {
        "--allowedTools",
        "--allowed-tools",
        "--disallowedTools",
        "--disallowed-tools",
        "--add-dir",
        "--mcp-config",
        "--betas",
        "--tools",
    }
)
_RESUME_OPTS = ("--resume", "-r")
_CONTINUE_OPTS = ("--continue", "-c")
_SESSION_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

PATTERNS = Patterns(
    quota=(
        # "You've hit your session limit · resets 9:20am (UTC)"; also limit, weekly limit,
        # Opus limit, Sonnet limit, usage credit limit, usage limit.
        r"You(?:'|’)ve hit your (?:[A-Za-z]+ ){0,3}limit",
        r'"api_error_status"\s*:\s*429',
        r'"rate_limit_event".*"status"\s*:\s*"rejected"',
        r"Claude AI usage limit reached\|\d+",
    ),
    throttle=(
        r"not your usage limit",
        r"Server is temporarily limiting requests",
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
    """``$CLAUDE_CONFIG_DIR`` or ``~/.claude``: where Claude Code keeps its settings and locks."""
    return env_dir(env, "CLAUDE_CONFIG_DIR") or home_of(env) / ".claude"


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

    def path(self, env: Mapping[str, str]) -> Path:
        base = env_dir(env, "CLAUDE_SECURESTORAGE_CONFIG_DIR") or config_dir(env)
        return base / ".credentials.json"

    def is_own_file(self, env: Mapping[str, str], path: Path) -> bool:
        return real_path(path) == real_path(self.path(env))

    def lock_dir(self, env: Mapping[str, str], path: Path) -> Path | None:
        if self.is_own_file(env, path):
            return config_dir(env) / ".oauth_refresh.lock"
        return path.parent / ".oauth_refresh.lock"

    def parse_entry(self, obj: Mapping[str, object], path: Path) -> Entry | None:
        access = want_str(obj, "accessToken", path, ENTRY_KEY, optional=True)
        refresh = want_str(obj, "refreshToken", path, ENTRY_KEY, optional=True)
        scopes = obj.get("scopes") or []
        if not isinstance(scopes, list):
            raise corrupt_entry(path, ENTRY_KEY, "has 'scopes' that are not a list")
        tokens = Tokens(
            access=access,
            refresh=refresh or None,
            expires_at=epoch_seconds(obj.get("expiresAt")),
            scopes=tuple(str(s) for s in scopes),
        )
        sub, tier = obj.get("subscriptionType"), obj.get("rateLimitTier")
        known = {
            "accessToken",
            "refreshToken",
            "expiresAt",
            "scopes",
            "subscriptionType",
            "rateLimitTier",
        }
        return Entry(
            tokens=tokens,
            blank=tokens.is_blank,
            subscription_type=sub if isinstance(sub, str) else None,
            rate_limit_tier=tier if isinstance(tier, str) else None,
            extra={k: v for k, v in obj.items() if k not in known},
        )

    def render_entry(self, account: Account, tokens: Tokens, old: object) -> dict[str, object]:
        scopes = list(tokens.scopes) or list(SCOPES)
        if INFERENCE_SCOPE not in scopes:
            raise AuthError(
                f"account {account.name!r} has a login without the {INFERENCE_SCOPE} scope; "
                "Claude Code cannot use it",
                hint=f"run `acct login {account.name}`",
            )
        entry: dict[str, object] = dict(old) if isinstance(old, dict) else {}
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

        Only done for the tool's own file (not for ``--from`` style paths). ``.claude.json`` is
        read before anything is written, so an unparseable one is refused and left alone.
        """
        if not account.uuid or not self.is_own_file(env, path):
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
        """``claude --continue ...``; in print mode the prompt becomes the continuation prompt.

        ``--resume <session>`` already names the session to go back to and is kept; a bare
        ``--resume`` (the session picker) becomes ``--continue``.
        """
        cmd, args = list(argv[:1]), list(argv[1:])
        args = _bare_resume_to_continue(args)
        pos = positionals(args, _VALUE_OPTS | frozenset(_RESUME_OPTS), _VARIADIC_OPTS)
        if pos:
            args[pos[0]] = continuation_prompt
            for i in reversed(pos[1:]):
                del args[i]
        elif has_flag(args, "-p", "--print"):
            args.append(continuation_prompt)
        if not has_flag(args, *_CONTINUE_OPTS, *_RESUME_OPTS):
            args.insert(0, "--continue")
        return cmd + args


def _bare_resume_to_continue(args: list[str]) -> list[str]:
    """``--resume`` without a session id opens a picker: resume the latest session instead."""
    out = list(args)
    for i, a in enumerate(out):
        if a in _RESUME_OPTS:
            nxt = out[i + 1] if i + 1 < len(out) else ""
            if not _SESSION_ID.match(nxt):
                out[i] = "--continue"
    return out

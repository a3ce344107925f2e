"""Pi's ChatGPT slot: the ``openai-codex`` entry of Pi's ``auth.json`` (target ``pi-chatgpt``).

Pi keeps a ChatGPT login beside its Anthropic one in the same file (``{"openai-codex":
{"type": "oauth", "refresh", "access", "expires", "accountId"}}``) and refreshes either under
the same proper-lockfile directory. acct treats the two entries as separate slots: the
``pi`` target holds an Anthropic account, this one a ChatGPT account, at the same time. Pi's
entry has no id_token, so the stored account keeps the one from its login.

No command selects this target (``acct exec -- pi`` lends Pi's Anthropic slot); ``acct use
NAME -t pi-chatgpt`` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from acct.base.models import Account, ProviderName, Tokens
from acct.domain.chatgpt import PATTERNS, parse_id_claims
from acct.services.targets.base import (
    Check,
    Entry,
    epoch_ms,
    want_epoch,
    want_str,
)
from acct.services.targets.pi import Pi

ENTRY_KEY = "openai-codex"
_KNOWN = frozenset({"type", "access", "refresh", "expires", "accountId"})


class PiChatGPT(Pi):
    name = "pi-chatgpt"
    provider: ProviderName = "chatgpt"
    entry_key = ENTRY_KEY
    commands: tuple[str, ...] = ()
    patterns = PATTERNS
    extra_usage_billing = False  # billed as the ChatGPT plan's own use
    fallback_env: tuple[str, ...] = ()

    def parse_entry(self, obj: Mapping[str, object], path: Path) -> Entry | None:
        if obj.get("type") != "oauth":
            return None
        access = want_str(obj, "access", path, self.entry_key, optional=True)
        refresh = want_str(obj, "refresh", path, self.entry_key, optional=True)
        account_id = want_str(obj, "accountId", path, self.entry_key, optional=True)
        expires = want_epoch(obj, "expires", path, self.entry_key)
        extra = {"account_id": account_id} if account_id else {}
        tokens = Tokens(access=access, refresh=refresh or None, expires_at=expires, extra=extra)
        return Entry(
            tokens=tokens,
            blank=tokens.is_blank,
            subscription_type=parse_id_claims(access).plan_type,
            extra={k: v for k, v in obj.items() if k not in _KNOWN},
        )

    def describe_other(self, obj: Mapping[str, object]) -> str:
        return "a ChatGPT login acct does not write"

    def render_entry(self, account: Account, tokens: Tokens, old: object) -> dict[str, object]:
        account_id = tokens.extra.get("account_id") or account.org_uuid
        kept = {k: v for k, v in old.items() if k not in _KNOWN} if isinstance(old, dict) else {}
        return {
            **kept,
            "type": "oauth",
            "refresh": tokens.refresh or "",
            "access": tokens.access,
            "expires": epoch_ms(tokens.expires_at),
            "accountId": account_id if isinstance(account_id, str) else "",
        }

    def doctor_checks(self, env: Mapping[str, str], fix: bool) -> list[Check]:
        return []  # Pi's own settings are checked under the ``pi`` target

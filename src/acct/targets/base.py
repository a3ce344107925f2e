"""The small interface every target (a coding tool's credential file) implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from acct.models import Account, Tokens, fingerprint


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


@dataclass(frozen=True)
class Patterns:
    """Regular expressions (searched in the child's output tail) that classify how it ended."""

    quota: tuple[str, ...] = ()
    throttle: tuple[str, ...] = ()
    auth: tuple[str, ...] = ()


class Target(Protocol):
    name: str  # "claude-code" | "opencode" | "pi"
    commands: tuple[str, ...]  # basenames that select it: ("claude",)
    refresh_margin: float  # seconds before expiry at which the tool refreshes by itself
    patterns: Patterns
    extra_usage_billing: bool  # Anthropic bills this harness's OAuth traffic as extra usage

    def path(self, env: Mapping[str, str]) -> Path:
        """The credential file, honouring the tool's environment relocation."""

    def read(self, env: Mapping[str, str]) -> Entry | None:
        """The Anthropic OAuth entry, or None when there is none. CorruptFile when unparseable."""

    def write(self, env: Mapping[str, str], account: Account) -> Entry:
        """Write the account's tokens as the tool's entry: atomic, 0600, under the tool's lock,
        keeping every other key. Refuses (CorruptFile) a file it cannot parse."""

    def resume_args(self, argv: Sequence[str], continuation_prompt: str) -> list[str]:
        """The argv that resumes the interrupted work in the tool (argv[0] is the command)."""

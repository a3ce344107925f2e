"""The registry of targets: the coding tools whose credential files acct writes."""

from __future__ import annotations

import os

from acct.base.errors import UsageError
from acct.domain.classify import Patterns
from acct.services.targets.base import Entry, JsonTarget, Target, TargetChanged, entry_fingerprint
from acct.services.targets.claude_code import ClaudeCode
from acct.services.targets.codex import Codex
from acct.services.targets.opencode import OpenCode
from acct.services.targets.pi import Pi
from acct.services.targets.pi_chatgpt import PiChatGPT

TARGETS: dict[str, JsonTarget] = {
    t.name: t for t in (ClaudeCode(), OpenCode(), Pi(), Codex(), PiChatGPT())
}
TARGET_NAMES: tuple[str, ...] = tuple(TARGETS)

__all__ = [
    "EXTRA_USAGE_NOTE",
    "TARGETS",
    "TARGET_NAMES",
    "Entry",
    "JsonTarget",
    "Patterns",
    "Target",
    "TargetChanged",
    "entry_fingerprint",
    "get_target",
    "target_for_command",
    "targets_of",
]

EXTRA_USAGE_NOTE = (
    "Anthropic bills Claude subscription traffic from {tool} as extra usage, not plan quota"
)


def get_target(name: str) -> JsonTarget:
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageError(
            f"unknown target {name!r} (targets: {', '.join(TARGET_NAMES)})",
        ) from None


def targets_of(provider: str) -> tuple[str, ...]:
    """The targets that take logins of ``provider``."""
    return tuple(t.name for t in TARGETS.values() if t.provider == provider)


def target_for_command(argv0: str) -> str | None:
    """The target a command runs (``/usr/bin/claude`` → ``claude-code``), or None."""
    base = os.path.basename(argv0)
    return next((t.name for t in TARGETS.values() if base in t.commands), None)

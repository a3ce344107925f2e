"""User preferences: ``config.toml``. Every key is optional; a file that does not parse is an error."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acct.base.errors import ConfigError

POLICIES = ("headroom", "pace", "round-robin", "drain")
DEFAULT_CONTINUATION_PROMPT = "Continue the previous task from where it stopped."


@dataclass(frozen=True)
class TargetConfig:
    resume_args: tuple[str, ...] | None = None  # None: the target's own default
    continuation_prompt: str | None = None
    quota_patterns: tuple[str, ...] = ()
    throttle_patterns: tuple[str, ...] = ()
    auth_patterns: tuple[str, ...] = ()
    login_patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    default_target: str = "claude-code"
    policy: str = "headroom"
    usage_min_age: float = 180.0  # seconds before the same account's usage is polled again
    usage_timeout: float = 20.0  # seconds for one usage request
    refresh_margin: float = 1800.0  # an access token lent to a tool keeps at least this long
    cooloff: float = 900.0  # bench when a limit is reported but usage does not confirm it
    max_rotations: int = 8
    proxy: bool = True  # `acct exec` reads live usage through a loopback proxy where it can
    continuation_prompt: str = DEFAULT_CONTINUATION_PROMPT
    targets: dict[str, TargetConfig] = field(default_factory=dict)

    def target(self, name: str) -> TargetConfig:
        return self.targets.get(name, TargetConfig())


def _strs(v: Any, where: str, path: Path | str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"config {path}: {where} must be a list of strings")
    return tuple(v)


def _num(v: Any, where: str, path: Path | str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ConfigError(f"config {path}: {where} must be a non-negative number")
    return float(v)


def load_config(path: Path) -> Config:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from None
    try:
        doc = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path} is not valid TOML ({e})", hint=f"fix {path}") from None
    return config_from_dict(doc, path)


_KEYS = {
    "default_target",
    "policy",
    "continuation_prompt",
    "usage_min_age",
    "usage_timeout",
    "refresh_margin",
    "cooloff",
    "max_rotations",
    "proxy",
    "targets",
}
_TARGET_KEYS = {
    "resume_args",
    "continuation_prompt",
    "quota_patterns",
    "throttle_patterns",
    "auth_patterns",
    "login_patterns",
}


def config_from_dict(doc: dict[str, Any], path: Path | str = "config.toml") -> Config:
    base = Config()
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise ConfigError(
            f"config {path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})"
        )
    kw: dict[str, Any] = {}
    for key in ("default_target", "policy", "continuation_prompt"):
        if key in doc:
            if not isinstance(doc[key], str):
                raise ConfigError(f"config {path}: {key} must be a string")
            kw[key] = doc[key]
    if kw.get("policy", base.policy) not in POLICIES:
        raise ConfigError(f"config {path}: policy must be one of {', '.join(POLICIES)}")
    for key in ("usage_min_age", "usage_timeout", "refresh_margin", "cooloff"):
        if key in doc:
            kw[key] = _num(doc[key], key, path)
    if "proxy" in doc:
        if not isinstance(doc["proxy"], bool):
            raise ConfigError(f"config {path}: proxy must be true or false")
        kw["proxy"] = doc["proxy"]
    if "max_rotations" in doc:
        kw["max_rotations"] = int(_num(doc["max_rotations"], "max_rotations", path))
    targets: dict[str, TargetConfig] = {}
    raw_targets = doc.get("targets", {})
    if not isinstance(raw_targets, dict):
        raise ConfigError(f"config {path}: [targets] must be a table")
    for name, t in raw_targets.items():
        if not isinstance(t, dict):
            raise ConfigError(f"config {path}: [targets.{name}] must be a table")
        bad = sorted(set(t) - _TARGET_KEYS)
        if bad:
            raise ConfigError(f"config {path}: unknown key {bad[0]!r} in [targets.{name}]")
        tk: dict[str, Any] = {}
        if "resume_args" in t:
            tk["resume_args"] = _strs(t["resume_args"], f"targets.{name}.resume_args", path)
        if "continuation_prompt" in t:
            if not isinstance(t["continuation_prompt"], str):
                raise ConfigError(
                    f"config {path}: targets.{name}.continuation_prompt must be a string"
                )
            tk["continuation_prompt"] = t["continuation_prompt"]
        for kind in ("quota", "throttle", "auth", "login"):
            key = f"{kind}_patterns"
            if key in t:
                tk[key] = _strs(t[key], f"targets.{name}.{key}", path)
                for pattern in tk[key]:
                    try:
                        re.compile(pattern)
                    except re.error as e:
                        raise ConfigError(
                            f"config {path}: targets.{name}.{key}: {pattern!r} is not a valid regular expression ({e})"
                        ) from None
        targets[name] = TargetConfig(**tk)
    kw["targets"] = targets
    return Config(**kw)

"""User preferences: ``config.toml``. Every key is optional; a file that does not parse is an error."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acct.base.errors import AcctError, ConfigError
from acct.base.inputs import CONFIG_LIMIT, read_toml

POLICIES = ("headroom", "pace", "round-robin", "drain")
PRICE_KEYS = ("input", "output", "cache_write", "cache_read")
WEBHOOK_FORMATS = ("json", "ntfy", "slack", "discord")
# The targets acct knows (``acct.services.targets.TARGET_NAMES``; a test keeps them equal).
TARGETS = ("claude-code", "opencode", "pi")
MAX_SECONDS = 366 * 86400.0  # a year: more is a typo, and timers overflow on far larger values
MAX_ROTATIONS = 1000
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
class Price:
    """What a model's traffic costs at API prices: US dollars per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float


@dataclass(frozen=True)
class Notifier:
    """Where alerts go: ``desktop`` (notify-send, osascript) or a webhook taking a JSON POST."""

    kind: str  # desktop | webhook
    url: str | None = None
    format: str = "json"  # json | ntfy | slack | discord (webhooks)


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
    # After an in-flight switch, new requests go back to the session's first account once it
    # can run again (its window reset). Off: the session stays on the account it switched to.
    switch_back: bool = False
    continuation_prompt: str = DEFAULT_CONTINUATION_PROMPT
    targets: dict[str, TargetConfig] = field(default_factory=dict)
    # `acct capacity`: an account at or over this utilization (percent) is running low, and a
    # pool whose headroom in a window is under this many accounts' worth is yellow.
    capacity_low: float = 80.0
    capacity_min_headroom: float = 0.5
    metrics_textfile: str | None = None  # rewritten after every poll, rotation and session end
    pricing: dict[str, Price] = field(default_factory=dict)  # model prefix -> price (overrides)
    notify: tuple[Notifier, ...] = ()
    notify_utilization: tuple[float, ...] = (90.0,)  # alert when an account crosses these
    # The pool (a libpq connection string or URL, never with a password in it; ACCT_POOL wins)
    # and how long a machine may stay silent before it shows as silent.
    pool: str | None = None
    lease_timeout: float = 900.0

    def target(self, name: str) -> TargetConfig:
        return self.targets.get(name, TargetConfig())


def _strs(v: Any, where: str, path: Path | str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"config {path}: {where} must be a list of strings")
    return tuple(v)


def _num(v: Any, where: str, path: Path | str, *, positive: bool = False) -> float:
    """A number of seconds: finite, at most a year, non-negative (``positive``: above 0)."""
    low = "a positive" if positive else "a non-negative"
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(f"config {path}: {where} must be {low} number of seconds")
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"config {path}: {where} must be a finite number, not {v!r}")
    if v < 0 or (positive and v == 0):
        raise ConfigError(f"config {path}: {where} must be {low} number of seconds, not {v!r}")
    if v > MAX_SECONDS:
        raise ConfigError(f"config {path}: {where} is more than a year ({MAX_SECONDS:.0f} s)")
    return float(v)


def _count(v: Any, where: str, path: Path | str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_ROTATIONS:
        raise ConfigError(
            f"config {path}: {where} must be a non-negative number, a whole one up to {MAX_ROTATIONS}"
        )
    return v


def load_config(path: Path) -> Config:
    try:
        doc = read_toml(path, what="config", limit=CONFIG_LIMIT)
    except AcctError as e:
        raise ConfigError(e.message, hint=e.hint) from None
    return Config() if doc is None else config_from_dict(doc, path)


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
    "switch_back",
    "targets",
    "capacity_low",
    "capacity_min_headroom",
    "metrics_textfile",
    "pricing",
    "notify",
    "notify_utilization",
    "pool",
    "lease_timeout",
}
_TIMEOUTS = {"usage_timeout", "lease_timeout"}  # 0 would make every request time out at once
_TARGET_KEYS = {
    "resume_args",
    "continuation_prompt",
    "quota_patterns",
    "throttle_patterns",
    "auth_patterns",
    "login_patterns",
}


def config_from_dict(  # noqa: C901  (one check per key, in the order of the file format)
    doc: dict[str, Any], path: Path | str = "config.toml"
) -> Config:
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
    if kw.get("default_target", base.default_target) not in TARGETS:
        raise ConfigError(
            f"config {path}: default_target {kw['default_target']!r} is not a target "
            f"(targets: {', '.join(TARGETS)})"
        )
    for key in ("usage_min_age", "usage_timeout", "refresh_margin", "cooloff", "lease_timeout"):
        if key in doc:
            kw[key] = _num(doc[key], key, path, positive=key in _TIMEOUTS)
    for key in ("proxy", "switch_back"):
        if key in doc:
            if not isinstance(doc[key], bool):
                raise ConfigError(f"config {path}: {key} must be true or false")
            kw[key] = doc[key]
    if "max_rotations" in doc:
        kw["max_rotations"] = _count(doc["max_rotations"], "max_rotations", path)
    targets: dict[str, TargetConfig] = {}
    raw_targets = doc.get("targets", {})
    if not isinstance(raw_targets, dict):
        raise ConfigError(f"config {path}: [targets] must be a table")
    for name, t in raw_targets.items():
        if name not in TARGETS:
            raise ConfigError(
                f"config {path}: [targets.{name}] is not a target (targets: {', '.join(TARGETS)})"
            )
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
    if "pool" in doc:
        kw["pool"] = _pool(doc["pool"], path)
    kw.update(_observability(doc, path))
    return Config(**kw)


def _pool(v: Any, path: Path | str) -> str:
    """The pool's connection string: its password comes only from libpq's own sources."""
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"config {path}: pool must be a non-empty connection string")
    if re.search(r"(?i)(?:^|\s)password\s*=|://[^/@\s]*:[^/@\s]*@|[?&]password=", v):
        raise ConfigError(
            f"config {path}: pool carries a password; acct takes it only from libpq's own sources",
            hint="remove it and put it in ~/.pgpass (0600), a service file or PGPASSWORD",
        )
    return v.strip()


def _percent(v: Any, where: str, path: Path | str) -> float:
    n = _num(v, where, path)
    if not 0 < n <= 100:
        raise ConfigError(f"config {path}: {where} must be a percentage above 0, at most 100")
    return n


def _observability(doc: dict[str, Any], path: Path | str) -> dict[str, Any]:
    """The keys of capacity, metrics, pricing and alerts."""
    kw: dict[str, Any] = {}
    if "capacity_low" in doc:
        kw["capacity_low"] = _percent(doc["capacity_low"], "capacity_low", path)
    if "capacity_min_headroom" in doc:
        kw["capacity_min_headroom"] = _num(
            doc["capacity_min_headroom"], "capacity_min_headroom", path
        )
    if "metrics_textfile" in doc:
        value = doc["metrics_textfile"]
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"config {path}: metrics_textfile must be a file path")
        kw["metrics_textfile"] = str(Path(value).expanduser())
    if "pricing" in doc:
        kw["pricing"] = _pricing(doc["pricing"], path)
    if "notify" in doc:
        kw["notify"] = _notifiers(doc["notify"], path)
    if "notify_utilization" in doc:
        v = doc["notify_utilization"]
        if not isinstance(v, list):
            raise ConfigError(f"config {path}: notify_utilization must be a list of percentages")
        kw["notify_utilization"] = tuple(sorted(_percent(x, "notify_utilization", path) for x in v))
    return kw


def _pricing(raw: Any, path: Path | str) -> dict[str, Price]:
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: [pricing] must be a table of models")
    out: dict[str, Price] = {}
    for model, p in raw.items():
        where = f"pricing.{model}"
        if not isinstance(p, dict):
            raise ConfigError(f"config {path}: [{where}] must be a table")
        bad = sorted(set(p) - set(PRICE_KEYS))
        missing = [k for k in ("input", "output") if k not in p]
        if bad:
            raise ConfigError(f"config {path}: unknown key {bad[0]!r} in [{where}]")
        if missing:
            raise ConfigError(f"config {path}: [{where}] needs {missing[0]} (dollars per MTok)")
        n = {k: _num(p[k], f"{where}.{k}", path) for k in PRICE_KEYS if k in p}
        out[model] = Price(
            input=n["input"],
            output=n["output"],
            cache_write=n.get("cache_write", n["input"] * 1.25),
            cache_read=n.get("cache_read", n["input"] * 0.1),
        )
    return out


def _notifiers(raw: Any, path: Path | str) -> tuple[Notifier, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"config {path}: notify must be a list")
    out: list[Notifier] = []
    for item in raw:
        if item == "desktop":
            out.append(Notifier("desktop"))
            continue
        if not isinstance(item, dict):
            raise ConfigError(
                f'config {path}: each notify entry is "desktop" or {{url = "...", format = "..."}}'
            )
        bad = sorted(set(item) - {"url", "format"})
        if bad:
            raise ConfigError(f"config {path}: unknown key {bad[0]!r} in a notify entry")
        url = item.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"config {path}: a notify entry's url must be an http(s) URL")
        fmt = item.get("format", "json")
        if fmt not in WEBHOOK_FORMATS:
            raise ConfigError(
                f"config {path}: notify format must be one of {', '.join(WEBHOOK_FORMATS)}"
            )
        out.append(Notifier("webhook", url, fmt))
    return tuple(out)

"""How a tool's run ended, read from its exit status and the tail of its output.

Kinds: ``ok`` (exit 0, whatever the text says), ``quota`` (the plan's limit: bench the account
until its reset), ``throttle`` (the server asks to slow down; says nothing about the quota),
``auth`` (the tool's credentials were refused), ``other``.

Textual patterns come from the target (``Target.patterns``) plus the user's extras in
``config.toml``; the structured signals that any Claude Code version prints are read here: the
``--output-format json`` result (``api_error_status``), the ``stream-json`` ``rate_limit_event``
and the legacy ``Claude AI usage limit reached|<epoch>`` line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from acct.config import TargetConfig
from acct.targets.base import Patterns

Kind = Literal["ok", "quota", "throttle", "auth", "other"]

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
# "resets 9:20am (UTC)", "resets 9am (Europe/Berlin)", "resets Nov 26, 8:12am (UTC)"
_RESETS = re.compile(
    r"resets\s+(?:at\s+)?(?:(?P<mon>[A-Za-z]{3})[a-z]*\.?\s+(?P<day>\d{1,2}),?\s+(?:at\s+)?)?"
    r"(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)?\s*(?:\((?P<tz>[^)\s]+)\))?",
    re.IGNORECASE,
)
_EVENT = "rate limit reached"
_JUST_NOW = 120.0
_LEGACY = re.compile(r"Claude AI usage limit reached\|(\d{9,13})")
# Labels Claude Code puts before "limit", mapped to the window the announcement names.
_WINDOWS = (
    (re.compile(r"\bsession limit\b", re.IGNORECASE), "5-hour"),
    (re.compile(r"\bweekly limit\b", re.IGNORECASE), "7-day"),
    (re.compile(r"\bOpus limit\b", re.IGNORECASE), "Opus weekly"),
    (re.compile(r"\bSonnet limit\b", re.IGNORECASE), "Sonnet weekly"),
    (re.compile(r"\busage credit limit\b", re.IGNORECASE), "usage credit"),
)
_RATE_LIMIT_TYPES = {
    "five_hour": "5-hour",
    "seven_day": "7-day",
    "seven_day_opus": "Opus weekly",
    "seven_day_sonnet": "Sonnet weekly",
}


class HasPatterns(Protocol):
    patterns: Patterns


@dataclass(frozen=True)
class Ending:
    kind: Kind
    reset_at: float | None = None  # epoch seconds, when the tool said when the limit resets
    message: str = ""  # the line that decided it (shown to the user), or ""
    window: str | None = None  # "5-hour", "7-day", "Opus weekly"... when the tool named it


def merged_patterns(target: HasPatterns, extra: TargetConfig | None = None) -> Patterns:
    """The target's own patterns followed by the user's extras from ``config.toml``."""
    p = target.patterns
    if extra is None:
        return p
    return Patterns(
        quota=(*p.quota, *extra.quota_patterns),
        throttle=(*p.throttle, *extra.throttle_patterns),
        auth=(*p.auth, *extra.auth_patterns),
    )


def classify(
    target: HasPatterns,
    exit_status: int,
    tail_text: str,
    now: float,
    *,
    extra: TargetConfig | None = None,
) -> Ending:
    """Decide how the child ended. Exit 0 is ``ok`` whatever its output says."""
    if exit_status == 0:
        return Ending("ok")
    patterns = merged_patterns(target, extra)
    structured = _structured(tail_text, now)
    if structured is not None:
        return structured
    # A throttle message says "(not your usage limit)": look for it before any quota wording.
    for kind, regexes in (
        ("throttle", patterns.throttle),
        ("quota", patterns.quota),
        ("auth", patterns.auth),
    ):
        line = _search(regexes, tail_text)
        if line is not None:
            if kind == "quota":
                return Ending("quota", parse_reset(line, now), line, window_label(line))
            return Ending(kind, None, line)  # type: ignore[arg-type]
    return Ending("other")


def _search(regexes: Iterable[str], text: str) -> str | None:
    """The last line of ``text`` that one of ``regexes`` matches (the newest wins)."""
    compiled = [re.compile(r, re.IGNORECASE) for r in regexes]
    if not compiled:
        return None
    for line in reversed(text.splitlines()):
        if any(c.search(line) for c in compiled):
            return line.strip()
    return None


def window_label(text: str) -> str | None:
    for regex, label in _WINDOWS:
        if regex.search(text):
            return label
    return None


def _structured(text: str, now: float) -> Ending | None:
    """Signals with a fixed shape: stream-json events, the JSON result, the legacy line.

    The newest wins, except that a ``rate_limit_event`` (an exact epoch) lends its reset time
    and window to a JSON result that names the reset to the minute only.
    """
    found: list[Ending] = []
    for line in reversed(text.splitlines()):
        s = line.strip()
        m = _LEGACY.search(s)
        if m:
            found.append(Ending("quota", _epoch(m.group(1)), s, None))
            continue
        if not (s.startswith("{") and s.endswith("}")):
            continue
        try:
            doc = json.loads(s)
        except json.JSONDecodeError:
            continue
        ending = _from_json(doc, now) if isinstance(doc, dict) else None
        if ending is not None:
            found.append(ending)
    if not found:
        return None
    newest = found[0]
    exact = next((e for e in found if e.message == _EVENT and e.reset_at is not None), None)
    if newest.kind == "quota" and exact is not None and newest is not exact:
        return replace(newest, reset_at=exact.reset_at, window=newest.window or exact.window)
    return newest


def _from_json(doc: dict[str, object], now: float) -> Ending | None:
    info = doc.get("rate_limit_info")
    if doc.get("type") == "rate_limit_event" and isinstance(info, dict):
        if info.get("status") != "rejected":
            return None
        reset = info.get("resetsAt")
        kind = info.get("rateLimitType")
        window = _RATE_LIMIT_TYPES.get(kind) if isinstance(kind, str) else None
        reset_at = _epoch(reset) if isinstance(reset, int | float | str) else None
        return Ending("quota", reset_at, _EVENT, window)
    if doc.get("type") == "result" and doc.get("is_error") and doc.get("api_error_status") == 429:
        result = doc.get("result")
        text = result if isinstance(result, str) else ""
        if "not your usage limit" in text:
            return Ending("throttle", None, text.strip())
        return Ending("quota", parse_reset(text, now), text.strip(), window_label(text))
    return None


def _epoch(value: float | str) -> float | None:
    """Epoch seconds (milliseconds accepted: anything past the year 33658 is taken as ms)."""
    try:
        v = float(value)
    except ValueError:
        return None
    return v / 1000.0 if v > 1e12 else v


def parse_reset(text: str, now: float) -> float | None:
    """The reset time in a Claude Code limit message, as epoch seconds, or None.

    ``resets 9:20am (UTC)`` is the next 9:20 after ``now`` in that zone; ``resets Nov 26,
    8:12am (UTC)`` the next Nov 26 at 8:12. The zone is ``UTC`` or an IANA name; without one,
    UTC is assumed.
    """
    m = _RESETS.search(text)
    if not m:
        return None
    tz = _zone(m.group("tz"))
    if tz is None:
        return None
    hour = int(m.group("h"))
    minute = int(m.group("m") or 0)
    ampm = (m.group("ampm") or "").replace(".", "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    here = datetime.fromtimestamp(now, tz)
    if m.group("mon"):
        return _dated(m.group("mon"), int(m.group("day")), hour, minute, here)
    when = here.replace(hour=hour, minute=minute, second=0, microsecond=0)
    # The message names the minute only: a time in the last two minutes is this very reset.
    if when.timestamp() <= now - _JUST_NOW:
        when = (here + timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return when.timestamp()


def _dated(mon: str, day: int, hour: int, minute: int, here: datetime) -> float | None:
    month = _MONTHS.get(mon[:3].lower())
    if month is None:
        return None
    for year in (here.year, here.year + 1):
        try:
            when = here.replace(
                year=year, month=month, day=day, hour=hour, minute=minute, second=0, microsecond=0
            )
        except ValueError:
            return None
        # A date a little in the past is this year's (the clock may be behind); else next year.
        if when.timestamp() > here.timestamp() - 86400:
            return when.timestamp()
    return None


def _zone(name: str | None) -> ZoneInfo | None:
    if not name or name.upper() in ("UTC", "GMT", "Z"):
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None

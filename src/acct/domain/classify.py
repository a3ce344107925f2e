"""How a tool's run ended, read from its exit status and the tail of its output.

Kinds: ``ok`` (exit 0, whatever the text says), ``quota`` (the plan's limit: bench the account
until its reset), ``throttle`` (the server asks to slow down; says nothing about the quota),
``login`` (the tool says its login is dead: its refresh was refused, so the account needs a new
login), ``auth`` (the tool's credentials were refused, for a reason that may pass), ``other``.

Textual patterns come from the target (``Target.patterns``) plus the user's extras in
``config.toml``; the structured signals that any Claude Code version prints are read here: the
``--output-format json``/``stream-json`` result (``api_error_status``), the ``stream-json``
``rate_limit_event`` and the legacy ``Claude AI usage limit reached|<epoch>`` line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from acct.base.config import TargetConfig
from acct.base.timefmt import epoch_seconds

Kind = Literal["ok", "quota", "throttle", "login", "auth", "other"]


@dataclass(frozen=True)
class Patterns:
    """Regular expressions (searched in the child's output tail) that classify how it ended."""

    quota: tuple[str, ...] = ()
    throttle: tuple[str, ...] = ()
    auth: tuple[str, ...] = ()
    login: tuple[str, ...] = ()  # a dead login: the refresh token was refused
    # How the tool names the reset in its quota line, (line, now) -> epoch seconds or None;
    # None: Claude Code's words (``resets 9:20am (UTC)``, :func:`parse_reset`).
    reset: Callable[[str, float], float | None] | None = None


_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
# "resets 9:20am (UTC)", "resets 9am (Europe/Berlin)", "resets Nov 26, 8:12am (UTC)", and with
# the year when the reset falls in another year: "resets Jan 2, 2027, 10am (Europe/Berlin)".
_RESETS = re.compile(
    r"resets\s+(?:at\s+)?"
    r"(?:(?P<mon>[A-Za-z]{3})[a-z]*\.?\s+(?P<day>\d{1,2}),?\s+(?:(?P<year>\d{4}),?\s+)?(?:at\s+)?)?"
    r"(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)?\s*(?:\((?P<tz>[^)\s]+)\))?",
    re.IGNORECASE,
)
_EVENT = "rate limit reached"
_JUST_NOW = 120.0
_LEGACY = re.compile(r"Claude AI usage limit reached\|(\d{9,13})")
# Labels Claude Code puts before "limit" (and its other ways to say the account is out), mapped
# to the window the announcement names.
_WINDOWS = tuple(
    (re.compile(pattern, re.IGNORECASE), label)
    for pattern, label in (
        (r"\bsession limit\b|\b5-hour limit\b", "5-hour"),
        (r"\bweekly limit\b|\b7-day limit\b", "7-day"),
        (r"\bOpus limit\b", "Opus weekly"),
        (r"\bSonnet limit\b", "Sonnet weekly"),
        (r"\bFable 5 limit\b", "Fable 5 weekly"),
        (r"\busage credit limit\b|\bout of usage credits\b", "usage credit"),
        (r"\bout of extra usage\b", "extra usage"),
        (r"\bmonthly spend limit\b", "monthly spend"),
        (r"\bmonthly usage limit\b", "monthly usage"),
    )
)
# A limit's machine name (Claude Code's ``rateLimitType``, the unified headers'
# ``representative-claim``) -> the window acct names it by.
WINDOW_OF_CLAIM = {
    "five_hour": "5-hour",
    "seven_day": "7-day",
    "seven_day_opus": "Opus weekly",
    "seven_day_sonnet": "Sonnet weekly",
    "seven_day_overage_included": "Fable 5 weekly",
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
        login=(*p.login, *extra.login_patterns),
        reset=p.reset,
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
    structured = _structured(tail_text, now, patterns)
    if structured is not None:
        return structured
    return _by_text(patterns, tail_text, now) or Ending("other")


def _by_text(patterns: Patterns, text: str, now: float) -> Ending | None:
    # A throttle message says "(not your usage limit)": look for it before any quota wording;
    # a dead login before a refused credential (the tools print both).
    for kind, regexes in (
        ("throttle", patterns.throttle),
        ("quota", patterns.quota),
        ("login", patterns.login),
        ("auth", patterns.auth),
    ):
        line = _search(regexes, text)
        if line is not None:
            if kind == "quota":
                reset = (patterns.reset or parse_reset)(line, now)
                return Ending("quota", reset, line, window_label(line))
            return Ending(kind, None, line)  # type: ignore[arg-type]
    return None


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


def _structured(text: str, now: float, patterns: Patterns) -> Ending | None:
    """Signals with a fixed shape: the JSON ``result``, ``rate_limit_event``s, the legacy line.

    A ``result`` line ends every print-mode run, so when there is one it decides: a rejection
    earlier in the run says nothing about a run that then failed for another reason. A
    ``rate_limit_event`` (an exact epoch) lends its reset time and window to a result that
    names the reset to the minute only. Without a result, the newest signal wins.
    """
    result: Ending | None = None
    found: list[Ending] = []  # events and legacy lines, newest first
    for line in reversed(text.splitlines()):
        s = line.strip()
        m = _LEGACY.search(s)
        if m:
            found.append(Ending("quota", _epoch(m.group(1)), s, None))
            continue
        doc = _json_line(s)
        if doc is None:
            continue
        if doc.get("type") == "result":
            result = result or _from_result(doc, now, patterns)
            continue
        event = _from_event(doc)
        if event is not None:
            found.append(event)
    exact = next((e for e in found if e.message == _EVENT and e.reset_at is not None), None)
    if result is not None:
        if result.kind == "quota" and exact is not None:
            return replace(result, reset_at=exact.reset_at, window=result.window or exact.window)
        return result
    return found[0] if found else None


def _json_line(line: str) -> dict[str, object] | None:
    if not (line.startswith("{") and line.endswith("}")):
        return None
    try:
        doc = json.loads(line)
    except json.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _from_event(doc: dict[str, object]) -> Ending | None:
    """A ``rate_limit_event`` that rejected the request, or None.

    With overage in use (``isUsingOverage``, or an overage status that allows it) the request
    went through as paid extra usage: that is no limit.
    """
    info = doc.get("rate_limit_info")
    if doc.get("type") != "rate_limit_event" or not isinstance(info, dict):
        return None
    if info.get("status") != "rejected" or info.get("isUsingOverage") is True:
        return None
    if info.get("overageStatus") in ("allowed", "allowed_warning"):
        return None
    reset = info.get("resetsAt")
    kind = info.get("rateLimitType")
    window = WINDOW_OF_CLAIM.get(kind) if isinstance(kind, str) else None
    reset_at = _epoch(reset) if isinstance(reset, int | float | str) else None
    return Ending("quota", reset_at, _EVENT, window)


def _from_result(doc: dict[str, object], now: float, patterns: Patterns) -> Ending:
    """How the run ended, from its ``result``: a 429 is the limit (or a throttle), a 401 the
    login; any other error is read with the target's patterns, and otherwise it is ``other``."""
    result = doc.get("result")
    text = result.strip() if isinstance(result, str) else ""
    if not doc.get("is_error"):
        return Ending("other")
    status = doc.get("api_error_status")
    if status == 429:
        if "not your usage limit" in text:
            return Ending("throttle", None, text)
        return Ending("quota", parse_reset(text, now), text, window_label(text))
    if status == 401:
        return Ending("auth", None, text)
    return _by_text(patterns, text, now) or Ending("other", None, text)


def _epoch(value: float | str) -> float | None:
    """Epoch seconds (milliseconds accepted, see :func:`acct.base.timefmt.epoch_seconds`)."""
    try:
        v = float(value)
    except ValueError:
        return None
    return epoch_seconds(v)


def parse_reset(text: str, now: float, *, local: tzinfo | None = None) -> float | None:
    """The reset time in a Claude Code limit message, as epoch seconds, or None.

    ``resets 9:20am (UTC)`` is the next 9:20 after ``now`` in that zone; ``resets Nov 26,
    8:12am (UTC)`` the next Nov 26 at 8:12; ``resets Jan 2, 2027, 10am (UTC)`` that very day
    (Claude Code adds the year when the reset falls in another year). The zone is ``UTC`` or an
    IANA name; a time without one is in ``local`` (None: this machine's local time, the zone
    Claude Code prints in).
    """
    m = _RESETS.search(text)
    if not m:
        return None
    tz = _zone(m.group("tz")) if m.group("tz") else local
    if m.group("tz") and tz is None:
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
    here = _wall(now, tz)
    if m.group("mon"):
        year = int(m.group("year")) if m.group("year") else None
        return _dated(m.group("mon"), int(m.group("day")), year, (hour, minute), now, tz)
    when = here.replace(hour=hour, minute=minute, second=0, microsecond=0)
    # The message names the minute only: a time in the last two minutes is this very reset.
    if _instant(when, tz) <= now - _JUST_NOW:
        when += timedelta(days=1)
    return _instant(when, tz)


def _wall(now: float, tz: tzinfo | None) -> datetime:
    """The wall-clock time at ``now`` in ``tz`` (None: local time), without a zone."""
    return datetime.fromtimestamp(now, tz).replace(tzinfo=None)


def _instant(wall: datetime, tz: tzinfo | None) -> float:
    """Epoch seconds of a wall-clock time in ``tz`` (None: local time, through the C library)."""
    return wall.replace(tzinfo=tz).timestamp() if tz is not None else wall.timestamp()


def _dated(
    mon: str, day: int, year: int | None, at: tuple[int, int], now: float, tz: tzinfo | None
) -> float | None:
    month = _MONTHS.get(mon[:3].lower())
    if month is None:
        return None
    this = _wall(now, tz).year
    # Without a year: the first such date that is not over a day in the past (the clock may be
    # behind, and a reset just before midnight on Dec 31 is read a little after it).
    for y in (year,) if year is not None else (this - 1, this, this + 1):
        try:
            when = _instant(datetime(y, month, day, *at), tz)
        except ValueError:
            continue  # Feb 29 in a year without one
        if year is not None or when > now - 86400:
            return when
    return None


def _zone(name: str | None) -> ZoneInfo | None:
    if not name or name.upper() in ("UTC", "GMT", "Z"):
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None

"""ChatGPT (the Codex CLI's provider): what its documents and headers mean. No I/O here.

- the id_token's claims (identity and plan, for display and matching only);
- ``GET /backend-api/wham/usage`` and the ``x-codex-*`` headers of the Responses API, as acct's
  :class:`~acct.base.models.Usage`, each window labelled by its real length;
- the 429 ``usage_limit_reached`` body, and the words the Codex CLI prints on its endings
  (:data:`PATTERNS`, for :func:`acct.domain.classify.classify`).

Formats as the Codex CLI 0.171.0 reads them (docs/codex.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from typing import Any

from acct.base.models import Usage, Window
from acct.domain.classify import Patterns

AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"

FIVE_HOURS = 5 * 3600
SEVEN_DAYS = 7 * 86400


# --- the id_token ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IdClaims:
    """What an OpenAI id_token (or access token) says about its holder.

    Read WITHOUT checking the signature: good for showing who an account is and for noticing
    that a file holds another account than expected, never for a decision a forged token could
    abuse (nothing is granted on these claims; the servers check the tokens themselves).
    """

    account_id: str | None = None  # chatgpt_account_id: the workspace; ChatGPT-Account-Id
    user_id: str | None = None  # chatgpt_user_id (else user_id)
    email: str | None = None
    plan_type: str | None = None  # chatgpt_plan_type: free | plus | pro | team | business | ...
    expires_at: int | None = None  # exp, epoch seconds
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def _text(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def jwt_payload(token: str) -> dict[str, Any] | None:
    """The decoded payload of a JWT (no signature check), or None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    padded = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        doc = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        return None
    return doc if isinstance(doc, dict) else None


def parse_id_claims(token: str | None) -> IdClaims:
    """The claims of an id_token; empty claims for anything that does not decode."""
    doc = jwt_payload(token) if token else None
    if doc is None:
        return IdClaims()
    auth = doc.get(AUTH_CLAIM)
    profile = doc.get(PROFILE_CLAIM)
    exp = _number(doc.get("exp"))
    return IdClaims(
        account_id=_text(auth, "chatgpt_account_id"),
        user_id=_text(auth, "chatgpt_user_id") or _text(auth, "user_id"),
        email=_text(doc, "email") or _text(profile, "email"),
        plan_type=_text(auth, "chatgpt_plan_type"),
        expires_at=int(exp) if exp is not None else None,
        extra={k: v for k, v in doc.items() if k not in ("exp", "email", AUTH_CLAIM)},
    )


# --- usage windows --------------------------------------------------------------------------


def window_label(seconds: float | None) -> str:
    """A window named by its real length: 18000 -> ``5-hour``, 604800 -> ``7-day``."""
    if seconds is None or seconds <= 0:
        return "window"
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)}-day"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}-hour"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}-minute"
    return f"{int(seconds)}-second"


@dataclass(frozen=True)
class LabelledUsage:
    """ChatGPT usage as acct's :class:`Usage`, plus what the two windows really are.

    A window shorter than a day takes the 5-hour slot and a longer one the 7-day slot (the
    columns acct shows); without lengths the primary window is the short one. ``labels`` names
    each slot by the length the server gave it, so a column is never called "5-hour" for a
    window of another length.
    """

    usage: Usage
    labels: Mapping[str, str] = field(default_factory=dict)  # "five_hour"/"seven_day" -> label
    lengths: Mapping[str, int] = field(default_factory=dict)  # slot -> seconds, when known
    plan_type: str | None = None
    limit_reached: bool | None = None
    limit_reached_type: str | None = None
    credits: Mapping[str, Any] | None = None

    def as_usage(self) -> Usage:
        """The usage with each column's real length as its label (what acct caches)."""
        return replace(self.usage, labels=tuple(sorted(self.labels.items())))


def _wham_window(doc: Any, now: float) -> tuple[Window, int | None] | None:
    if not isinstance(doc, Mapping):
        return None
    used = _number(doc.get("used_percent"))
    length = _number(doc.get("limit_window_seconds"))
    reset = _number(doc.get("reset_at"))
    if reset is None:
        after = _number(doc.get("reset_after_seconds"))
        reset = now + after if after is not None else None
    return Window(used, reset), int(length) if length is not None and length > 0 else None


def _slot_by_length(length: int | None) -> str | None:
    """The column a window of this length belongs in: under a day is the short (5-hour)
    column, a day or more the weekly one; None when the length is unknown."""
    if length is None:
        return None
    return "five_hour" if length < 86400 else "seven_day"


def _placed(
    primary: tuple[Window, int | None] | None, secondary: tuple[Window, int | None] | None
) -> dict[str, tuple[Window, int | None]]:
    """The two windows in acct's two columns, by their real length where it is known (some
    plans have a weekly primary window and no short one); by position otherwise or when both
    lengths would land in the same column."""
    given = [w for w in (primary, secondary) if w is not None]
    by_length = [_slot_by_length(w[1]) for w in given]
    if all(by_length) and len(set(by_length)) == len(by_length):
        return {slot: w for slot, w in zip(by_length, given, strict=True) if slot}
    out: dict[str, tuple[Window, int | None]] = {}
    if primary is not None:
        out["five_hour"] = primary
    if secondary is not None:
        out["seven_day"] = secondary
    return out


def _labelled(
    primary: tuple[Window, int | None] | None,
    secondary: tuple[Window, int | None] | None,
    **rest: Any,
) -> LabelledUsage:
    slots = _placed(primary, secondary)
    windows = {slot: w[0] for slot, w in slots.items()}
    lengths = {slot: w[1] for slot, w in slots.items() if w[1] is not None}
    labels = {slot: window_label(lengths.get(slot)) for slot in windows}
    for slot, default in (("five_hour", FIVE_HOURS), ("seven_day", SEVEN_DAYS)):
        if slot in windows and slot not in lengths:
            labels[slot] = window_label(default)
    usage = Usage(five_hour=windows.get("five_hour"), seven_day=windows.get("seven_day"))
    return LabelledUsage(usage, labels, lengths, **rest)


def parse_wham_usage(doc: Any, now: float) -> LabelledUsage:
    """``GET /backend-api/wham/usage`` -> usage. ``ValueError`` for a document of another shape."""
    if not isinstance(doc, Mapping):
        raise ValueError("the usage answer is not an object")
    rate = doc.get("rate_limit")
    if rate is not None and not isinstance(rate, Mapping):
        raise ValueError("the usage answer's rate_limit is not an object")
    rate = rate or {}
    credits = doc.get("credits")
    reached = rate.get("limit_reached")
    return _labelled(
        _wham_window(rate.get("primary_window"), now),
        _wham_window(rate.get("secondary_window"), now),
        plan_type=_text(doc, "plan_type"),
        limit_reached=reached if isinstance(reached, bool) else None,
        limit_reached_type=_text(doc, "rate_limit_reached_type"),
        credits=credits if isinstance(credits, Mapping) else None,
    )


def _header_window(
    headers: Mapping[str, str], name: str, now: float | None
) -> tuple[Window, int | None] | None:
    def get(suffix: str) -> float | None:
        raw = headers.get(f"x-codex-{name}-{suffix}")
        try:
            value = float(raw) if raw is not None else None
        except ValueError:
            return None
        return value if value is not None and math.isfinite(value) else None

    used = get("used-percent")
    minutes = get("window-minutes")
    reset = get("reset-at")
    after = get("reset-after-seconds")
    if reset is None and after is not None and now is not None:
        reset = now + after
    if used is None and reset is None:
        return None
    length = int(minutes * 60) if minutes is not None and minutes > 0 else None
    return Window(used, reset), length


def parse_codex_headers(
    headers: Mapping[str, str], now: float | None = None
) -> LabelledUsage | None:
    """The live usage a Responses API answer carries (``x-codex-primary-used-percent``,
    ``-window-minutes``, ``-reset-at`` in epoch seconds or ``-reset-after-seconds`` from
    ``now``; the same for ``secondary``; ``x-codex-plan-type``), or None when it carries none.
    Header names are matched case-insensitively."""
    lower = {k.lower(): v for k, v in headers.items()}
    primary = _header_window(lower, "primary", now)
    secondary = _header_window(lower, "secondary", now)
    if primary is None and secondary is None:
        return None
    return _labelled(
        primary,
        secondary,
        plan_type=lower.get("x-codex-plan-type") or None,
        limit_reached_type=lower.get("x-codex-rate-limit-reached-type") or None,
    )


# --- the limit refusal and the Codex CLI's words ----------------------------------------------


@dataclass(frozen=True)
class LimitRefusal:
    """A Responses API 429 whose body says ``usage_limit_reached``: the plan's quota is out."""

    resets_at: float | None
    plan_type: str | None = None
    message: str | None = None


def parse_limit_body(doc: Any, now: float) -> LimitRefusal | None:
    """The limit refusal in a 429 body, or None when the 429 is of another kind (a throttle)."""
    err = doc.get("error") if isinstance(doc, Mapping) else None
    if not isinstance(err, Mapping) or err.get("type") != "usage_limit_reached":
        return None
    reset = _number(err.get("resets_at"))
    if reset is None:
        after = _number(err.get("resets_in_seconds"))
        reset = now + after if after is not None else None
    return LimitRefusal(reset, _text(err, "plan_type"), _text(err, "message"))


# How `codex exec` 0.171.0 ends (stderr lines start with "ERROR: "; --json ends with
# {"type":"turn.failed","error":{"message":...}}). It exits 1 on every failure, so only these
# words tell a quota from a throttle from a dead login. The apostrophe is U+2019 in 0.171.0.
# A refused refresh is a dead login (``login``): Codex leaves its file as it was (it does not
# blank it), so these words are the only sign that the lineage is spent.
QUOTA_WORDS = (
    r"You[’']ve hit your usage limit",
    r"You[’']ve reached your usage limit",
    r"Usage limit reached\.",
    r"Your workspace is out of credits",
    r"You[’']re out of credits",
    r"You[’']ve reached your workspace credit limit",
    r"You hit your spend cap",
)
LOGIN_WORDS = (r"refresh token (?:was already used|was revoked|has expired)",)
AUTH_WORDS = (
    r"Your access token could not be refreshed",
    r"Please log out and sign in again",
    # its file holds another account when a 401 makes it re-read it (the run ends)
    r"signed in to another account",
    r"unexpected status 401 Unauthorized",
)


def _local_reset(text: str, now: float) -> float | None:
    """The reset in Codex's words, read in this machine's local time (the zone the child ran
    in: acct passes TZ on unchanged)."""
    return codex_reset_at(text, now, None)


# "… or try again at 9:49 AM." / "… Try again at Dec 5th, 2026 8:02 AM." (the Codex process's
# local time zone; a date only when the reset is not within the day).
_TRY_AGAIN = re.compile(
    r"try again at\s+(?:(?P<mon>[A-Z][a-z]{2})[a-z]*\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+"
    r"(?P<year>\d{4}),?\s+)?(?P<h>\d{1,2}):(?P<m>\d{2})\s*(?P<ampm>[AaPp][Mm])",
    re.IGNORECASE,
)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_LATE = 120.0  # a time of day this far in the past is still today's (the message is fresh)


def codex_reset_at(text: str, now: float, tz: tzinfo | None) -> float | None:
    """The reset time in the Codex CLI's limit message (epoch seconds), read in ``tz`` (the
    zone Codex ran in; None: local time), or None when the text names none."""
    m = _TRY_AGAIN.search(text)
    if m is None:
        return None
    hour = int(m["h"]) % 12 + (12 if m["ampm"].lower() == "pm" else 0)
    minute = int(m["m"])
    if hour > 23 or minute > 59:
        return None
    here = datetime.fromtimestamp(now, tz)
    try:
        if m["mon"]:
            month = _MONTHS.index(m["mon"][:3].lower()) + 1
            at = datetime(int(m["year"]), month, int(m["day"]), hour, minute, tzinfo=tz)
            return at.timestamp()
        at = here.replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError:
        return None
    if at.timestamp() < now - _LATE:
        at += timedelta(days=1)
    return at.timestamp()


PATTERNS = Patterns(
    quota=QUOTA_WORDS,
    throttle=(r"exceeded retry limit, last status: 429",),
    login=LOGIN_WORDS,
    auth=AUTH_WORDS,
    reset=_local_reset,
)

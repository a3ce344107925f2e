"""What an answer says about the account's quota: Anthropic's ``anthropic-ratelimit-unified-*``
headers, or the ChatGPT Responses API's ``x-codex-*`` headers and its 429 body.

Each provider has a :data:`Reader` (:data:`READERS`): the proxy hands it the answer's headers,
status and, for the statuses it names in :data:`PEEK`, the (small) body, and gets an
:class:`Observation` in acct's one shape."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from acct.base.models import Window, fingerprint
from acct.base.timefmt import epoch_seconds
from acct.domain.chatgpt import parse_codex_headers, parse_limit_body
from acct.domain.classify import WINDOW_OF_CLAIM

_UNIFIED = "anthropic-ratelimit-unified-"


@dataclass(frozen=True)
class QuotaSignal:
    """The server refused a request because the plan's window is spent."""

    window: str | None  # "5-hour", "7-day", "Opus weekly"...; None for a claim acct does not know
    reset_at: float | None  # epoch seconds
    claim: str | None


@dataclass(frozen=True)
class Observation:
    """The ``anthropic-ratelimit-unified-*`` headers of one answer. Utilization in percent."""

    at: float
    http_status: int
    status: str | None  # allowed | allowed_warning | rejected
    reset_at: float | None
    five_hour: float | None
    seven_day: float | None
    five_hour_reset: float | None
    seven_day_reset: float | None
    claim: str | None
    overage_status: str | None
    overage_in_use: bool
    credential: str  # fingerprint of the credential the request carried ("-" for none)

    @property
    def quota(self) -> QuotaSignal | None:
        """A refusal for quota; a plan paying for extra usage (overage in use) is not refused."""
        if self.status != "rejected" or self.overage_in_use:
            return None
        return QuotaSignal(WINDOW_OF_CLAIM.get(self.claim or ""), self.reset_at, self.claim)

    def windows(self) -> tuple[Window | None, Window | None]:
        """The 5-hour and 7-day windows; a window's reset defaults to the unified one it claims."""

        def window(pct: float | None, reset: float | None, claim: str) -> Window | None:
            if pct is None:
                return None
            if reset is None and self.claim == claim:
                reset = self.reset_at
            return Window(pct, reset)

        return (
            window(self.five_hour, self.five_hour_reset, "five_hour"),
            window(self.seven_day, self.seven_day_reset, "seven_day"),
        )


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        n = float(text.strip())
    except ValueError:
        return None
    return n if math.isfinite(n) else None


def _epoch(text: str | None) -> float | None:
    n = _number(text)
    if n is None or n <= 0:
        return None
    return epoch_seconds(n)


def _percent(text: str | None) -> float | None:
    n = _number(text)
    return None if n is None or n < 0 else round(n * 100.0, 4)


def credential_of(headers: Mapping[str, str]) -> str:
    """The fingerprint of the credential a request carries (bearer token or API key)."""
    h = {k.lower(): v for k, v in headers.items()}
    auth = h.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return fingerprint(auth[7:].strip())
    return fingerprint(h.get("x-api-key"))


def parse_headers(
    headers: Mapping[str, str], *, http_status: int, credential: str, now: float
) -> Observation | None:
    """An observation from an answer's headers; None when it has no unified headers (a plain
    throttle, an API-key answer, a non-Messages path)."""
    h = {k.lower(): v for k, v in headers.items() if k.lower().startswith(_UNIFIED)}
    if not h:
        return None

    def get(name: str) -> str | None:
        value = h.get(_UNIFIED + name)
        return value.strip() if value is not None and value.strip() else None

    return Observation(
        at=now,
        http_status=http_status,
        status=(get("status") or "").lower() or None,
        reset_at=_epoch(get("reset")),
        five_hour=_percent(get("5h-utilization")),
        seven_day=_percent(get("7d-utilization")),
        five_hour_reset=_epoch(get("5h-reset")),
        seven_day_reset=_epoch(get("7d-reset")),
        claim=get("representative-claim"),
        overage_status=get("overage-status"),
        overage_in_use=(get("overage-in-use") or "").lower() == "true",
        credential=credential,
    )


# --- ChatGPT (the Codex CLI's Responses API) ------------------------------------------------

# A reader: (headers, HTTP status, body or None, credential fingerprint, now) -> Observation.
Reader = Callable[[Mapping[str, str], int, bytes | None, str, float], "Observation | None"]
# A refusal body is read only this large (the limit body is a few hundred bytes).
PEEK_MAX = 256 * 1024


def decoded(body: bytes, encoding: str | None) -> bytes | None:
    """An answer body as its ``content-encoding`` made it (gzip/deflate undone), or None when
    it is in an encoding acct does not undo."""
    enc = (encoding or "identity").strip().lower()
    try:
        if enc in ("", "identity"):
            return body
        if enc in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if enc == "deflate":
            return zlib.decompress(body)
    except zlib.error:
        return None
    return None


def _slot_full(usage_windows: dict[str, Window | None]) -> str | None:
    full = [s for s, w in usage_windows.items() if w is not None and (w.utilization or 0) >= 100]
    return full[-1] if full else None


def read_codex(
    headers: Mapping[str, str], http_status: int, body: bytes | None, credential: str, now: float
) -> Observation | None:
    """An observation from a Responses API answer: live usage from ``x-codex-primary-*`` /
    ``x-codex-secondary-*`` (windows placed in the 5-hour and 7-day columns by their length)
    and, on a 429 whose body says ``usage_limit_reached``, a refusal for quota with the reset
    the body names. A 429 of another kind (a throttle) says nothing about the quota."""
    lower = {k.lower(): v for k, v in headers.items()}
    live = parse_codex_headers(lower, now)
    refusal = None
    if http_status == 429 and body is not None:
        text = decoded(body, lower.get("content-encoding"))
        try:
            doc = json.loads(text) if text is not None else None
        except ValueError:
            doc = None
        refusal = parse_limit_body(doc, now)
    if live is None and refusal is None:
        return None
    five = live.usage.five_hour if live is not None else None
    seven = live.usage.seven_day if live is not None else None
    slot = _slot_full({"five_hour": five, "seven_day": seven}) or (
        live.limit_reached_type if live is not None else None
    )
    status = "rejected" if refusal is not None else ("allowed" if http_status < 400 else None)
    reset = refusal.resets_at if refusal is not None else None
    if reset is None and slot in ("five_hour", "seven_day"):
        w = five if slot == "five_hour" else seven
        reset = w.resets_at if w is not None else None
    return Observation(
        at=now,
        http_status=http_status,
        status=status,
        reset_at=reset,
        five_hour=five.utilization if five is not None else None,
        seven_day=seven.utilization if seven is not None else None,
        five_hour_reset=five.resets_at if five is not None else None,
        seven_day_reset=seven.resets_at if seven is not None else None,
        claim=slot if refusal is not None else None,
        overage_status=None,
        overage_in_use=False,
        credential=credential,
    )


def read_anthropic(
    headers: Mapping[str, str], http_status: int, body: bytes | None, credential: str, now: float
) -> Observation | None:
    return parse_headers(headers, http_status=http_status, credential=credential, now=now)


READERS: dict[str, Reader] = {"anthropic": read_anthropic, "chatgpt": read_codex}
# The statuses whose body a provider's reader needs (read before the answer is relayed).
PEEK: dict[str, frozenset[int]] = {"anthropic": frozenset(), "chatgpt": frozenset({429})}

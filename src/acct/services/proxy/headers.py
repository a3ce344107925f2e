"""What an answer's ``anthropic-ratelimit-unified-*`` headers say about the account's quota."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from acct.base.models import Window, fingerprint
from acct.base.timefmt import epoch_seconds
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

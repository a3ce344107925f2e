"""Reading an HTTP answer from one of the services acct talks to (token, profile and usage
endpoints of either provider): the parts every caller reads the same way."""

from __future__ import annotations

import math
import time
from typing import Any

from acct.base.errors import AcctError, NetworkError, ProtocolError, RateLimited


def retry_after(value: str | None) -> float | None:
    """``retry-after`` in seconds (a number or an HTTP date); ``0`` is common and means nothing."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime  # an HTTP date: rare, and email is slow

        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def transient(response: Any, what: str) -> AcctError | None:
    """5xx and 429 answers: worth retrying later, nothing is wrong with the account."""
    if response.status_code == 429:
        return RateLimited(
            f"{what} is rate-limited (429)",
            retry_after=retry_after(response.headers.get("retry-after")),
            hint="try again later",
        )
    if response.status_code >= 500:
        return NetworkError(f"{what} answered {response.status_code}", hint="try again later")
    return None


def json_of(response: Any, what: str) -> Any:
    """The answer's JSON document; :class:`ProtocolError` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(
            f"{what} answered {response.status_code} with something that is not JSON"
        ) from None

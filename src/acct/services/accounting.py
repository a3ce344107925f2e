"""Token accounting of what the usage proxy relays: each answer's ``usage`` into the state database.

The proxy wraps the body it relays with :func:`metered` (bytes pass through unchanged, as they
arrive) and hands what the meter read to :func:`record_answer_usage`, on a thread with its own
state connection. Nothing here raises into the stream, and nothing secret is read or stored:
account ids, the tool's name, the session id, the model and counts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from acct.domain.answers import AnswerMeter, AnswerUsage

if TYPE_CHECKING:
    from acct.services.context import Ctx
    from acct.services.state import State

__all__ = ["AnswerMeter", "AnswerUsage", "meter_for", "metered", "record_answer_usage"]


def meter_for(headers: Any) -> AnswerMeter:
    """A meter for an answer with these headers (a mapping with ``get``, e.g. httpx's)."""
    return AnswerMeter(headers.get("content-type"), headers.get("content-encoding"))


def metered(response: Any, done: Callable[[AnswerUsage | None], None]) -> Iterator[bytes]:
    """``response.iter_raw()`` (an httpx response) passed through a meter; once the body has
    ended, ``done`` gets the answer's usage (None when it said none). A relay cut short (the
    tool went away, the upstream broke off) reports what was read when the iterator is closed
    or dropped: the input tokens of a started answer were spent all the same. ``done`` runs on
    the relaying thread: keep it quick (queue the result). A failing ``done`` is swallowed."""
    meter = meter_for(response.headers)
    try:
        for data in response.iter_raw():
            meter.feed(data)
            yield data
    finally:
        with contextlib.suppress(Exception):
            done(meter.result())


def _state(where: Ctx | State) -> State:
    from acct.services.state import State

    return where if isinstance(where, State) else where.state


def record_answer_usage(
    where: Ctx | State,
    account_id: str,
    tool: str,
    session: str | None,
    model: str | None,
    usage: AnswerUsage | None,
    *,
    now: float | None = None,
) -> None:
    """Count one answer: a request, and its tokens when it said them. ``model`` is the fallback
    when the answer named none (the request's model, say)."""
    u = usage or AnswerUsage(model=None)
    _state(where).add_answer(
        account_id=account_id,
        tool=tool,
        session=session or "-",
        model=u.model or model or "unknown",
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cache_creation_tokens=u.cache_creation_tokens,
        cache_read_tokens=u.cache_read_tokens,
        now=now,
    )

"""Moments worth telling observers about: state changed, a rotation, a session ended.

Services say what happened with :func:`emit`; what follows (the metrics textfile, alerts) is
wired in from above with :func:`subscribe` (see ``acct.app.observe``), so these layers need not
know of it. A listener never fails the caller: its errors are swallowed here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acct.services.context import Ctx

# change: the store or the shared state changed (after a poll, lend, harvest, bench...)
# rotation: acct exec switched accounts (account_id, to, reason)
# session_end: an acct exec session ended
Listener = Callable[["Ctx", str, dict[str, Any]], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    with contextlib.suppress(ValueError):
        _listeners.remove(listener)


def emit(ctx: Ctx, what: str, **detail: Any) -> None:
    for listener in _listeners[:]:  # a listener may unsubscribe
        with contextlib.suppress(Exception):
            listener(ctx, what, detail)


def count(ctx: Ctx, name: str, **labels: str) -> None:
    """Add one to a counter of the state database (metrics); never fails the caller."""
    with contextlib.suppress(Exception):
        ctx.state.bump(name, labels)

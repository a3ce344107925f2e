"""The moment a refresh request goes on the wire.

A refresh spends a single-use token, and what others must know about it changes at one instant:
until its request is sent, the token is certainly unspent. Code that sends the request passes
:func:`trace` as the request's ``trace`` extension (httpx hands it to httpcore, which calls it at
each step): once the connection is up (TCP, TLS, a proxy's tunnel) and right before the request's
headers are written, it calls :func:`sending`, which runs what the refresh registered with
:func:`on_sending`, in the same thread. A pool's "refresh in flight" mark is committed there, so
a process killed before that point (building the client, connecting) leaves no mark (its token
is known to be good) instead of one that must be treated as spent.

The hook is a context variable: it belongs to the refresh that set it (one thread, or a copied
context), and a request sent outside a refresh calls nothing.

A refresh that names a journal has its request carried by a courier process
(:mod:`acct.base.courier`), which outlives acct: the clients that send token requests take
their transport from :func:`transport`. :func:`replaying` gives back a journaled answer instead
of sending.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

_HOOK: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "acct_refresh_sending", default=None
)


@dataclass(frozen=True)
class _Journal:
    path: Path
    doc: dict[str, Any]


_JOURNAL: contextvars.ContextVar[_Journal | None] = contextvars.ContextVar(
    "acct_refresh_journal", default=None
)
_REPLAY: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "acct_refresh_replay", default=None
)


@contextlib.contextmanager
def on_sending(
    hook: Callable[[], None], *, journal: Path | None = None, doc: dict[str, Any] | None = None
) -> Iterator[None]:
    """Run ``hook`` when a request of this context is about to be sent (see :func:`sending`).
    With ``journal``, the request goes through a courier that journals there (``doc`` is what
    the journal says of the refresh)."""
    token = _HOOK.set(hook)
    held = _JOURNAL.set(_Journal(journal, dict(doc or {})) if journal is not None else None)
    try:
        yield
    finally:
        _JOURNAL.reset(held)
        _HOOK.reset(token)


@contextlib.contextmanager
def replaying(answer: dict[str, Any]) -> Iterator[None]:
    """Requests of this context get ``answer`` (a courier's journaled answer), once, instead
    of being sent."""
    token = _REPLAY.set(answer)
    try:
        yield
    finally:
        _REPLAY.reset(token)


def transport() -> httpx.BaseTransport | None:
    """The transport a token request of this context goes through: a replay, a courier, or
    None (an ordinary client)."""
    replay, journal = _REPLAY.get(), _JOURNAL.get()
    if replay is None and journal is None:
        return None
    import httpx

    from acct.base import courier

    if replay is not None:
        return courier.Replay(replay)
    assert journal is not None
    return courier.Courier(journal.path, journal.doc, sending, httpx.HTTPTransport)


def sending() -> None:
    """A request is about to go out: run the refresh's hook, if any. The hook may raise (the
    pool is unreachable, the refresh was cut off elsewhere); then nothing is sent."""
    hook = _HOOK.get()
    if hook is not None:
        hook()


def trace(event: str, info: object) -> None:
    """httpcore's ``trace`` callback: :func:`sending` as the request's headers are about to be
    written (HTTP/1.1 or HTTP/2; a proxy's CONNECT comes first, which is earlier still)."""
    del info
    if event.endswith(".send_request_headers.started"):
        sending()

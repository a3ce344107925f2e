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
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

_HOOK: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "acct_refresh_sending", default=None
)


@contextlib.contextmanager
def on_sending(hook: Callable[[], None]) -> Iterator[None]:
    """Run ``hook`` when a request of this context is about to be sent (see :func:`sending`)."""
    token = _HOOK.set(hook)
    try:
        yield
    finally:
        _HOOK.reset(token)


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

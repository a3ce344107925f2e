"""Closing an upstream request as soon as the client that asked for it leaves.

A Messages answer is generated against the account's quota whether or not anyone reads it, so
an upstream exchange must not outlive its client. Each exchange runs under a :class:`Ticket`
(per handler thread); the network backend given to httpcore notes on the ticket every upstream
socket the exchange reads or writes, and a small watcher polls the client's socket. When the
client hangs up (before the answer's headers, or during a silence in a stream), the watcher
shuts the upstream sockets down: the blocked read returns at once and the pooled connection is
discarded, never reused.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore

WATCH_EVERY = 0.2  # seconds between looks at a silent client socket

_current = threading.local()


class Departed(OSError):
    """The client left: the exchange stops."""


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSL socket: the reading thread keeps its state.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Ticket:
    """One upstream exchange: the sockets it used, and whether its client left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.cancelled = False

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            if not any(s is sock for s in self._socks):
                self._socks.append(sock)
            cancelled = self.cancelled
        if cancelled:
            _shut(sock)
            raise Departed("the client left")

    def check(self) -> None:
        if self.cancelled:
            raise Departed("the client left")

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            socks = list(self._socks)
        for sock in socks:
            _shut(sock)


@contextlib.contextmanager
def exchange(client: socket.socket) -> Iterator[Ticket]:
    """Run an upstream exchange for ``client``; it is cancelled when the client hangs up."""
    ticket = Ticket()
    done = threading.Event()
    watcher = threading.Thread(
        target=_watch, args=(client, ticket, done), name="acct-proxy-watch", daemon=True
    )
    _current.ticket = ticket
    watcher.start()
    try:
        yield ticket
    finally:
        _current.ticket = None
        done.set()


def _gone(client: socket.socket) -> bool | None:
    """True when the client hung up, False when it sent more (still there), None: no news."""
    try:
        data = client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return True
    return not data


def _watch(client: socket.socket, ticket: Ticket, done: threading.Event) -> None:
    try:
        poller = select.poll()
        poller.register(client, select.POLLIN | select.POLLHUP | select.POLLERR)
    except (OSError, ValueError):
        return
    while not done.is_set():
        try:
            if not poller.poll(int(WATCH_EVERY * 1000)):
                continue
        except (OSError, ValueError):
            return
        gone = _gone(client)
        if gone is None:
            continue
        if gone:
            ticket.cancel()
        return  # gone, or the client sent its next request: it is there


def current() -> Ticket | None:
    """The exchange this thread runs, if any."""
    return _ticket()


def _ticket() -> Ticket | None:
    return getattr(_current, "ticket", None)


class _Stream(httpcore.NetworkStream):
    """A stream that tells the running exchange which socket it uses."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def _mark(self) -> None:
        ticket = _ticket()
        if ticket is not None:
            sock = self._inner.get_extra_info("socket")
            if isinstance(sock, socket.socket):
                ticket.attach(sock)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._mark()
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._mark()
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        self._mark()
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class Backend(httpcore.NetworkBackend):
    """httpcore's own synchronous backend, with streams that a ticket can cut."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        ticket = _ticket()
        if ticket is not None:
            ticket.check()
        stream = _Stream(
            self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        )
        stream._mark()
        return stream

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

"""Refreshes in flight, and the signals held back while one is.

A refresh spends a single-use token; from just before its request until its answer is stored or
rescued, SIGINT, SIGTERM and SIGHUP wait (the signal then takes effect). Signals belong to the
process, not to a context, so this state is one object per process (:data:`GUARD`), created at
import and shared by every thread; the functions below are its methods.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from acct.base.errors import Interrupted

# Signals held back while a refresh is in flight, and the handlers they go to afterwards.
HELD_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class RefreshGuard:
    """Counts this process's refreshes in flight and holds signals back while there are any."""

    def __init__(self) -> None:
        self._flight = threading.Condition()
        self._in_flight = 0
        self._closing = False
        self._pending: list[int] = []
        self._previous: dict[int, Any] = {}
        self._holding = 0  # nesting depth of signals_held() in the main thread

    def _deliver(self, signum: int, frame: Any = None) -> None:
        """What the signal would have done without acct holding it: the handler it replaced
        (Ctrl-C raises KeyboardInterrupt); a signal that would end the process raises
        SystemExit(128+N) so cleanup code still runs."""
        previous = self._previous.get(signum, signal.getsignal(signum))
        if previous == self._on_signal:
            previous = signal.SIG_DFL
        if callable(previous):
            previous(signum, frame)
            return
        if previous == signal.SIG_IGN:
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._in_flight > 0:
            self._pending.append(signum)  # acted on once the last refresh in flight is stored
            return
        self._deliver(signum, frame)

    def _take_pending(self) -> list[int]:
        taken = list(dict.fromkeys(self._pending))
        self._pending.clear()
        return taken

    def _act_on_pending(self) -> None:
        """The last refresh in flight is stored: the signals held back take effect now (in the
        main thread, which is where Python runs signal handlers)."""
        pending = self._take_pending()
        if not _main_thread():
            for sig in pending:
                with contextlib.suppress(OSError):
                    os.kill(os.getpid(), sig)
            return
        for sig in pending:
            self._deliver(sig)

    @contextlib.contextmanager
    def signals_held(self) -> Iterator[None]:
        """Hold SIGINT, SIGTERM and SIGHUP back while a refresh of this process is in flight.

        Installs the handler in the main thread (a no-op elsewhere: only the main thread can,
        and it is the one that receives signals). Outside a refresh a signal acts at once, as
        before; during one it waits until the answer is stored or rescued. Wrap code that
        refreshes on worker threads (a usage poll) in it; :meth:`spending` wraps the main
        thread's own.
        """
        if not _main_thread():
            yield
            return
        if self._holding == 0:
            for sig in HELD_SIGNALS:
                with contextlib.suppress(ValueError, OSError):
                    self._previous[sig] = signal.signal(sig, self._on_signal)
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if self._holding == 0:
                for num, old in list(self._previous.items()):
                    with contextlib.suppress(ValueError, OSError, TypeError):
                        signal.signal(num, old if old is not None else signal.SIG_DFL)
                try:
                    if self._in_flight == 0 and self._pending:
                        self._act_on_pending()
                finally:
                    self._previous.clear()

    @contextlib.contextmanager
    def spending(self) -> Iterator[None]:
        """Mark a refresh between sending and storing: signals wait for it, and an interrupted
        process lets it finish (:meth:`finish`)."""
        with self.signals_held():
            with self._flight:
                if self._closing or self._pending:
                    raise Interrupted("interrupted before refreshing; nothing was sent")
                self._in_flight += 1
            try:
                yield
            finally:
                with self._flight:
                    self._in_flight -= 1
                    self._flight.notify_all()
                    last = self._in_flight == 0
                if last and self._pending:
                    self._act_on_pending()

    def finish(self, timeout: float) -> bool:
        """Start no new refresh in this process and wait for those in flight to be stored.

        Called when the process is about to end early (Ctrl-C) while worker threads may be
        refreshing: a refresh cut off between the server's answer and the store loses the
        lineage. Returns False when some are still running after ``timeout`` seconds.
        """
        with self._flight:
            self._closing = True
            return self._flight.wait_for(lambda: self._in_flight == 0, timeout=timeout)


GUARD = RefreshGuard()


def signals_held() -> contextlib.AbstractContextManager[None]:
    """:meth:`RefreshGuard.signals_held` of this process."""
    return GUARD.signals_held()


def refresh_in_flight() -> contextlib.AbstractContextManager[None]:
    """For a refresh made outside this package whose answer goes to a tool's file (``acct
    import`` renewing a login in place): signals wait until it is written."""
    return GUARD.spending()


def finish_refreshes(timeout: float) -> bool:
    """:meth:`RefreshGuard.finish` of this process."""
    return GUARD.finish(timeout)

"""Run a coding tool as a child on the same terminal and report how it ended.

- A stream that is a terminal is inherited, so the tool sees a TTY and draws as it likes.
- A stream that is not a terminal (a pipe, a file) goes through a pipe: a thread copies every
  byte to acct's own descriptor unchanged and keeps the last ``TAIL_BYTES`` for
  :mod:`acct.domain.classify`. When acct's reader goes away (``acct exec -- claude -p x | head -1``),
  copying stops and the child's pipe is closed, so the child gets SIGPIPE as it would alone.
- SIGTERM and SIGHUP sent to acct are forwarded to the child. SIGINT (and SIGQUIT) typed on the
  terminal reach the child directly, since it stays in acct's process group; acct only keeps
  them from killing itself. When acct is not the terminal's foreground process, a SIGINT it
  receives is forwarded instead. Either way the run is marked ``interrupted``.
- The status is the child's exit code, or 128+N when signal N killed it (as shells report it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Self

from acct.base.errors import NotFound

TAIL_BYTES = 64 * 1024
_CHUNK = 65536
_JOIN_TIMEOUT = 2.0  # after the child exits, a grandchild may still hold its pipes open
_INTERRUPTS = (signal.SIGINT, signal.SIGQUIT)


class CommandNotFound(NotFound):
    """The command does not exist (127) or cannot be executed (126), as a shell reports it."""

    code = "command_not_found"

    def __init__(self, message: str, *, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RunResult:
    status: int  # exit code, or 128+N when killed by signal N
    tail: str  # the end of what the child wrote on captured (non-terminal) streams
    started_at: float  # epoch seconds
    ended_at: float
    forwarded: tuple[int, ...] = ()  # signals acct received and passed on
    captured: tuple[int, ...] = (1, 2)  # descriptors whose output ``tail`` holds (not terminals)
    interrupted: bool = False  # SIGINT or SIGQUIT reached acct (typed on the terminal or sent)


class _Tail:
    """The last ``limit`` bytes written to one stream."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.lock = threading.Lock()

    def add(self, data: bytes) -> None:
        with self.lock:
            self.buf += data
            if len(self.buf) > self.limit:
                del self.buf[: len(self.buf) - self.limit]

    def text(self) -> str:
        with self.lock:
            return self.buf.decode("utf-8", "replace")


def _write_all(fd: int, data: bytes) -> bool:
    """Write everything; False once the reader went away."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.EBADF, errno.EINVAL):
                return False
            raise
        view = view[n:]
    return True


def _pump(src: int, dst: int, tail: _Tail) -> None:
    """Copy the child's stream to ours until it ends or our reader goes away.

    In the second case the read end closes at once: the child's next write fails (SIGPIPE) and
    it stops, as it would writing to that reader itself.
    """
    try:
        while True:
            try:
                data = os.read(src, _CHUNK)
            except InterruptedError:
                continue
            if not data:
                return
            tail.add(data)
            if not _write_all(dst, data):
                return
    finally:
        os.close(src)


def _is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _foreground_on_terminal() -> bool:
    """Whether keys typed on our terminal signal our process group (and so the child too)."""
    for fd in (0, 1, 2):
        if _is_tty(fd):
            with contextlib.suppress(OSError):
                return os.tcgetpgrp(fd) == os.getpgrp()
    return False


class _Forwarder:
    """Signal handlers for the child's lifetime; installed as Python handlers (not SIG_IGN),
    so the child starts with the default dispositions (exec resets caught signals)."""

    def __init__(self, forward: tuple[int, ...], absorb: tuple[int, ...]) -> None:
        self.forward = forward
        self.absorb = absorb
        self.pid: int | None = None
        self.pending: list[int] = []
        self.received: list[int] = []
        self.absorbed: list[int] = []
        self.saved: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum not in self.forward:
            self.absorbed.append(signum)
            return
        self.received.append(signum)
        if self.pid is None:
            self.pending.append(signum)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def __enter__(self) -> Self:
        for sig in (*self.forward, *self.absorb):
            self.saved[sig] = signal.signal(sig, self._on_signal)
        return self

    def started(self, pid: int) -> None:
        self.pid = pid
        while self.pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, self.pending.pop(0))

    def __exit__(self, *exc: object) -> None:
        for sig, old in self.saved.items():
            signal.signal(sig, old)

    @property
    def interrupted(self) -> bool:
        return any(s in _INTERRUPTS for s in (*self.received, *self.absorbed))


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    on_start: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ``argv`` with ``env`` until it exits; stdin is inherited."""
    on_terminal = _foreground_on_terminal()
    forward = (signal.SIGTERM, signal.SIGHUP) + (() if on_terminal else (signal.SIGINT,))
    absorb = (signal.SIGINT, signal.SIGQUIT) if on_terminal else ()
    capture = {fd: not _is_tty(fd) for fd in (1, 2)}
    tails = {fd: _Tail() for fd in (1, 2)}
    pipes: dict[int, tuple[int, int]] = {fd: os.pipe() for fd, cap in capture.items() if cap}
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with _Forwarder(forward, absorb) as fw:
        started = time.time()
        try:
            proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                stdout=pipes[1][1] if 1 in pipes else None,
                stderr=pipes[2][1] if 2 in pipes else None,
            )
        except FileNotFoundError:
            _close_all(pipes)
            raise CommandNotFound(f"command not found: {argv[0]}", exit_code=127) from None
        except PermissionError:
            _close_all(pipes)
            raise CommandNotFound(
                f"cannot execute {argv[0]}: permission denied", exit_code=126
            ) from None
        fw.started(proc.pid)
        threads = []
        for fd, (r, w) in pipes.items():
            os.close(w)
            t = threading.Thread(target=_pump, args=(r, fd, tails[fd]), daemon=True)
            t.start()
            threads.append(t)
        if on_start is not None:
            on_start(proc.pid)
        returncode = proc.wait()
        ended = time.time()
        for t in threads:
            t.join(_JOIN_TIMEOUT)
    captured = tuple(fd for fd in (1, 2) if capture[fd])
    return RunResult(
        _status(returncode),
        "\n".join(tails[fd].text() for fd in captured),
        started,
        ended,
        tuple(fw.received),
        captured,
        fw.interrupted,
    )


def _close_all(pipes: dict[int, tuple[int, int]]) -> None:
    for r, w in pipes.values():
        os.close(r)
        os.close(w)

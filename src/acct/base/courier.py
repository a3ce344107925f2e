"""A refresh request carried by a process of its own, which outlives acct.

A refresh spends a single-use token at one instant, and its answer is the lineage's only live
copy until it is kept. Sent from acct's own process, a ``kill -9`` (or a closed terminal)
between the request and the journal of its answer loses the lineage. So the request goes out
from a courier: ``python -m acct.base.courier``, started in a session of its own (a Ctrl-C or
a hang-up of acct's terminal does not reach it), which

1. reads the request from its stdin and connects (TCP, TLS, a proxy's tunnel);
2. says ``connected`` right before the request's headers would be written, and waits for
   ``go``: acct then writes the journal's *intent* (which courier, which lineage) and commits
   what must be known before the token leaves (a pool's "refresh in flight" mark:
   :func:`acct.base.wire.sending`). Without ``go`` (acct died, or refused) it sends nothing;
3. on ``go``, journals *sending* (fsynced) and sends; then journals the answer as it came
   (*answered*: status, headers, body; or *unanswered*) before it tells acct, and exits.

The journal is one file per account (``rescued/<id>.flight``, 0600), written atomically; acct
reads it back when a refresh did not end in its own process (:mod:`acct.services.oauth`): an
*intent* whose courier is gone was never sent; an *answered* one is replayed through the
provider's own parser (:class:`Replay`); *sending* or *unanswered* may have spent the token.

:class:`Courier` is the httpx transport acct's side uses; the token never appears in argv.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from acct.base.fsio import write_json

# How long past its own timeouts a courier may take before acct stops waiting for it (it
# finishes on its own and journals what it got), and before it ends itself.
_SLACK = 10.0
# Headers a decoded body no longer matches.
_BODY_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class _Stopped(Exception):
    """acct did not say ``go``: nothing is sent."""


def started_at(pid: int) -> str | None:
    """When process ``pid`` started (``/proc``'s clock ticks), to tell it from a later process
    given the same pid; None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def alive(pid: object, start: object = None) -> bool:
    """Whether the courier ``pid`` (started at ``start``) still runs. A pid acct cannot judge
    counts as alive: waiting for a courier is safe, judging its journal early is not."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = started_at(pid)
    if now is not None and isinstance(start, str) and now != start:
        return False  # another process has that pid now
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        if state in ("Z", "X"):
            return False  # ended, not yet reaped
    return True


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    t = request.extensions.get("timeout")
    keys = ("connect", "read", "write", "pool")
    if isinstance(t, dict):
        return {k: t.get(k) for k in keys}
    return dict.fromkeys(keys, 20.0)


def _budget(t: dict[str, float | None]) -> float:
    return sum(v for v in t.values() if isinstance(v, int | float)) + _SLACK


def _error(name: object, detail: object, request: httpx.Request, sent: bool) -> httpx.HTTPError:
    """The httpx error the courier met, raised here as if the request had been sent here."""
    kind = getattr(httpx, str(name), None)
    if not (isinstance(kind, type) and issubclass(kind, httpx.RequestError)):
        kind = httpx.RemoteProtocolError if sent else httpx.ConnectError
    return kind(str(detail or name), request=request)


def _response(answer: dict[str, Any], request: httpx.Request) -> httpx.Response:
    headers = [(str(k), str(v)) for k, v in answer.get("headers", [])]
    body = base64.b64decode(str(answer.get("body", "")))
    return httpx.Response(int(answer["status"]), headers=headers, content=body, request=request)


class _Pipe:
    """The courier's stdout, read a line at a time with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buf = b""

    def line(self, deadline: float) -> dict[str, Any] | None:
        """The next message; None at the end of the stream or past ``deadline``."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\n", 1)
        try:
            msg = json.loads(raw)
        except ValueError:
            return None
        return msg if isinstance(msg, dict) else None


class Courier(httpx.BaseTransport):
    """Send each request through a courier process, journaling at ``journal`` (``doc`` is what
    the journal says besides its state). ``sending`` runs once the courier is connected and
    before it may send: acct's part of the instant the token leaves (it may refuse by
    raising; then nothing is sent). When no courier can be started, the request goes out from
    this process (``fallback``), as it would without one."""

    def __init__(
        self,
        journal: Path,
        doc: dict[str, Any],
        sending: Callable[[], None],
        fallback: Callable[[], httpx.BaseTransport],
    ) -> None:
        self.journal = journal
        self.doc = doc
        self.on_sending = sending
        self.fallback = fallback

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = _timeouts(request)
        order = {
            "method": request.method,
            "url": str(request.url),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
            "body": base64.b64encode(request.read()).decode("ascii"),
            "timeout": timeouts,
            "journal": str(self.journal),
        }
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "acct.base.courier"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        except OSError:
            with self.fallback() as t:
                return t.handle_request(request)
        assert proc.stdin is not None
        pipe = _Pipe(proc)
        left_running = False
        deadline = time.monotonic() + _budget(timeouts)
        try:
            proc.stdin.write(json.dumps(order).encode() + b"\n")
            proc.stdin.flush()
            said = pipe.line(deadline)
            if said is None or "error" in said or not said.get("connected"):
                said = said or {}
                raise _error(said.get("error"), said.get("detail") or "no courier", request, False)
            intent = dict(self.doc, state="intent", courier_pid=proc.pid, at=time.time())
            intent["courier_start"] = started_at(proc.pid)
            write_json(self.journal, intent)
            self.on_sending()  # raises to refuse: no ``go``, nothing is sent (the intent stays)
            proc.stdin.write(json.dumps({"go": True, "doc": intent}).encode() + b"\n")
            proc.stdin.flush()
            proc.stdin.close()
            said = pipe.line(deadline)
            if said is None:
                if proc.poll() is None:  # still waiting: it journals what comes, acct goes on
                    left_running = True
                    raise httpx.ReadTimeout("the courier is still waiting", request=request)
                raise httpx.RemoteProtocolError("the courier ended without an answer")
            if "error" in said:
                raise _error(said["error"], said.get("detail"), request, True)
            return _response(said["answer"], request)
        except BrokenPipeError:
            raise httpx.ConnectError("the courier ended before connecting") from None
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            if not left_running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)  # it ends right after its last word


class Replay(httpx.BaseTransport):
    """Give back a journaled answer instead of sending: the answer of a refresh whose process
    ended before keeping it goes through the provider's own parser. Only the first request is
    answered; another (asked again without ``scope``) was never sent."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer: dict[str, Any] | None = answer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer, self.answer = self.answer, None
        if answer is None:
            raise httpx.ConnectError("replayed: this request was never sent", request=request)
        return _response(answer, request)


# --- the courier process ----------------------------------------------------------------------


def _say(msg: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        sys.stdout.buffer.write(json.dumps(msg).encode() + b"\n")
        sys.stdout.buffer.flush()


def _journal(path: Path, doc: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):  # acct still hears the answer on the pipe
        write_json(path, doc)


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    try:
        order = json.loads(sys.stdin.buffer.readline())
    except ValueError:
        return 2
    timeouts = order["timeout"]
    signal.alarm(int(_budget(timeouts) + _SLACK))  # never outlive a stuck endpoint
    journal = Path(order["journal"])
    went: dict[str, Any] = {}

    def trace(event: str, info: object) -> None:
        del info
        if not event.endswith(".send_request_headers.started") or went:
            return
        _say({"connected": True})
        line = sys.stdin.buffer.readline()
        try:
            go = json.loads(line) if line else {}
        except ValueError:
            go = {}
        if not isinstance(go, dict) or not go.get("go"):
            raise _Stopped
        doc = dict(go["doc"], state="sending", sending_at=time.time())
        write_json(journal, doc)  # it must be on disk before a byte of the request leaves
        went.update(doc)

    request = httpx.Request(
        order["method"],
        order["url"],
        headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in order["headers"]],
        content=base64.b64decode(order["body"]),
        extensions={"timeout": timeouts, "trace": trace},
    )
    try:
        with httpx.Client(trust_env=True) as client:
            response = client.send(request)
            body = response.read()
    except _Stopped:
        return 0
    except Exception as e:  # noqa: BLE001 - every failure is reported, then journaled
        name = type(e).__name__
        if went:
            _journal(journal, dict(went, state="unanswered", error=name))
        _say({"error": name, "detail": str(e)[:300], "sent": bool(went)})
        return 0
    answer = {
        "status": response.status_code,
        "headers": [[k, v] for k, v in response.headers.multi_items() if k not in _BODY_FRAMING],
        "body": base64.b64encode(body).decode("ascii"),
        "received_at": time.time(),
    }
    if went:
        _journal(journal, dict(went, state="answered", answer=answer))
    _say({"answer": answer})
    return 0


if __name__ == "__main__":
    sys.exit(main())

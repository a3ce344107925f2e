"""The token ``usage`` of one Messages answer, read from its body as it streams past.

A streamed answer (``text/event-stream``) says its usage in two events: ``message_start``
(``message.model``, ``message.usage`` with input, cache and a first output count) and
``message_delta`` (``usage``: cumulative counts, output at least). A plain answer
(``application/json``) carries ``model`` and ``usage`` in its body. :class:`AnswerMeter` is fed
the raw bytes (maybe gzip- or deflate-encoded) and looks only at ``data:`` lines that name one of
those two events, so the many content deltas cost a substring search each. It never raises.

The tools offer codings the meter cannot read (Claude Code's client offers ``br`` and ``zstd``):
:func:`readable_accept_encoding` narrows what a request offers to the codings the meter reads,
all of which the tool offered itself, so the upstream answers in one both sides can decode.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

# A line or JSON body longer than this is not read (a message_start is a few hundred bytes).
MAX_LINE = 1 << 20
MAX_BODY = 8 << 20
_WANTED = (b'"message_start"', b'"message_delta"')
_READABLE = ("gzip", "x-gzip", "deflate", "identity")  # what _decoder reads
_KEYS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_creation_input_tokens": "cache_creation_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
}


@dataclass(frozen=True)
class AnswerUsage:
    model: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0

    @property
    def total(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_tokens
            + self.cache_read_tokens
        )


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _codings(accept_encoding: str) -> list[tuple[str, str, float]]:
    """(coding, item as written, q) for each item of an Accept-Encoding value."""
    out = []
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name.strip():
            out.append((name.strip().lower(), item.strip(), q))
    return out


def readable_accept_encoding(accept_encoding: str | None) -> str:
    """The Accept-Encoding to send upstream for a request that offered ``accept_encoding``: its
    items the meter reads (gzip, deflate, identity; ``*`` stands for gzip and deflate), else
    ``identity``. Only a tool that refused identity and offered nothing readable keeps its own
    value: it gets an answer it can decode, unmetered."""
    if accept_encoding is None:
        return "identity"  # no header: any coding would do, but only identity surely does
    kept: list[str] = []
    refused = False
    for name, item, q in _codings(accept_encoding):
        if name == "identity" and q <= 0:
            refused = True
        if q <= 0:
            continue
        if name in _READABLE:
            kept.append(item)
        elif name == "*":
            kept += [f"{c};q={q:g}" if q < 1 else c for c in ("gzip", "deflate")]
    if kept:
        return ", ".join(dict.fromkeys(kept))
    return accept_encoding if refused else "identity"


def _decoder(encoding: str | None) -> Any:
    """A zlib decompressor for gzip or deflate; None for identity; False for anything else."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if enc == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    return False  # br, zstd...: not read


class AnswerMeter:
    """Feed it an answer's raw body with :meth:`feed`; :meth:`result` says its usage, if any."""

    def __init__(self, content_type: str | None, content_encoding: str | None = None) -> None:
        ctype = (content_type or "").split(";")[0].strip().lower()
        self.stream = ctype == "text/event-stream"
        self.json = ctype == "application/json"
        self._decode = _decoder(content_encoding)
        self._off = self._decode is False or not (self.stream or self.json)
        self._buf = b""
        self._skipping = False  # inside a long line nobody needs
        self._model: str | None = None
        self._usage: dict[str, int] = {}
        self._seen = False

    def feed(self, data: bytes) -> None:
        if self._off or not data:
            return
        try:
            if self._decode is not None:
                data = self._decode.decompress(data)
            if self.stream:
                self._lines(data)
            elif len(self._buf) + len(data) <= MAX_BODY:
                self._buf += data
            else:
                self._off = True
        except Exception:  # noqa: BLE001  (a meter must never break the stream it reads)
            self._off = True

    def _lines(self, data: bytes) -> None:
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                rest = data[start:]
                if not self._skipping:
                    self._buf += rest
                    if len(self._buf) > MAX_LINE:
                        self._buf, self._skipping = b"", True
                return
            piece = data[start:end]
            if self._skipping:
                self._skipping = False
            else:
                self._line(self._buf + piece if self._buf else piece)
            self._buf = b""
            start = end + 1

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:") or not any(w in line[:64] for w in _WANTED):
            return
        event = json.loads(line[5:])
        if not isinstance(event, dict):
            return
        if event.get("type") == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                self._take(message)
        elif event.get("type") == "message_delta":
            self._take_usage(event.get("usage"))

    def _take(self, message: dict[str, Any]) -> None:
        model = message.get("model")
        if isinstance(model, str) and model:
            self._model = model
        self._take_usage(message.get("usage"))

    def _take_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for key, name in _KEYS.items():
            n = _count(usage.get(key))
            if n is not None:
                self._usage[name] = n  # a later event's counts are cumulative: they replace
                self._seen = True

    def result(self) -> AnswerUsage | None:
        """The answer's usage once its body ended; None when it said none (or was unreadable)."""
        if self.json and not self._off and self._buf:
            try:
                body = json.loads(self._buf)
            except ValueError:
                body = None
            self._buf = b""
            if isinstance(body, dict):
                self._take(body)
        if not self._seen:
            return None
        return AnswerUsage(model=self._model, **self._usage)

"""Reading what acct did not write itself: its own files as found on disk, the tools' files, stdin.

Every file acct reads goes through :func:`read_file`, and every JSON or TOML document through
:func:`parse_json` / :func:`parse_toml`, so that no input, however wrong, ends in a traceback or
a hang:

- a file is opened with ``O_NONBLOCK`` and checked with ``fstat`` before a byte is read: a FIFO,
  a device or a directory in place of a file is refused at once (a FIFO would block forever,
  ``/dev/zero`` would fill the memory);
- a read is bounded: a file larger than its limit is refused, not loaded;
- for acct's own files (``strict``), a dangling symlink is an error naming the link and where
  it points, never "no file yet": the data may be on a disk that is not mounted, and the next
  write must not create it somewhere else;
- a document nested deeper than :data:`MAX_DEPTH`, an integer too long for Python to convert,
  or a number that is not finite (``NaN``, ``Infinity``, ``1e400``) is refused.

Every refusal is a :class:`CorruptFile` (or :class:`FileAccessError` when the system refused)
whose one-line message names the file.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from acct.base.errors import AcctError, CorruptFile, UsageError

KIB = 1024
MIB = 1024 * KIB
OWN_FILE_LIMIT = 16 * MIB  # acct's store: thousands of accounts fit in a few hundred KiB
CONFIG_LIMIT = 1 * MIB
TOOL_FILE_LIMIT = 256 * MIB  # ~/.claude.json keeps project history: tens of megabytes happen
STDIN_SECRET_LIMIT = 64 * KIB  # an API key is about a hundred bytes
MAX_DEPTH = 100  # far beyond any file acct or a tool writes; well inside Python's stack

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileAccessError(AcctError):
    """The file system refused: a path component is a file, no permission, a full disk..."""

    code = "file"


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


class Unreadable(CorruptFile):
    """A file or document acct refuses to read; ``problem`` says why, without the file's name
    (for callers that word their own message around it)."""

    def __init__(self, what: str, path: Path | str, problem: str) -> None:
        super().__init__(
            f"{what} {path} {problem}; acct leaves it untouched",
            hint=f"fix or move {path} aside, then try again",
        )
        self.problem = problem


def _untouched(what: str, path: Path | str, problem: str) -> Unreadable:
    return Unreadable(what, path, problem)


def dangling_link(path: Path) -> tuple[Path, str] | None:
    """``(link, target)`` when ``path`` or one of its directories is a symlink that leads
    nowhere (``path`` itself being absent), else None."""
    for p in (path, *path.parents):
        if os.path.lexists(p):
            if os.path.islink(p) and not os.path.exists(p):
                return p, os.readlink(p)
            return None
    return None


def _too_large(what: str, path: Path | str, limit: int) -> Unreadable:
    return _untouched(what, path, f"is larger than {_size(limit)}, far more than it should hold")


def _size(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB else f"{n // KIB} KiB"


def _read_fd(fd: int, limit: int) -> bytes | None:
    """Up to ``limit`` bytes from ``fd``; None when there are more."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, min(1 * MIB, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            return None


def read_file(
    path: Path | str, *, what: str, limit: int = TOOL_FILE_LIMIT, strict: bool = False
) -> bytes | None:
    """The bytes of the regular file ``path``; None when it does not exist.

    ``strict`` (acct's own files): a dangling symlink is an error, not an absent file.
    """
    p = Path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        if strict and (link := dangling_link(p)) is not None:
            where = f"{what} {p} is" if link[0] == p else f"{what} {p}: {link[0]} is"
            raise FileAccessError(
                f"{where} a symlink to {link[1]}, which does not exist; "
                "acct reads and writes nothing there",
                hint=f"mount or restore {link[1]}, or remove the link {link[0]}",
            ) from None
        return None
    except IsADirectoryError:
        raise _untouched(what, p, "is a directory, not a file") from None
    except OSError as e:
        raise _os_refusal(what, p, e) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _untouched(what, p, f"is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise _too_large(what, p, limit)
        data = _read_fd(fd, limit)
    except OSError as e:
        raise _os_refusal(what, p, e) from None
    finally:
        os.close(fd)
    if data is None:
        raise _too_large(what, p, limit)
    return data


def _os_refusal(what: str, path: Path, e: OSError) -> FileAccessError:
    reason = e.strerror or type(e).__name__
    if e.errno == errno.ELOOP:
        reason = "too many levels of symbolic links"
    return FileAccessError(f"cannot read {what} {path}: {reason}")


def check_regular(path: Path | str, *, what: str) -> None:
    """Refuse a non-regular file at ``path`` (absent is fine), without opening it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise _os_refusal(what, Path(path), e) from None
    if not stat.S_ISREG(st.st_mode):
        raise _untouched(what, path, f"is {_kind(st.st_mode)}, not a regular file")


def decode(data: bytes, *, what: str, path: Path | str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _untouched(what, path, f"is not UTF-8 text (byte {e.start})") from None


# --- documents --------------------------------------------------------------------------------


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def depth(obj: Any) -> int:
    """How deeply lists and tables nest in ``obj`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((c, level + 1) for c in children)
    return deepest


def _shallow(obj: Any, what: str, path: Path | str) -> Any:
    if depth(obj) > MAX_DEPTH:
        raise _untouched(what, path, f"nests deeper than {MAX_DEPTH} levels")
    return obj


def parse_json(data: bytes | str, *, what: str, path: Path | str) -> Any:
    """A JSON document, strictly: no NaN or Infinity, no number out of range, bounded depth."""
    try:
        obj = json.loads(data, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as e:
        raise _untouched(
            what, path, f"is not valid JSON (line {e.lineno}, column {e.colno})"
        ) from None
    except UnicodeDecodeError as e:
        raise _untouched(what, path, f"is not UTF-8 text (byte {e.start})") from None
    except RecursionError:
        raise _untouched(what, path, "is not valid JSON (nested too deeply)") from None
    except ValueError as e:  # an integer too long to convert, NaN, Infinity, 1e400
        raise _untouched(what, path, f"is not valid JSON ({_short(e)})") from None
    return _shallow(obj, what, path)


def parse_toml(text: str, *, what: str, path: Path | str) -> dict[str, Any]:
    """A TOML document with bounded depth (``nan`` and ``inf`` are valid TOML: callers that
    want numbers check them)."""
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _untouched(what, path, f"is not valid TOML ({_short(e)})") from None
    except RecursionError:
        raise _untouched(what, path, "is not valid TOML (nested too deeply)") from None
    except ValueError as e:  # an integer too long to convert
        raise _untouched(what, path, f"is not valid TOML ({_short(e)})") from None
    return _shallow(doc, what, path)  # type: ignore[no-any-return]


def _short(e: Exception, width: int = 120) -> str:
    text = " ".join(str(e).split())
    if text.startswith("Exceeds the limit") and "integer string conversion" in text:
        return "an integer with more digits than Python converts"
    return text if len(text) <= width else text[: width - 1] + "…"


def read_json_object(
    path: Path | str, *, what: str = "file", limit: int = TOOL_FILE_LIMIT, strict: bool = False
) -> dict[str, Any] | None:
    """A JSON object file; None when the file is absent or empty.

    A file that does not parse, or is not an object, raises :class:`CorruptFile` naming it:
    the caller must then leave it alone.
    """
    raw = read_file(path, what=what, limit=limit, strict=strict)
    if raw is None or not raw.strip():
        return None
    obj = parse_json(raw, what=what, path=path)
    if not isinstance(obj, dict):
        raise _untouched(what, path, "holds JSON that is not an object")
    return obj


def read_toml(
    path: Path | str, *, what: str, limit: int = OWN_FILE_LIMIT, strict: bool = True
) -> dict[str, Any] | None:
    """A TOML file of acct's own; None when absent."""
    raw = read_file(path, what=what, limit=limit, strict=strict)
    if raw is None:
        return None
    return parse_toml(decode(raw, what=what, path=path), what=what, path=path)


def read_stream(fd: int, *, what: str, limit: int = STDIN_SECRET_LIMIT) -> bytes:
    """All of a stream (stdin), refusing more than ``limit`` bytes rather than filling memory."""
    try:
        data = _read_fd(fd, limit)
    except OSError as e:
        raise UsageError(f"cannot read {what}: {e.strerror or type(e).__name__}") from None
    if data is None:
        raise UsageError(f"{what} is longer than {_size(limit)}; nothing was stored")
    return data


PASTE_LINE_LIMIT = 16 * KIB  # a pasted CODE#STATE or redirect URL is well under a kilobyte


def read_lines(fd: int, *, limit: int = PASTE_LINE_LIMIT) -> Iterator[bytes]:
    """The lines of a stream (stdin), without their newline, each at most ``limit`` bytes.

    A longer line is given cut at ``limit`` and ends the stream: what follows is not a paste,
    and reading on (``/dev/zero``) would only fill the memory. Raw reads, so no buffer lock
    outlives the caller.
    """
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            if pending:
                yield pending
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line
        if len(pending) > limit:
            yield pending[:limit]
            return

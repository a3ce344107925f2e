"""Safe files: one atomic-write helper and the lock helpers every write goes through.

- ``atomic_write``: temp file in the same directory created 0600, write, fsync, rename over the
  real file (symlinks are followed, so the link stays a link), fsync the directory. A crash at
  any instant leaves the old file or the new one, never a torn one.
- ``file_lock``: a sidecar ``<file>.lock`` (filelock) for acct's own read-modify-write cycles.
- ``dir_lock``: the ``mkdir`` lock convention of proper-lockfile, used by Claude Code and Pi
  around their own refreshes, so acct never interleaves with a tool's write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from acct.base.errors import Busy
from acct.base.inputs import FileAccessError, read_json_object

FILE_MODE = 0o600
DIR_MODE = 0o700

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "FileAccessError",
    "atomic_write",
    "dir_lock",
    "ensure_dir",
    "file_lock",
    "os_error",
    "read_json_object",
    "real_path",
    "write_json",
]


def os_error(action: str, path: Path | str, e: OSError) -> FileAccessError:
    """One line naming what acct tried, where, and what the system said."""
    reason = e.strerror or type(e).__name__
    culprit = e.filename if e.filename and str(e.filename) != str(path) else None
    where = f"{path} ({reason}: {culprit})" if culprit else f"{path}: {reason}"
    return FileAccessError(f"cannot {action} {where}")


def ensure_dir(path: Path, mode: int = DIR_MODE) -> Path:
    """Create ``path`` (and parents) if missing; a directory acct creates is 0700 from birth."""
    path = Path(path)
    if not path.is_dir():
        old = os.umask(0o077)
        try:
            os.makedirs(path, mode=mode, exist_ok=True)
        except OSError as e:
            raise os_error("create the directory", path, e) from None
        finally:
            os.umask(old)
    return path


def real_path(path: Path) -> Path:
    """Follow symlinks so a write replaces the real file and keeps the link intact."""
    return Path(os.path.realpath(path))


def holder_path(path: Path | str) -> str:
    """The path custody records for a tool's file: symlinks resolved, so one file is one holder."""
    return os.path.realpath(path)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | str, *, mode: int = FILE_MODE) -> Path:
    """Replace ``path`` with ``data`` atomically. Returns the real path written."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    target = real_path(Path(path))
    if os.path.islink(path) and not target.parent.is_dir():
        # Never create the directories a symlink points into: they are not acct's.
        raise FileAccessError(
            f"cannot write {path}: it is a symlink to {os.readlink(path)}, "
            f"and {target.parent} does not exist",
            hint=f"create {target.parent}, or remove the link {path}",
        )
    ensure_dir(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise os_error("write", target, e) from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise os_error("write", target, e) from None
        raise
    _fsync_dir(target.parent)
    return target


def write_json(path: Path, obj: Any, *, indent: int | None = 2) -> Path:
    text = json.dumps(obj, indent=indent, ensure_ascii=False)
    return atomic_write(path, text + "\n")


@contextlib.contextmanager
def file_lock(path: Path, *, timeout: float = 10.0, what: str | None = None) -> Iterator[None]:
    """Hold ``<path>.lock`` (never the data file itself; the lock file is never deleted)."""
    from filelock import FileLock, Timeout

    lock_path = Path(str(path) + ".lock")
    ensure_dir(lock_path.parent)
    lock = FileLock(str(lock_path), timeout=timeout, mode=FILE_MODE, preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout:
        raise Busy(
            f"{what or path} is locked by another process (waited {timeout:g}s)",
            hint="try again in a moment",
        ) from None
    except OSError as e:
        raise os_error("lock", lock_path, e) from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def dir_lock(
    lock_dir: Path, *, stale: float = 30.0, timeout: float = 10.0, what: str | None = None
) -> Iterator[None]:
    """The proper-lockfile convention: the lock is a directory made with ``mkdir``.

    A lock directory older than ``stale`` seconds is taken over, as proper-lockfile does.
    """
    lock_dir = Path(lock_dir)
    ensure_dir(lock_dir.parent)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            os.mkdir(lock_dir, DIR_MODE)
            break
        except FileExistsError:
            try:
                age = time.time() - lock_dir.stat().st_mtime
            except FileNotFoundError:
                continue
            if age > stale:
                with contextlib.suppress(OSError):
                    os.rmdir(lock_dir)
                continue
            if time.monotonic() >= deadline:
                raise Busy(
                    f"{what or lock_dir} is locked by another program (waited {timeout:g}s)",
                    hint=f"if no tool is running, remove the directory {lock_dir}",
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        except OSError as e:
            if e.errno == errno.ENOENT:
                ensure_dir(lock_dir.parent)
                continue
            raise os_error("lock", lock_dir, e) from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(lock_dir)

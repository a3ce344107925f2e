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
import glob
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from acct.base.errors import AcctError, Busy
from acct.base.inputs import FileAccessError, read_file, read_json_object

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


# A temporary of a write older than this whose writer is gone was left by a killed process.
STRAY_TEMPORARY_AGE_S = 60.0


def _writer_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _sweep_temporaries(target: Path) -> None:
    """Remove the temporaries of writes to ``target`` whose process was killed before its
    rename (``.<name>.<pid>.<random>.tmp``, 0600 from creation, never read by any tool): one may
    hold a live token that the file itself no longer does. Only those of a process that is gone,
    and old enough that no write of it can still be running (a pid seen from another PID
    namespace looks gone)."""
    prefix = f".{target.name}."
    now = time.time()
    with contextlib.suppress(OSError):
        for left in target.parent.glob(f"{glob.escape(prefix)}*.tmp"):
            pid = left.name[len(prefix) :].split(".", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid() or not _writer_gone(int(pid)):
                continue
            with contextlib.suppress(OSError):
                if now - left.lstat().st_mtime > STRAY_TEMPORARY_AGE_S:
                    left.unlink()


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
    _sweep_temporaries(target)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent
        )
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


# --- tool lock directories ------------------------------------------------------------------
# A ``kill -9`` while acct holds a tool's lock directory leaves it behind, and the tool (and
# acct) would wait out its staleness (Pi: 30 s). So acct records, in a file of its own beside
# its other locks (never inside the directory: proper-lockfile removes it with ``rmdir``), who
# made the directory: its pid and start time and the directory's inode. A directory acct made
# whose maker is gone is broken at once. One acct never breaks another's live lock, nor a
# directory the tool made (the inode, or a modification after the record, tells them apart).


def lock_owner_record(owner_dir: Path, lock_dir: Path) -> Path:
    """Where acct records who holds ``lock_dir``."""
    import hashlib

    key = hashlib.sha256(str(lock_dir).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return Path(owner_dir) / f"dirlock-{key}.owner"


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive, unless its start time says the pid was reused
    except OSError:
        return True
    return start is None or process_start(pid) in (None, start)


def _record_owner(record: Path, lock_dir: Path) -> None:
    ino = os.stat(lock_dir).st_ino
    start = process_start(os.getpid()) or "-"
    atomic_write(record, f"{os.getpid()} {start} {ino}\n")


def _abandoned(record: Path, lock_dir: Path) -> bool:
    """Whether ``lock_dir`` is one acct made and its maker has died."""
    try:
        rec = os.stat(record)
        raw = read_file(record, what="lock record", limit=200) or b""
        pid_s, start, ino_s = raw.decode("ascii").split()
        pid, ino = int(pid_s), int(ino_s)
        st = os.stat(lock_dir)
    except (AcctError, OSError, ValueError):  # no record, or not one acct wrote: not ours
        return False
    if st.st_ino != ino or st.st_mtime_ns > rec.st_mtime_ns:
        return False  # another directory in its place, or touched since: not the one recorded
    return pid != os.getpid() and not _alive(pid, None if start == "-" else start)


def _break_abandoned(record: Path, lock_dir: Path, timeout: float) -> bool:
    """Remove ``lock_dir`` if acct made it and its maker died; True when it did."""
    try:
        with file_lock(record, timeout=timeout, what=f"the record of {lock_dir}"):
            if not _abandoned(record, lock_dir):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(record)
            os.rmdir(lock_dir)
    except (Busy, OSError):
        return False
    return True


def touch_lock(lock_dir: Path, owner_dir: Path | None = None) -> None:
    """Mark a held lock directory as alive (proper-lockfile's ``update``), and acct's record
    of it after it, so the record still matches."""
    with contextlib.suppress(OSError):
        os.utime(lock_dir)
        if owner_dir is not None:
            os.utime(lock_owner_record(owner_dir, lock_dir))


@contextlib.contextmanager
def dir_lock(
    lock_dir: Path,
    *,
    stale: float = 30.0,
    timeout: float = 10.0,
    what: str | None = None,
    owner_dir: Path | None = None,
) -> Iterator[None]:
    """The proper-lockfile convention: the lock is a directory made with ``mkdir``.

    A lock directory older than ``stale`` seconds is taken over, as proper-lockfile does.
    With ``owner_dir`` (acct's locks directory), acct records that it made the directory, and
    breaks at once one that it made in a process that has died (see above).
    """
    lock_dir = Path(lock_dir)
    record = lock_owner_record(owner_dir, lock_dir) if owner_dir is not None else None
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
            if record is not None and _break_abandoned(record, lock_dir, min(timeout, 2.0)):
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
        if record is not None:
            try:
                _record_owner(record, lock_dir)
            except (AcctError, OSError):
                record = None  # no record: the lock only goes stale the tool's way
        yield
    finally:
        if record is not None:
            with contextlib.suppress(OSError):
                os.unlink(record)
        with contextlib.suppress(OSError):
            os.rmdir(lock_dir)

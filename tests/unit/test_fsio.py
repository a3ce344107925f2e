"""Atomic writes and locks: the helpers every write goes through."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from acct.base.errors import Busy, CorruptFile
from acct.base.fsio import (
    FileAccessError,
    atomic_write,
    dir_lock,
    ensure_dir,
    file_lock,
    read_json_object,
)


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_atomic_write_creates_0600_in_0700_dir(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "secret.json"
    atomic_write(target, "{}")
    assert target.read_text() == "{}"
    assert mode(target) == 0o600
    assert mode(target.parent) == 0o700


def test_atomic_write_tightens_mode_of_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    os.chmod(target, 0o644)
    atomic_write(target, "new")
    assert mode(target) == 0o600
    assert target.read_text() == "new"


def test_atomic_write_follows_symlink_and_keeps_it(tmp_path: Path) -> None:
    real = tmp_path / "real" / "creds.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write(link, "new")
    assert link.is_symlink()
    assert real.read_text() == "new"


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    for i in range(5):
        atomic_write(tmp_path / "f", str(i))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_read_json_object_refuses_garbage_and_names_file(tmp_path: Path) -> None:
    p = tmp_path / "auth.json"
    p.write_text("{not json")
    with pytest.raises(CorruptFile) as e:
        read_json_object(p, what="OpenCode auth file")
    assert str(p) in e.value.message
    p.write_text("[1, 2]")
    with pytest.raises(CorruptFile):
        read_json_object(p)
    assert read_json_object(tmp_path / "absent.json") is None


_WRITER = textwrap.dedent(
    """
    import sys
    from acct.base.fsio import atomic_write
    path = sys.argv[1]
    big = "x" * (4 << 20)
    i = 0
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    while True:
        i += 1
        atomic_write(path, f"{i}:" + big + f":{i}")
    """
)


def test_killed_writer_leaves_old_or_new_never_torn(tmp_path: Path) -> None:
    """SIGKILL a process in the middle of a stream of atomic writes: the file is always whole."""
    target = tmp_path / "data"
    atomic_write(target, "0:" + "x" * (4 << 20) + ":0")
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        text = target.read_text()
        head, _, tail = text.partition(":")
        assert text.endswith(":" + head), "torn write: header and trailer disagree"
        assert len(text) == len(head) * 2 + 2 + (4 << 20)


def test_file_lock_times_out_with_busy(tmp_path: Path) -> None:
    data = tmp_path / "accounts.toml"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from acct.base.fsio import file_lock\n"
            f"with file_lock(__import__('pathlib').Path({str(data)!r})):\n"
            "    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(Busy), file_lock(data, timeout=0.2):
            pass
    finally:
        holder.kill()
        holder.wait()
    with file_lock(data, timeout=5):
        pass
    assert (tmp_path / "accounts.toml.lock").exists(), "the lock file is never deleted"


def test_dir_lock_waits_for_holder_and_takes_over_stale(tmp_path: Path) -> None:
    lock = tmp_path / "auth.json.lock"
    lock.mkdir()
    with pytest.raises(Busy), dir_lock(lock, timeout=0.2):
        pass
    assert lock.is_dir(), "a live lock held by someone else is left alone"
    old = time.time() - 60
    os.utime(lock, (old, old))
    with dir_lock(lock, stale=30, timeout=1):
        assert lock.is_dir()
    assert not lock.exists()


def test_ensure_dir_is_0700(tmp_path: Path) -> None:
    d = ensure_dir(tmp_path / "x" / "y")
    assert mode(d) == 0o700


@pytest.mark.parametrize("action", ["ensure_dir", "atomic_write", "file_lock", "dir_lock"])
def test_a_file_where_a_directory_should_be_is_an_error_naming_the_path(
    tmp_path: Path, action: str
) -> None:
    blocker = tmp_path / "local"
    blocker.write_text("")
    target = blocker / "share" / "acct" / "accounts.toml"
    with pytest.raises(FileAccessError) as e:
        if action == "ensure_dir":
            ensure_dir(target.parent)
        elif action == "atomic_write":
            atomic_write(target, "x")
        elif action == "file_lock":
            with file_lock(target):
                pass
        else:
            with dir_lock(target.parent / "x.lock"):
                pass
    assert str(blocker) in e.value.message and "Not a directory" in e.value.message
    assert e.value.exit_code == 1


def test_atomic_write_over_a_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    target = tmp_path / "accounts.toml"
    target.mkdir()
    with pytest.raises(FileAccessError) as e:
        atomic_write(target, "x")
    assert str(target) in e.value.message
    assert [p.name for p in tmp_path.iterdir()] == ["accounts.toml"]  # no temp file left

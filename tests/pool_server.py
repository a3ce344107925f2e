"""A real PostgreSQL server for the pool's tests: initdb in a temporary directory, started by
pg_ctl as an unprivileged user, listening on 127.0.0.1 on a free port, stopped at the end.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the system
user ``acct-pg`` (created when missing) through ``runuser``. The superuser ``acct`` logs in with
a password (scram-sha-256 over TCP), which the tests give to libpq through ``PGPASSWORD``, the
way a user's machine would through ``~/.pgpass``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_USER = "acct-pg"  # the system user the server runs as when the tests run as root
SUPERUSER = "acct"


def find_bindir() -> Path | None:
    """Debian's server binaries (/usr/lib/postgresql/<version>/bin), newest first, or PATH's."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_system_user() -> None:
    try:
        import pwd

        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )


@dataclass
class PgServer:
    bindir: Path
    root: Path
    port: int
    password: str

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def conninfo(self, dbname: str = "postgres") -> str:
        """No password in it: libpq takes it from PGPASSWORD (see ``env``)."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={SUPERUSER}"

    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}

    def _as_owner(self, *argv: str) -> list[str]:
        return ["runuser", "-u", PG_USER, "--", *argv] if os.geteuid() == 0 else list(argv)

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """One of the server's programs (initdb, pg_ctl) run as the server's owner."""
        return subprocess.run(
            self._as_owner(str(self.bindir / tool), *args),
            check=check,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "LC_ALL": "C", "PGPASSWORD": self.password},
        )

    def client(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        """A client program (psql, pg_dump) run as the current user, logging in like acct does."""
        return subprocess.run(
            [str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PGPASSWORD": self.password},
        )

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, PG_USER)
            shutil.chown(pwfile, PG_USER)
        self.run(
            "initdb", "-D", str(self.datadir), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
            "--no-instructions", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        # fsync and synchronous_commit off for speed, as some real servers run: acct asks for
        # synchronous_commit on its own connections (test_crashes proves commits survive).
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=300 -c shared_buffers=16MB"
        )
        self.run("pg_ctl", "-D", str(self.datadir), "-o", opts, "-l", str(self.root / "log"),
                 "-w", "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop", check=False)

    def restart_immediate(self) -> None:
        # -l again: a restarted server does not remember its log file, and would otherwise keep
        # this call's output pipe open for ever.
        self.run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-l", str(self.root / "log"),
                 "-w", "-t", "60", "restart")  # fmt: skip

    def _opts(self) -> str:
        return (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=300 -c shared_buffers=16MB"
        )

    def halt(self) -> None:
        """Stop the server as a crash would (``-m immediate``) and leave it down."""
        self.run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        """Start the server :meth:`halt` stopped, on the same port and data."""
        self.run("pg_ctl", "-D", str(self.datadir), "-o", self._opts(), "-l",
                 str(self.root / "log"), "-w", "-t", "60", "start")  # fmt: skip

    def create_database(self) -> str:
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.conninfo(), password=self.password, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return name


def why_not() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None when it can."""
    if find_bindir() is None:
        return "PostgreSQL is not installed (.ci/run installs Debian's postgresql package)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL cannot be started as another user"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    return None


@contextlib.contextmanager
def running_server() -> Iterator[PgServer]:
    bindir = find_bindir()
    assert bindir is not None
    if os.geteuid() == 0:
        _ensure_system_user()
    root = Path(tempfile.mkdtemp(prefix="acct-pg-"))
    server = PgServer(bindir, root, _free_port(), secrets.token_urlsafe(18))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

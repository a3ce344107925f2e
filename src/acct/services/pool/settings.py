"""Whether a pool is configured, where its key is, and which machine this is. Standard library
only: every acct command asks ``configured()`` and must not pay for psycopg to answer.

- the pool: ``ACCT_POOL`` (a libpq connection string or URL), else ``pool = "..."`` in
  config.toml;
- the key: ``ACCT_POOL_KEY`` (a path), else ``pool.key`` in acct's config directory;
- the machine: ``ACCT_HOST_ID``, else a random id kept in ``host-id`` in acct's state directory.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from acct.base.config import load_config
from acct.base.errors import ConfigError
from acct.base.fsio import FILE_MODE, ensure_dir, os_error
from acct.base.paths import Paths

KEY_FILE = "pool.key"
HOST_ID_FILE = "host-id"
_HOST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


@dataclass(frozen=True)
class PoolSettings:
    conninfo: str
    key_path: Path
    source: str  # where the connection string came from: "ACCT_POOL" or the config file's path


def _config_pool(paths: Paths) -> str | None:
    """``pool`` in config.toml, checked as every key there is (``base.config``)."""
    return load_config(paths.config_file).pool


def key_path(env: Mapping[str, str], paths: Paths) -> Path:
    named = env.get("ACCT_POOL_KEY", "").strip()
    return Path(named).expanduser() if named else paths.config_dir / KEY_FILE


def configured(env: Mapping[str, str], paths: Paths) -> PoolSettings | None:
    """The pool's settings, or None when no pool is configured (everything stays local)."""
    value = env.get("ACCT_POOL", "").strip()
    source = "ACCT_POOL"
    if not value:
        value = _config_pool(paths) or ""
        source = str(paths.config_file)
    if not value:
        return None
    return PoolSettings(value, key_path(env, paths), source)


def _valid_host_id(value: str, where: str) -> str:
    if not _HOST_ID.match(value):
        raise ConfigError(
            f"{where}: a machine id is 1-128 letters, digits and . _ : @ - (got {value!r})"
        )
    return value


def host_id(env: Mapping[str, str], paths: Paths) -> str:
    """This machine's id in the pool: ``ACCT_HOST_ID``, else one made once and kept."""
    named = env.get("ACCT_HOST_ID", "").strip()
    if named:
        return _valid_host_id(named, "ACCT_HOST_ID")
    path = paths.state_dir / HOST_ID_FILE
    try:
        return _valid_host_id(path.read_text(encoding="utf-8").strip(), str(path))
    except FileNotFoundError:
        pass
    except OSError as e:
        raise os_error("read", path, e) from None
    return _new_host_id(path)


def _new_host_id(path: Path) -> str:
    """Made in a temporary file, then linked into place: a reader never sees it half-written,
    and when two processes race, the first link wins and both use its id."""
    ensure_dir(path.parent)
    made = secrets.token_hex(8)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(made + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _valid_host_id(path.read_text(encoding="utf-8").strip(), str(path))
    except OSError as e:
        raise os_error("create", path, e) from None
    finally:
        tmp.unlink(missing_ok=True)
    return made

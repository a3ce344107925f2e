"""Where acct keeps its files, built once from an environment mapping.

``ACCT_HOME`` puts every acct file under one directory (``config/``, ``data/``, ``state/``).
Otherwise the platform's conventions apply (XDG on Linux, via platformdirs elsewhere).
Tests build a ``Paths`` from a dict; nothing reads globals behind their back.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from acct.base.errors import ConfigError

APP = "acct"


def _absolute_dir(env: Mapping[str, str], var: str) -> Path | None:
    """The directory variable ``var`` names, which must be absolute (``~`` expanded); None when
    unset. A relative one would put acct's files wherever the command happens to run."""
    if var not in env:
        return None
    value = env[var]
    expanded = os.path.expanduser(value) if var != "HOME" else value
    if not expanded or not os.path.isabs(expanded):
        shown = "empty" if not value else f"the relative path {value!r}"
        raise ConfigError(
            f"the environment variable {var} is {shown}; it must name an absolute directory",
            hint=f"set {var} to an absolute path, or unset it",
        )
    return Path(expanded)


def _xdg(env: Mapping[str, str], var: str, home: Path, default: str) -> Path:
    value = env.get(var, "")
    # The XDG spec says relative paths are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return home / default


@dataclass(frozen=True)
class Paths:
    home: Path
    config_dir: Path
    data_dir: Path
    state_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if env is None else env
        home = _absolute_dir(env, "HOME") or Path(os.path.expanduser("~"))
        base = _absolute_dir(env, "ACCT_HOME") if env.get("ACCT_HOME") else None
        if base is not None:
            return cls(home, base / "config", base / "data", base / "state")
        if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
            return cls(
                home,
                _xdg(env, "XDG_CONFIG_HOME", home, ".config") / APP,
                _xdg(env, "XDG_DATA_HOME", home, ".local/share") / APP,
                _xdg(env, "XDG_STATE_HOME", home, ".local/state") / APP,
            )
        import platformdirs

        return cls(
            home,
            Path(platformdirs.user_config_dir(APP, appauthor=False)),
            Path(platformdirs.user_data_dir(APP, appauthor=False)),
            Path(platformdirs.user_state_dir(APP, appauthor=False)),
        )

    @property
    def sessions_dir(self) -> Path:
        """Where isolated sessions keep their credentials files, one directory each."""
        return self.state_dir / "sessions"

    @property
    def accounts_file(self) -> Path:
        return self.data_dir / "accounts.toml"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def state_db(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def prompt_file(self) -> Path:
        """One line per target, kept current for shells to read without starting Python."""
        return self.state_dir / "prompt"

    @property
    def prompt_state_file(self) -> Path:
        """What ``acct prompt`` reads: small JSON, standard library only."""
        return self.state_dir / "prompt.json"

    @property
    def rescued_dir(self) -> Path:
        """Refresh answers on their way to the store, or that it could not take (``<id>.json``)."""
        return self.state_dir / "rescued"

    def rescued(self) -> list[Path]:
        """The rescued answers waiting to be stored, and the journals of refresh requests
        (``<id>.flight``), by account id (a file set aside, with a dotted name, is the user's);
        none when the directory cannot be read."""
        try:
            found = [*self.rescued_dir.glob("*.json"), *self.rescued_dir.glob("*.flight")]
            return sorted(p for p in found if "." not in p.stem)
        except OSError:
            return []

    @property
    def pool_names_file(self) -> Path:
        """The pool's account names, one per line, for shell completion (which reads no pool)."""
        return self.state_dir / "pool-names"

    @property
    def locks_dir(self) -> Path:
        return self.state_dir / "locks"

    def account_lock(self, account_id: str) -> Path:
        """What ``fsio.file_lock`` locks for the account (it adds ``.lock``: ``account-<id>.lock``)."""
        return self.locks_dir / f"account-{account_id}"


def display_path(env: Mapping[str, str], path: str | Path) -> str:
    """A path for people to read: ``~/…`` under HOME (``--json`` keeps the absolute path)."""
    home = env.get("HOME")
    text = str(path)
    if not home or home == "/":
        return text
    home = home.rstrip("/")
    if text == home:
        return "~"
    return "~" + text[len(home) :] if text.startswith(home + "/") else text

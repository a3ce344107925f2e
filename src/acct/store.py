"""The account store: ``accounts.toml`` (0600 in a 0700 directory), schema-versioned.

Reads need no lock (writes are atomic renames). Every change goes through
:meth:`Store.transaction`, which holds the store's sidecar lock, re-reads, lets the caller change
the accounts, and writes them back atomically only if something changed.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import tomli_w

from acct.errors import CorruptFile, NotFound, UsageError
from acct.fsio import atomic_write, ensure_dir, file_lock
from acct.models import Account, Holder, Tokens
from acct.paths import Paths

SCHEMA_VERSION = 1
_NAME_RE = re.compile(r"^[^\s/\\\x00-\x1f-][^\s/\\\x00-\x1f]{0,79}$")


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise UsageError(
            f"invalid account name {name!r}: use 1-80 characters, no spaces or slashes, "
            "not starting with '-'"
        )
    return name


class Accounts:
    """The accounts of one store snapshot, in their stored order."""

    def __init__(self, accounts: list[Account] | None = None) -> None:
        self._items: list[Account] = list(accounts or [])

    def __iter__(self) -> Iterator[Account]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return [a.name for a in self._items]

    def find(self, name: str) -> Account | None:
        return next((a for a in self._items if a.name == name), None)

    def get(self, name: str) -> Account:
        acc = self.find(name)
        if acc is None:
            known = ", ".join(self.names()) or "none yet"
            raise NotFound(f"no account named {name!r} (accounts: {known})", hint="run `acct list`")
        return acc

    def by_id(self, account_id: str) -> Account | None:
        return next((a for a in self._items if a.id == account_id), None)

    def by_identity(self, uuid: str | None, org_uuid: str | None) -> Account | None:
        return next((a for a in self._items if a.same_identity(uuid, org_uuid)), None)

    def held_by(self, target: str, path: str | None = None) -> list[Account]:
        return [
            a
            for a in self._items
            if a.holder and a.holder.target == target and (path is None or a.holder.path == path)
        ]

    def add(self, account: Account) -> Account:
        validate_name(account.name)
        if self.find(account.name):
            raise UsageError(
                f"an account named {account.name!r} exists already",
                hint="choose another name, or `acct rename` the old one",
            )
        self._items.append(account)
        return account

    def put(self, account: Account) -> Account:
        """Replace the account with the same id (or add it)."""
        for i, a in enumerate(self._items):
            if a.id == account.id:
                self._items[i] = account
                return account
        return self.add(account)

    def remove(self, name: str) -> Account:
        acc = self.get(name)
        self._items.remove(acc)
        return acc

    def unique_name(self, wanted: str) -> str:
        """``wanted``, or ``wanted-2``, ``wanted-3``... when taken."""
        if not self.find(wanted):
            return wanted
        n = 2
        while self.find(f"{wanted}-{n}"):
            n += 1
        return f"{wanted}-{n}"


# --- serialization --------------------------------------------------------------------------


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def account_to_toml(a: Account) -> dict[str, Any]:
    d = {
        "id": a.id,
        "name": a.name,
        "kind": a.kind,
        "uuid": a.uuid,
        "email": a.email,
        "display_name": a.display_name,
        "org_uuid": a.org_uuid,
        "org_name": a.org_name,
        "plan": a.plan,
        "tier": a.tier,
        "enabled": a.enabled,
        "needs_login": a.needs_login,
        "added_at": a.added_at,
        "last_used_at": a.last_used_at,
        "api_key": a.api_key,
    }
    out = _drop_none(d)
    if a.tokens is not None:
        t = a.tokens
        out["tokens"] = _drop_none(
            {"access": t.access, "refresh": t.refresh, "expires_at": t.expires_at, "scopes": list(t.scopes)}
        )
    if a.holder is not None:
        out["holder"] = asdict(a.holder)
    return out


def _want(d: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in d:
        if default is ...:
            raise ValueError(f"{where}: missing {key!r}")
        return default
    v = d[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise ValueError(f"{where}: {key!r} has the wrong type")
    return v


def account_from_toml(d: Any, index: int) -> Account:
    where = f"account #{index + 1}"
    if not isinstance(d, dict):
        raise ValueError(f"{where} is not a table")
    name = _want(d, "name", str, where)
    where = f"account {name!r}"
    kind = _want(d, "kind", str, where, "oauth")
    if kind not in ("oauth", "api_key"):
        raise ValueError(f"{where}: unknown kind {kind!r}")
    opt = lambda k: _want(d, k, str, where, None)  # noqa: E731
    tokens = None
    if "tokens" in d:
        t = d["tokens"]
        if not isinstance(t, dict):
            raise ValueError(f"{where}: 'tokens' is not a table")
        scopes = _want(t, "scopes", list, where, [])
        tokens = Tokens(
            access=_want(t, "access", str, where + " tokens"),
            refresh=_want(t, "refresh", str, where + " tokens", None),
            expires_at=int(_want(t, "expires_at", (int, float), where + " tokens", 0)),
            scopes=tuple(str(s) for s in scopes),
        )
    holder = None
    if "holder" in d:
        h = d["holder"]
        if not isinstance(h, dict):
            raise ValueError(f"{where}: 'holder' is not a table")
        holder = Holder(
            target=_want(h, "target", str, where + " holder"),
            path=_want(h, "path", str, where + " holder"),
            fingerprint=_want(h, "fingerprint", str, where + " holder"),
            since=int(_want(h, "since", (int, float), where + " holder", 0)),
        )
    if kind == "api_key" and not opt("api_key"):
        raise ValueError(f"{where}: an api_key account without 'api_key'")
    return Account(
        id=_want(d, "id", str, where),
        name=name,
        kind=kind,
        uuid=opt("uuid"),
        email=opt("email"),
        display_name=opt("display_name"),
        org_uuid=opt("org_uuid"),
        org_name=opt("org_name"),
        plan=opt("plan"),
        tier=opt("tier"),
        tokens=tokens,
        api_key=opt("api_key"),
        enabled=_want(d, "enabled", bool, where, True),
        needs_login=_want(d, "needs_login", bool, where, False),
        added_at=int(_want(d, "added_at", (int, float), where, 0)),
        last_used_at=int(_want(d, "last_used_at", (int, float), where, 0)),
        holder=holder,
    )


def dumps(accounts: Accounts) -> str:
    doc = {"version": SCHEMA_VERSION, "accounts": [account_to_toml(a) for a in accounts]}
    header = "# acct account store. Holds secrets: keep it 0600. Edit with `acct`, not by hand.\n"
    return header + tomli_w.dumps(doc)


def loads(text: str, path: Path) -> Accounts:
    def corrupt(problem: str) -> CorruptFile:
        return CorruptFile(
            f"account store {path} is unreadable: {problem}; acct leaves it untouched",
            hint=f"fix or move {path} aside (it holds your tokens: keep a copy)",
        )

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise corrupt(f"invalid TOML ({e})") from None
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise corrupt("no schema 'version'")
    if version > SCHEMA_VERSION:
        raise corrupt(f"schema version {version} is newer than this acct understands ({SCHEMA_VERSION}); upgrade acct")
    raw = doc.get("accounts", [])
    if not isinstance(raw, list):
        raise corrupt("'accounts' is not an array of tables")
    try:
        items = [account_from_toml(d, i) for i, d in enumerate(raw)]
    except ValueError as e:
        raise corrupt(str(e)) from None
    seen: set[str] = set()
    for a in items:
        if a.name in seen:
            raise corrupt(f"the name {a.name!r} appears twice")
        seen.add(a.name)
    return Accounts(items)


class Store:
    def __init__(self, paths: Paths, *, lock_timeout: float = 10.0) -> None:
        self.paths = paths
        self.path = paths.accounts_file
        self.lock_timeout = lock_timeout

    def read(self) -> Accounts:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Accounts()
        except OSError as e:
            raise CorruptFile(f"cannot read account store {self.path}: {e.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptFile(
                f"account store {self.path} is unreadable: not UTF-8 text; acct leaves it untouched"
            ) from None
        return loads(text, self.path)

    def write(self, accounts: Accounts) -> None:
        """Write without locking: only for callers already inside :meth:`transaction`."""
        ensure_dir(self.path.parent)
        atomic_write(self.path, dumps(accounts))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Accounts]:
        ensure_dir(self.path.parent)
        with file_lock(self.path, timeout=self.lock_timeout, what="the account store"):
            accounts = self.read()
            before = dumps(accounts)
            yield accounts
            after = dumps(accounts)
            if after != before:
                atomic_write(self.path, after)

"""The account store: ``accounts.toml`` (0600 in a 0700 directory), schema-versioned.

Reads need no lock (writes are atomic renames). Every change goes through
:meth:`Store.transaction`, which holds the store's sidecar lock, re-reads, lets the caller change
the accounts, and writes them back atomically only if something changed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import tomli_w

from acct.base.errors import CorruptFile, NotFound, UsageError
from acct.base.fsio import atomic_write, ensure_dir, file_lock
from acct.base.inputs import OWN_FILE_LIMIT, Unreadable, parse_toml, read_file
from acct.base.models import PROVIDERS, Account, Holder, Tokens
from acct.base.paths import Paths

# 1: Anthropic accounts only. 2: each account says its ``provider`` (a version-1 file reads as
# all Anthropic and is written back as version 2 on the next change).
SCHEMA_VERSION = 2
_NAME_RE = re.compile(r"^[^\s/\\\x00-\x1f-][^\s/\\\x00-\x1f]{0,79}$")


def name_from(text: str | None, fallback: str = "account") -> str:
    """A valid account name made from a server-supplied string (an email): characters a name
    cannot hold become ``_``, a leading ``-`` goes, and it is cut to 80 characters."""
    cleaned = re.sub(r"[\s/\\\x00-\x1f\x7f]", "_", text or "").lstrip("-")[:80]
    return cleaned if _NAME_RE.match(cleaned) else fallback


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise UsageError(
            f"invalid account name {name!r}: use 1-80 characters, no spaces or slashes, "
            "not starting with '-'"
        )
    return name


class Accounts:
    """The accounts of one store snapshot, in their stored order."""

    def __init__(
        self, accounts: list[Account] | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        self._items: list[Account] = list(accounts or [])
        # Top-level keys of the file this acct does not know: written back unchanged.
        self.extra: dict[str, Any] = dict(extra or {})

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

    def get_by_id(self, account_id: str) -> Account:
        """The account with this id; NotFound when it was removed meanwhile."""
        acc = self.by_id(account_id)
        if acc is None:
            raise NotFound(f"no account with id {account_id}", hint="run `acct list`")
        return acc

    def by_identity(
        self, uuid: str | None, org_uuid: str | None, provider: str | None = None
    ) -> Account | None:
        """The account of this identity (of ``provider``, when given)."""
        return next(
            (
                a
                for a in self._items
                if a.same_identity(uuid, org_uuid) and provider in (None, a.provider)
            ),
            None,
        )

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

# The keys this acct reads and writes. Anything else in the file is kept as it is, so an older
# acct does not drop what a newer one stored.
_ACCOUNT_KEYS = frozenset(
    {
        "id", "name", "kind", "provider", "uuid", "email", "display_name", "org_uuid", "org_name", "plan",
        "tier", "enabled", "needs_login", "added_at", "last_used_at", "api_key", "tokens", "holder",
    }
)  # fmt: skip
_TOKEN_KEYS = frozenset({"access", "refresh", "expires_at", "scopes", "obtained_at"})
_HOLDER_KEYS = frozenset({"target", "path", "fingerprint", "since"})
_TOP_KEYS = frozenset({"version", "accounts"})


class _Malformed(ValueError):
    """A part of the store that is not what acct wrote (reported as a corrupt store)."""


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _unknown(d: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in known}


def account_to_toml(a: Account) -> dict[str, Any]:
    d = {
        "id": a.id,
        "name": a.name,
        "kind": a.kind,
        "provider": a.provider,
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
    out = {**_unknown(dict(a.extra), _ACCOUNT_KEYS), **_drop_none(d)}
    if a.tokens is not None:
        t = a.tokens
        known = {
            "access": t.access,
            "refresh": t.refresh,
            "expires_at": t.expires_at,
            "scopes": list(t.scopes),
            "obtained_at": t.obtained_at,
        }
        out["tokens"] = {**_unknown(dict(t.extra), _TOKEN_KEYS), **_drop_none(known)}
    if a.holder is not None:
        h = a.holder
        known = {"target": h.target, "path": h.path, "fingerprint": h.fingerprint, "since": h.since}
        out["holder"] = {**_unknown(dict(h.extra), _HOLDER_KEYS), **known}
    return out


def _want(
    d: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str, default: Any = ...
) -> Any:
    if key not in d:
        if default is ...:
            raise ValueError(f"{where}: missing {key!r}")
        return default
    v = d[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise ValueError(f"{where}: {key!r} has the wrong type")
    return v


_MAX_EPOCH = 2**53  # far beyond any real date; keeps int() and float conversions exact


def _epoch(d: dict[str, Any], key: str, where: str, default: Any = ...) -> Any:
    """A time in epoch seconds: an integer, or a finite float (rounded down)."""
    if key not in d and default is not ...:
        return default
    v = _want(d, key, (int, float), where)
    if isinstance(v, bool) or not -_MAX_EPOCH <= v <= _MAX_EPOCH:  # also refuses nan and inf
        shown = repr(v) if isinstance(v, float) or abs(v) < 10**20 else "a huge number"
        raise ValueError(f"{where}: {key!r} is not a usable time ({shown})")
    return int(v)


def _tokens_from_toml(t: Any, where: str) -> Tokens:
    where += " tokens"
    if not isinstance(t, dict):
        raise _Malformed(f"{where}: 'tokens' is not a table")
    scopes = _want(t, "scopes", list, where, [])
    return Tokens(
        access=_want(t, "access", str, where),
        refresh=_want(t, "refresh", str, where, None),
        expires_at=_epoch(t, "expires_at", where, 0),
        scopes=tuple(str(s) for s in scopes),
        obtained_at=_epoch(t, "obtained_at", where, None),
        extra=_unknown(t, _TOKEN_KEYS),
    )


def _holder_from_toml(h: Any, where: str) -> Holder:
    where += " holder"
    if not isinstance(h, dict):
        raise _Malformed(f"{where}: 'holder' is not a table")
    return Holder(
        target=_want(h, "target", str, where),
        path=_want(h, "path", str, where),
        fingerprint=_want(h, "fingerprint", str, where),
        since=_epoch(h, "since", where, 0),
        extra=_unknown(h, _HOLDER_KEYS),
    )


def account_from_toml(d: Any, index: int) -> Account:
    where = f"account #{index + 1}"
    if not isinstance(d, dict):
        raise _Malformed(f"{where} is not a table")
    name = _want(d, "name", str, where)
    if not _NAME_RE.match(name):
        raise ValueError(f"{where}: invalid account name {name!r}")
    where = f"account {name!r}"
    kind = _want(d, "kind", str, where, "oauth")
    if kind not in ("oauth", "api_key"):
        raise ValueError(f"{where}: unknown kind {kind!r}")
    provider = _want(d, "provider", str, where, "anthropic")
    if provider not in PROVIDERS:
        raise ValueError(
            f"{where}: unknown provider {provider!r} (this acct knows {', '.join(PROVIDERS)})"
        )

    def opt(key: str) -> str | None:
        value: str | None = _want(d, key, str, where, None)
        return value

    tokens = _tokens_from_toml(d["tokens"], where) if "tokens" in d else None
    holder = _holder_from_toml(d["holder"], where) if "holder" in d else None
    if kind == "api_key" and not opt("api_key"):
        raise ValueError(f"{where}: an api_key account without 'api_key'")
    account_id = _want(d, "id", str, where)
    if not account_id:
        raise ValueError(f"{where}: empty 'id'")
    return Account(
        id=account_id,
        name=name,
        kind=kind,
        provider=provider,
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
        added_at=_epoch(d, "added_at", where, 0),
        last_used_at=_epoch(d, "last_used_at", where, 0),
        holder=holder,
        extra=_unknown(d, _ACCOUNT_KEYS),
    )


def dumps(accounts: Accounts) -> str:
    doc = {
        "version": SCHEMA_VERSION,
        **_unknown(accounts.extra, _TOP_KEYS),
        "accounts": [account_to_toml(a) for a in accounts],
    }
    header = "# acct account store. Holds secrets: keep it 0600. Edit with `acct`, not by hand.\n"
    return header + tomli_w.dumps(doc)


def _duplicates(items: list[Account]) -> str | None:
    """The first name or id that appears twice, as a problem to report."""
    names: set[str] = set()
    ids: set[str] = set()
    for a in items:
        if a.name in names:
            return f"the name {a.name!r} appears twice"
        if a.id in ids:
            return f"the id {a.id!r} appears twice (accounts {a.name!r} and another)"
        names.add(a.name)
        ids.add(a.id)
    return None


def loads(text: str, path: Path) -> Accounts:
    def corrupt(problem: str) -> CorruptFile:
        return CorruptFile(
            f"account store {path} is unreadable: {problem}; acct leaves it untouched",
            hint=f"fix or move {path} aside, keeping a copy: it holds your tokens",
        )

    try:
        doc = parse_toml(text, what="account store", path=path)
    except Unreadable as e:
        raise corrupt(e.problem.replace("is not valid TOML", "invalid TOML")) from None
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise corrupt("no schema 'version'")
    if version < 1:
        raise corrupt(f"schema version {version} is not one acct ever wrote")
    if version > SCHEMA_VERSION:
        raise corrupt(
            f"schema version {version} is newer than this acct understands ({SCHEMA_VERSION}); upgrade acct"
        )
    raw = doc.get("accounts", [])
    if not isinstance(raw, list):
        raise corrupt("'accounts' is not an array of tables")
    try:
        items = [account_from_toml(d, i) for i, d in enumerate(raw)]
    except ValueError as e:
        raise corrupt(str(e)) from None
    problem = _duplicates(items)
    if problem:
        raise corrupt(problem)
    return Accounts(items, extra=_unknown(doc, _TOP_KEYS))


class RefreshMark:
    """What a refresh tells its store's "refresh in flight" mark (:meth:`Store.refresh_mark`):
    :meth:`sending` right before its request goes out (``acct.base.wire``), ``spent`` once the
    token may be spent (an answer came, or none came after the request went out), ``stored``
    once the answer is stored. A mark of a refresh that ends spent but not stored stays: no
    refresher presents that token again."""

    def __init__(self, on_sending: Callable[[], None] | None = None) -> None:
        self.spent = False
        self.stored = False
        self.sent = False
        self._on_sending = on_sending

    def sending(self) -> None:
        """The request is about to go out (called once; a second request of the same refresh,
        asked again without ``scope``, is covered by the first call)."""
        if self.sent:
            return
        if self._on_sending is not None:
            self._on_sending()
        self.sent = True


class Store:
    def __init__(self, paths: Paths, *, lock_timeout: float = 10.0) -> None:
        self.paths = paths
        self.path = paths.accounts_file
        self.lock_timeout = lock_timeout

    def read(self) -> Accounts:
        """The accounts; none when there is no store yet. Anything but a regular file of
        acct's schema (a dangling symlink, a FIFO, garbage) is an error naming the file."""
        raw = read_file(self.path, what="account store", limit=OWN_FILE_LIMIT, strict=True)
        if raw is None:
            return Accounts()
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

    def reclaimed(self, account_id: str, lineage: str) -> bool:
        """Whether a pool took this lineage back from this machine (never, without a pool)."""
        del account_id, lineage
        return False

    @contextlib.contextmanager
    def refresh_mark(self, account_id: str, lineage: str, nonce: str = "") -> Iterator[RefreshMark]:
        """A refresh of ``lineage`` about to be sent, under :meth:`account_lock`. Only a pool's
        store records it (another machine could present the spent token); here, nothing."""
        del account_id, lineage, nonce
        yield RefreshMark()

    def unsent_refresh(self, account_id: str, lineage: str, nonce: str) -> bool:
        """The refresh ``nonce`` of ``lineage`` on this machine ended without its request
        leaving (its process was killed first): undo what its mark left, under
        :meth:`account_lock`. True when that made the account usable again. Only a pool's store
        marks anything."""
        del account_id, lineage, nonce
        return False

    @contextlib.contextmanager
    def account_lock(self, account_id: str, *, timeout: float, what: str) -> Iterator[None]:
        """The account's own lock (one refresher at a time); pool-wide in a pool's store."""
        with file_lock(self.paths.account_lock(account_id), timeout=timeout, what=what):
            yield

    @contextlib.contextmanager
    def transaction(self, *, timeout: float | None = None) -> Iterator[Accounts]:
        """Lock, re-read, yield the accounts to change, write them back if they changed.

        ``timeout``: how long to wait for the lock (default: the store's ``lock_timeout``).
        """
        ensure_dir(self.path.parent)
        wait = self.lock_timeout if timeout is None else timeout
        with file_lock(self.path, timeout=wait, what="the account store"):
            accounts = self.read()
            before = dumps(accounts)
            yield accounts
            after = dumps(accounts)
            if after != before:
                atomic_write(self.path, after)

"""The pool key and the sealing of secrets at rest.

The key is 32 random bytes in a 0600 file (``acct pool init`` creates it; other machines get a
copy). Every secret column is sealed on its own with AES-GCM: a fresh 96-bit nonce, and as
associated data the table, the column and the account's id, so a ciphertext copied into another
row or column does not open. The database, its dumps and backups hold only ciphertext.

The key never leaves this module: not in argv, output, logs or exceptions. A machine can tell
whether it has the pool's key by opening the pool's check value (``key_check``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from acct.base.errors import PoolError
from acct.base.fsio import FILE_MODE, ensure_dir, os_error

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_HEADER = "acct-pool-key-v1:"
_VERSION = b"\x01"
_NONCE = 12
_CHECK = b"acct pool key check"


class PoolKeyError(PoolError):
    """The pool key is missing, unreadable, or not the key this pool's secrets were sealed with."""

    code = "pool_key"


class KeyExists(PoolKeyError):
    """``create_key`` found a key file there already (it is never replaced)."""


class PoolKey:
    """An open pool key. ``repr`` and ``str`` say only its id (a hash, not the key)."""

    def __init__(self, raw: bytes, path: Path) -> None:
        if len(raw) != 32:
            raise PoolKeyError(f"pool key {path} is not an acct pool key")
        self._aead: AESGCM | None = None
        self._raw = raw
        self.path = path
        self.key_id = hashlib.sha256(b"acct pool key id\0" + raw).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"PoolKey(id={self.key_id}, path={str(self.path)!r})"

    __str__ = __repr__

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(self._raw)
        return self._aead

    def seal(self, plain: str, *, table: str, column: str, row: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        ct = self._cipher().encrypt(nonce, plain.encode("utf-8"), _aad(table, column, row))
        return _VERSION + nonce + ct

    def open(self, sealed: bytes, *, table: str, column: str, row: str) -> str:
        from cryptography.exceptions import InvalidTag

        blob = bytes(sealed)
        if len(blob) < 1 + _NONCE + 16 or blob[:1] != _VERSION:
            raise PoolKeyError(f"the pool's {table}.{column} of {row} is not sealed by acct")
        nonce, ct = blob[1 : 1 + _NONCE], blob[1 + _NONCE :]
        try:
            return self._cipher().decrypt(nonce, ct, _aad(table, column, row)).decode("utf-8")
        except InvalidTag:
            raise PoolKeyError(
                f"the pool's {table}.{column} of {row} does not open with the pool key "
                f"{self.path} (key id {self.key_id}): a wrong key, or a value moved from "
                "another row"
            ) from None

    def check_value(self) -> bytes:
        """What the pool keeps to recognise its key (opens only with this key)."""
        return self.seal(_CHECK.decode(), table="pool", column="key_check", row="pool")

    def verify(self, check: bytes, expected_id: str | None) -> None:
        try:
            self.open(check, table="pool", column="key_check", row="pool")
        except PoolKeyError:
            expected = f" (the pool's key id is {expected_id})" if expected_id else ""
            raise PoolKeyError(
                f"pool key {self.path} (key id {self.key_id}) is not this pool's key{expected}",
                hint="copy the pool key file from a machine of this pool, or set ACCT_POOL_KEY",
            ) from None


def _aad(table: str, column: str, row: str) -> bytes:
    return f"acct-pool/v1\0{table}\0{column}\0{row}".encode()


def _parse(text: str, path: Path) -> bytes:
    line = text.strip()
    if not line.startswith(_HEADER):
        raise PoolKeyError(f"pool key {path} is not an acct pool key")
    try:
        return base64.b64decode(line[len(_HEADER) :], validate=True)
    except ValueError:
        raise PoolKeyError(f"pool key {path} is damaged (not base64)") from None


def load_key(path: Path) -> PoolKey:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise PoolKeyError(
            f"no pool key at {path}: this machine cannot read the pool's tokens",
            hint="copy the pool key file from a machine of this pool there (or set ACCT_POOL_KEY)",
        ) from None
    except UnicodeDecodeError:
        raise PoolKeyError(f"pool key {path} is not an acct pool key") from None
    except OSError as e:
        raise os_error("read the pool key", path, e) from None
    return PoolKey(_parse(text, path), path)


def create_key(path: Path) -> PoolKey:
    """A new key in a new 0600 file; an existing file is never replaced. Written to a temporary
    file and linked into place, so no reader ever finds half a key."""
    ensure_dir(path.parent)
    raw = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(_HEADER + base64.b64encode(raw).decode("ascii") + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError:
        raise KeyExists(f"a pool key exists already at {path}; acct leaves it as it is") from None
    except OSError as e:
        raise os_error("create the pool key", path, e) from None
    finally:
        tmp.unlink(missing_ok=True)
    return PoolKey(raw, path)


def load_or_create_key(path: Path) -> tuple[PoolKey, bool]:
    """The key at ``path``, made there first when there is none (True: made now). Two processes
    racing here end with the same key: the first link wins, the other loads it."""
    if not path.exists():
        try:
            return create_key(path), True
        except KeyExists:
            pass
    return load_key(path), False

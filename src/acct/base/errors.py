"""The error hierarchy. Each class carries its exit status and a stable code.

Exit statuses (one place, used by the CLI's single error handler):
0 ok, 1 error, 2 usage error, 3 not found, 4 needs login / auth, 5 every account
rate-limited, 6 busy (lock timeout), 7 pool unreachable, 130 interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4
EXIT_ALL_LIMITED = 5
EXIT_BUSY = 6
EXIT_POOL_UNREACHABLE = 7
EXIT_INTERRUPTED = 130


class AcctError(Exception):
    """Base of every error acct reports to the user.

    ``message`` is one line for a person; ``hint`` optionally says the command that fixes it;
    ``code`` is stable for ``--json`` consumers.
    """

    exit_code = EXIT_ERROR
    code = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class UsageError(AcctError):
    exit_code = EXIT_USAGE
    code = "usage"


class NotFound(AcctError):
    exit_code = EXIT_NOT_FOUND
    code = "not_found"


class AuthError(AcctError):
    """Credentials were refused or are missing: the account needs a new login."""

    exit_code = EXIT_AUTH
    code = "auth"


class NeedsLogin(AuthError):
    code = "needs_login"


class AllLimited(AcctError):
    exit_code = EXIT_ALL_LIMITED
    code = "all_limited"


class Busy(AcctError):
    exit_code = EXIT_BUSY
    code = "busy"


class LineageMoved(AcctError):
    """The account's lineage is not the one the caller looked at: someone refreshed or lent it."""

    code = "lineage_moved"


class Interrupted(AcctError):
    exit_code = EXIT_INTERRUPTED
    code = "interrupted"


class CorruptFile(AcctError):
    """A file acct must read does not parse. acct never overwrites such a file."""

    code = "corrupt"


class ConfigError(AcctError):
    code = "config"


class NetworkError(AcctError):
    """The server could not be reached, timed out, or answered 5xx: worth retrying later."""

    code = "network"


class RateLimited(AcctError):
    """An endpoint answered 429 (this says nothing about the account's quota)."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class ProtocolError(AcctError):
    """A server answered something acct does not understand."""

    code = "protocol"


class HeldByTarget(AcctError):
    """The account's refresh-token lineage is lent to a tool's file; acct must not spend it."""

    code = "held"


class PoolError(AcctError):
    """The shared pool (PostgreSQL) refused something: its schema, its key, or a statement."""

    code = "pool"


class PoolUnreachable(PoolError):
    """The pool's database cannot be reached (or refuses the login) within the connect timeout.
    Nothing local is changed when this is raised."""

    exit_code = EXIT_POOL_UNREACHABLE
    code = "pool_unreachable"

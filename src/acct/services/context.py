"""Everything a command needs, built once from the environment and passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from acct.base.config import Config, load_config
from acct.base.endpoints import Endpoints
from acct.base.paths import Paths
from acct.services.state import State
from acct.services.store import Store

if TYPE_CHECKING:
    import httpx

    from acct.services.pool.settings import PoolSettings

USER_AGENT = "acct/0.1"


@dataclass
class Ctx:
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @cached_property
    def paths(self) -> Paths:
        return Paths.from_env(self.env)

    @cached_property
    def endpoints(self) -> Endpoints:
        return Endpoints.from_env(self.env)

    @cached_property
    def config(self) -> Config:
        return load_config(self.paths.config_file)

    @cached_property
    def pool_settings(self) -> PoolSettings | None:
        """The pool when one is configured (``ACCT_POOL`` or ``pool`` in config.toml), else None:
        then everything is local. Standard library only: no psycopg without a pool."""
        from acct.services.pool import settings

        if not self.env.get("ACCT_POOL", "").strip() and self.config.pool is None:
            return None
        return settings.configured(self.env, self.paths)

    @cached_property
    def _backends(self) -> tuple[Any, Any] | None:
        cfg = self.pool_settings
        if cfg is None:
            return None
        from acct.services.pool.backend import backends

        return backends(self.env, self.paths, cfg)

    @cached_property
    def host_id(self) -> str | None:
        """This machine's id in the pool; None without a pool."""
        if self.pool_settings is None:
            return None
        from acct.services.pool import settings

        return settings.host_id(self.env, self.paths)

    @cached_property
    def store(self) -> Store:
        found = self._backends
        return Store(self.paths) if found is None else found[0]

    @cached_property
    def state(self) -> State:
        found = self._backends
        return State(self.paths) if found is None else found[1]

    def http(self, *, timeout: float = 20.0) -> httpx.Client:
        import httpx  # lazy: about 60 ms of start-up that `acct prompt` and `--help` never pay

        from acct.base import wire

        # A refresh's request goes through its courier, which reads the proxy settings itself.
        courier = wire.transport()
        return httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"user-agent": USER_AGENT},
            trust_env=courier is None,
            transport=courier,
        )

"""Everything a command needs, built once from the environment and passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from acct.base.config import Config, load_config
from acct.base.endpoints import Endpoints
from acct.base.paths import Paths
from acct.services.state import State
from acct.services.store import Store

if TYPE_CHECKING:
    import httpx

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
    def store(self) -> Store:
        return Store(self.paths)

    @cached_property
    def state(self) -> State:
        return State(self.paths)

    def http(self, *, timeout: float = 20.0) -> httpx.Client:
        import httpx  # lazy: about 60 ms of start-up that `acct prompt` and `--help` never pay

        return httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"user-agent": USER_AGENT},
            trust_env=True,
        )

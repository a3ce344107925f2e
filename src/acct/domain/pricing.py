"""What traffic would have cost at API prices: the table in ``acct/data/pricing.toml``, with the
config's ``[pricing]`` entries over it. A model takes the price of its longest matching prefix."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from acct.base.config import Price

MILLION = 1_000_000


@dataclass(frozen=True)
class PriceTable:
    date: str
    models: Mapping[str, Price]

    def price(self, model: str | None) -> Price | None:
        if not model:
            return None
        m = model.lower()
        best = max((p for p in self.models if m.startswith(p.lower())), key=len, default=None)
        return self.models[best] if best is not None else None

    def cost(
        self,
        model: str | None,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_creation_tokens: int = 0,
        cache_read_tokens: int = 0,
    ) -> float | None:
        """US dollars; None for a model the table does not know."""
        p = self.price(model)
        if p is None:
            return None
        return (
            input_tokens * p.input
            + output_tokens * p.output
            + cache_creation_tokens * p.cache_write
            + cache_read_tokens * p.cache_read
        ) / MILLION


@cache
def shipped() -> PriceTable:
    """The table acct ships (see its ``date``)."""
    text = resources.files("acct").joinpath("data/pricing.toml").read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    models = {name: Price(**values) for name, values in doc["models"].items()}
    return PriceTable(str(doc["date"]), models)


def table(overrides: Mapping[str, Price] | None = None) -> PriceTable:
    base = shipped()
    if not overrides:
        return base
    return PriceTable(base.date + " (with config overrides)", {**base.models, **overrides})

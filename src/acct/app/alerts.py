"""Alerts (desktop notifications, webhooks): see :func:`on_event`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acct.services.context import Ctx


def on_event(ctx: Ctx, what: str, detail: dict[str, Any]) -> None:
    """Not yet: alerts come in a later step."""

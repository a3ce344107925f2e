"""What follows a change of state: the metrics textfile is rewritten and alerts are checked.

:func:`install` subscribes once per process (``acct.cli.run`` calls it); it costs nothing until
the config asks for a textfile or notifications.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from acct.services import events

if TYPE_CHECKING:
    from acct.services.context import Ctx


def _on_event(ctx: Ctx, what: str, detail: dict[str, Any]) -> None:
    cfg = ctx.config
    if cfg.notify:
        from acct.app import alerts

        alerts.on_event(ctx, what, detail)
    if cfg.metrics_textfile:
        from acct.app.metrics import write_textfile

        write_textfile(ctx)


def install() -> None:
    events.subscribe(_on_event)

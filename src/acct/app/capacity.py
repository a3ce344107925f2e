"""`acct capacity`: the pool's verdict from local facts (the usage cache, benches, live sessions).

No network unless asked to refresh: then stale accounts are polled first, within the usage
endpoint's budget (:func:`acct.services.usage.poll`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from acct.app.views import AccountView, current_views
from acct.domain.capacity import Capacity, PoolAccount, assess

if TYPE_CHECKING:
    from acct.services.context import Ctx
    from acct.services.usage import Progress


def live_sessions(ctx: Ctx) -> Counter[str]:
    """Live `acct exec` sessions per account id (a process check, no network)."""
    from acct.services import procs

    return Counter(r.account_id for r in procs.live(ctx) if r.account_id)


def pool_account(view: AccountView, sessions: int) -> PoolAccount:
    five, seven = view.five_hour, view.seven_day
    return PoolAccount(
        name=view.name,
        state=view.state,
        api_key=view.kind == "api_key",
        five_hour=view.utilization(five),
        seven_day=view.utilization(seven),
        five_hour_resets_at=five.resets_at if five else None,
        seven_day_resets_at=seven.resets_at if seven else None,
        back_at=view.relevant_reset if view.state in ("full", "benched") else None,
        sessions=sessions,
    )


def pool(views: Iterable[AccountView], sessions: Counter[str]) -> list[PoolAccount]:
    return [pool_account(v, sessions.get(v.id, 0)) for v in views]


def capacity(ctx: Ctx, *, refresh: bool = False, progress: Progress | None = None) -> Capacity:
    """The verdict now; ``refresh`` polls stale accounts' usage first."""
    if refresh:
        from acct.services.usage import poll

        poll(ctx, ctx.store.read(), progress=progress)
    now = time.time()
    views = current_views(ctx, now=now)
    cfg = ctx.config
    return assess(
        pool(views, live_sessions(ctx)),
        now=now,
        low=cfg.capacity_low,
        min_headroom=cfg.capacity_min_headroom,
    )

"""The account's ring queues as they stand (docs/api.md, ListQueues): for the console's
view of the calls waiting and of who can take them."""

from __future__ import annotations

import time

from starlette.requests import Request

from orchestrator import apikeys, queue_reads
from orchestrator.api.binding import Value


async def list_queues(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> dict[str, object]:
    """Every queue of the key's account, oldest first: a few pipelined reads in all."""
    queues = await queue_reads.run(
        request.app.state.redis, queue_reads.account_queues(principal.account_id)
    )
    now_ms = int(time.time() * 1000)
    return {"queues": [q.to_wire(now_ms) for q in queues]}

"""B0, the floor: the least a webhook endpoint can do under the same server.

One Starlette POST route, served by uvicorn with the web process's settings, that reads the
body and parses it as `webhooks/signature.py` does (`parse_qsl` into a `FormData`), makes one
Redis write and answers 204. Every figure of the service is read as a ratio to this one, so
the ratios say what the service adds on top of Starlette + uvicorn + one Redis round trip on
this machine, not how fast this machine is.

B0 uses redis-py's asyncio client as it comes, with the web process's timeouts: one command,
one connection checkout; and it leaves the garbage collector as it comes. The service
pipelines its script calls across requests, packs with hiredis and freezes its start-up
objects out of the collector's sight (`orchestrator/scripts.py`, `orchestrator/redis_client.py`,
`orchestrator/cli/app.py`), so its Redis leg can cost less than B0's and its p99 can be lower; a
webhook above 1.0 x B0 means exactly that.

Run: `uvicorn --factory bench.floor:create_app` with REDIS_URL set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

import redis.asyncio
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PATH = "/floor"


async def floor(request: Request) -> Response:
    chunks = [chunk async for chunk in request.stream()]
    form = FormData(parse_qsl(b"".join(chunks).decode(), keep_blank_values=True))
    member = request.query_params.get("member", "")
    await request.app.state.redis.hset(
        f"bench:floor:{member}", "CallStatus", str(form.get("CallStatus", ""))
    )
    return Response(status_code=204)


def create_app() -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Same client settings as orchestrator.cli.app.
        client = redis.asyncio.Redis.from_url(
            os.environ["REDIS_URL"], socket_timeout=5, socket_connect_timeout=2, max_connections=256
        )
        app.state.redis = client
        try:
            yield
        finally:
            await client.aclose()

    return Starlette(routes=[Route(PATH, floor, methods=["POST"])], lifespan=lifespan)

"""The naive design, for comparison: dial Twilio inside the invite request.

The service answers an invite after one Redis script and leaves the dial to a worker. The
obvious alternative calls Twilio's participants create before answering, so the caller waits
for Twilio every time. This app does that with the same pieces as the service (API-key
check, the real `twilio` client pointed at TWILIO_API_BASE_URL, run in Starlette's thread
pool so the event loop stays free, the member written to Redis afterwards) and answers the
SessionInfo as the service does, so the two invite latencies compare the designs.

Twilio's own latency is simulated by the emulator's `mode=delay` fault (docs/emulator.md).

Run: `uvicorn --factory bench.naive:create_app` (env as for `orchestrator web`).
"""

from __future__ import annotations

import json

import redis.asyncio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator import apikeys, callback_urls, keys, store
from orchestrator.api import authn
from orchestrator.cli.app import redis_lifespan
from orchestrator.phone import normalise
from orchestrator.settings import Settings
from workers.twilio_client import make_client


async def invite(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    r: redis.asyncio.Redis = request.app.state.redis
    principal = await authn.authenticate(request)
    sid = request.path_params["sessionId"]
    to = normalise(json.loads(await request.body())["memberToAdd"], settings.phone_region)
    owner, number = await r.hmget(keys.session(sid), "accountId", "_number")
    if owner is None or owner.decode() != principal.account_id:
        return JSONResponse({"message": "no such session"}, status_code=404)
    mid = store.new_id("mem")
    twilio = request.app.state.twilio
    participant = await run_in_threadpool(
        twilio.api.v2010.account.conferences(sid).participants.create,
        from_=(number or b"").decode() or settings.default_caller_id,
        to=to,
        label=mid,
        timeout=30,
        early_media=True,
        end_conference_on_exit=False,
        status_callback=callback_urls.call_status(settings.public_base_url, sid, mid),
        status_callback_method="POST",
    )
    member = keys.member(sid, mid)
    fields = {
        "id": mid,
        "identity": to,
        "displayName": to,
        "role": "Transfer",
        "isOriginalMember": "false",
        "callState": "None",
        "muted": "false",
        "_rank": "0",
        "_hold": "0",
        "_to": to,
        "callSid": participant.call_sid or "",
    }
    pipe = r.pipeline(transaction=True)
    pipe.hset(member, mapping=fields)
    pipe.rpush(keys.session_members(sid), mid)
    pipe.hset(keys.session_active(sid), to, mid)
    await pipe.execute()
    session = await store.get_session(request.app.state.scripts, sid, principal.account_id)
    return Response(session.to_json(), media_type="application/json")


def create_app() -> Starlette:
    settings = Settings.from_env()
    app = Starlette(
        routes=[Route("/sessions/{sessionId}/members", invite, methods=["POST"])],
        lifespan=redis_lifespan(settings),
    )
    app.state.settings = settings
    app.state.twilio = make_client(settings)
    app.state.keys = apikeys.KeyCache()
    return app

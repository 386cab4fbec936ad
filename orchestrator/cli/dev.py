"""`orchestrator dev`: the whole service on one machine with no set-up.

Starts an embedded Redis (unless REDIS_URL is set), the Twilio emulator (which
`orchestrator twilio setup` makes ready for agents' softphones), the web process and
a worker, provisions a demo account with a ring queue (docs/operations.md#ring-queues)
and its agents, registers the agents' softphones at the emulator, and prints what to
try. Each part is a real process, started exactly as an
operator would start it (orchestrator.launch, the launcher the tests and benchmarks
use too); their log lines show in this terminal.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import tempfile
from pathlib import Path

import httpx
import redis

from orchestrator import provision, redis_client, redis_server
from orchestrator.launch import Service, port_in_use, wait_until

DEV_ACCOUNT_SID = "AC" + "de70" * 8
DEMO_NUMBER = "+14155550100"
DEMO_CALLER = "+14155550199"
DEMO_MEMBER = "+14155550123"
DEMO_CUSTOMER = "+14155550142"  # whom the demo agent calls
DEMO_EMAIL = "agent@example.com"
# The demo ring queue: calls to its number ring its two agents at once (ring-all); both are
# Ready and their softphones answer. The demo agent is an agent of it too, logged out
# until they say they are ready.
DEMO_QUEUE = "Support"
DEMO_QUEUE_NUMBER = "+14155550111"
DEMO_QUEUE_CALLER = "+14155550188"
DEMO_QUEUE_AGENTS = (("Sam Support", "sam@example.com"), ("Kim Support", "kim@example.com"))
DEMO_QUEUE_SETTINGS = provision.QueueSettings(strategy="ring-all", wrap_up=5)
# The demo agent's softphone token lives as long as Twilio allows (a day), so that it
# stays registered as long as a dev session runs.
TOKEN_TTL = "86400"
# How long the emulator's callees ring before they answer (or are busy), and before
# one that never answers gives up: slow enough to see Ringing in the console.
RING_SECONDS = "2"
NO_ANSWER_SECONDS = "10"
# Children get this long to stop on Ctrl-C before they are killed.
STOP_SECONDS = 8


def run(port: int = 8000) -> int:
    """Run until Ctrl-C (0) or until one of the processes exits (1); 2 if `port` is taken."""
    # Before anything starts or is printed: a second `orchestrator dev` would otherwise
    # print a banner with a fresh key for a web process that can never listen.
    if port_in_use(port):
        print(
            f"orchestrator dev: port {port} is already in use (another `orchestrator dev`?); "
            f"stop what serves it, or choose another port with --port",
            file=sys.stderr,
        )
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="orchestrator-dev-"))
    embedded = None
    service: Service | None = None

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    # Both, explicitly: a shell that starts us in the background leaves SIGINT ignored,
    # and Python then never turns Ctrl-C into KeyboardInterrupt.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        redis_url = os.environ.get("REDIS_URL", "").strip()
        if not redis_url:
            embedded = redis_server.start(workdir / "redis")
            redis_url = embedded.url
        # No workdir: the children's lines go to this terminal, not to log files.
        service = Service(
            redis_url,
            account_sid=os.environ.get("TWILIO_ACCOUNT_SID") or DEV_ACCOUNT_SID,
            port=port,
            settings={
                "TWILIO_CPS": os.environ.get("TWILIO_CPS", "10"),
                # One metrics directory for the web and the worker, new with each run.
                "METRICS_DIR": os.environ.get("METRICS_DIR") or str(workdir / "metrics"),
                "ACCESS_TOKEN_TTL": os.environ.get("ACCESS_TOKEN_TTL", TOKEN_TTL),
            },
        )
        emulator_args = ("--ring-seconds", RING_SECONDS, "--no-answer-seconds", NO_ANSWER_SECONDS)
        service.start(workers=1, emulator_args=emulator_args)

        r = redis_client.connect_sync(redis_url)
        account = provision.create_account(r, "Demo")
        provision.add_number(r, DEMO_NUMBER, account)
        user = provision.add_user(r, DEMO_EMAIL, account, name="Demo Agent")
        # The demo key acts as the demo user: what it does is logged as "Demo Agent ...".
        key = provision.create_key(r, account, ["User"], user=user)
        register_softphone(service, key)
        queue = provision.create_queue(r, account, DEMO_QUEUE, DEMO_QUEUE_SETTINGS)
        provision.add_number(r, DEMO_QUEUE_NUMBER, account, queue_id=queue)
        agents = tuple(
            queue_agent(service, r, account, queue, name, email)
            for name, email in DEMO_QUEUE_AGENTS
        )
        provision.add_agent(r, queue, user)
        text = banner(
            service.base_url, service.emulator_url, redis_url, account, user, key, queue, agents
        )
        print(text, flush=True)
        processes = list(service.processes.values())
        exited = wait_until(
            lambda: [p.name for p in processes if not p.alive()], math.inf, "a process to exit", 0.5
        )
        print(f"orchestrator dev: {', '.join(exited)} exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr)
        return 0
    except (RuntimeError, TimeoutError) as exc:  # a part did not start
        print(f"orchestrator dev: {exc}", file=sys.stderr)
        return 1
    finally:
        # The web and the worker first: they need Redis to shut down cleanly.
        if service is not None:
            service.stop_all(STOP_SECONDS)
        if embedded is not None:
            embedded.stop()


def queue_agent(
    service: Service, r: redis.Redis, account: str, queue: str, name: str, email: str
) -> str:
    """A demo agent of the queue: a user whose softphone is registered and answers, Ready
    (set as the agent would set it, through the API); their user id."""
    uid = provision.add_user(r, email, account, name=name)
    key = provision.create_key(r, account, ["User"], user=uid)
    provision.add_agent(r, queue, uid)
    register_softphone(service, key)
    set_agent_state(service, key, "Ready")
    return uid


def set_agent_state(service: Service, key: str, state: str) -> None:
    """SetAgentState for the key's user; RuntimeError (the dev run stops) if refused."""
    with httpx.Client(timeout=10, trust_env=False) as http:
        try:
            answer = http.patch(
                f"{service.base_url}/app/agent-state",
                headers={"Authorization": f"Bearer {key}"},
                json={"agentState": state},
            )
        except httpx.HTTPError as exc:
            raise RuntimeError(f"setting a demo agent {state}: {exc}") from None
    if answer.status_code != 200:
        raise RuntimeError(f"SetAgentState answered {answer.status_code}: {answer.text}")


def register_softphone(service: Service, key: str, answer: str = "answer") -> str:
    """The key's user's softphone registers at the emulator, as Twilio's Voice SDK does
    with the access token GetAppConfig gives it; its identity. RuntimeError (the dev run
    stops, saying why) if either refuses."""
    with httpx.Client(timeout=10, trust_env=False) as http:
        try:
            config = http.get(
                f"{service.base_url}/app/config", headers={"Authorization": f"Bearer {key}"}
            )
            if config.status_code != 200:
                raise RuntimeError(f"GetAppConfig answered {config.status_code}: {config.text}")
            registered = http.post(
                f"{service.emulator_url}/_emulator/softphones",
                data={"AccessToken": config.json()["accessToken"], "Answer": answer},
            )
        except httpx.HTTPError as exc:
            raise RuntimeError(f"registering a demo agent's softphone: {exc}") from None
        if registered.status_code != 201:
            raise RuntimeError(
                f"the emulator refused the softphone ({registered.status_code}): {registered.text}"
            )
    return registered.json()["identity"]


def banner(
    base: str,
    emulator: str,
    redis_url: str,
    account: str,
    user: str,
    key: str,
    queue: str = "que_demo",
    queue_agents: tuple[str, ...] = ("usr_sam", "usr_kim"),
) -> str:
    """What to try, as commands to paste: every one of them runs as printed. `queue` and
    `queue_agents` are the demo queue's id and its agents' user ids (as DEMO_QUEUE_AGENTS
    names them); the defaults only stand in for them where the text alone is looked at."""
    auth = f'-H "Authorization: Bearer {key}"'
    json = "-H 'Content-Type: application/json'"
    names = [name for name, _ in DEMO_QUEUE_AGENTS]
    queue_agents = ", ".join(
        f"{uid} ({name})" for uid, name in zip(queue_agents, names, strict=True)
    )
    strategy = DEMO_QUEUE_SETTINGS.strategy
    return f"""
Conference orchestrator (dev) is running.

  API             {base}
  Twilio emulator {emulator}
  Redis           {redis_url}
  demo account    {account}   number {DEMO_NUMBER}   user {user} ({DEMO_EMAIL})
  API key         {key}   (acts as the demo user, "Demo Agent")
  demo queue      {DEMO_QUEUE} ({strategy})   id {queue}   number {DEMO_QUEUE_NUMBER}
  queue agents    {queue_agents}: Ready, their softphones answer
  console         {base}/console#key={key}

Open the console in a browser: it shows the account's calls live as the steps
below change them, and has buttons for the same steps; the demo agent's state
with a switch (Ready, Not ready, Logged out), the calls a queue rings them for,
and the calls waiting in the demo queue.

Try it: a customer calls the demo number, then we invite the demo agent
({DEMO_EMAIL}) into the call.

  SESSION=$(curl -s -H 'Accept: text/plain' -X POST {emulator}/_emulator/incoming \\
      --data-urlencode From={DEMO_CALLER} --data-urlencode To={DEMO_NUMBER})
  curl -s -X POST {base}/sessions/$SESSION/members {auth} \\
      {json} -d '{{"memberToAdd": "{DEMO_EMAIL}"}}'
  curl -s {base}/sessions/$SESSION {auth}

Run the last command again (or watch the console): the demo agent goes Ringing,
then Connected after ~{RING_SECONDS} s. The same changes stream live, as server-sent events:

  curl -N {base}/sessions/events {auth}

The emulator plays each callee by its address:
  a number ending 0001   rings, then is busy
  a number ending 0002   rings and is never answered (no-answer after {NO_ANSWER_SECONDS} s)
  a number ending 0003   fails (the call cannot be placed)
  a number ending 0004   is refused by Twilio at once (error 21211, not dialable)
  any other number       rings for {RING_SECONDS} s and answers
  a user (client:<id>)   rings the softphone registered under that identity, which
                         answers, declines or ignores as it registered (the demo
                         agent's answers); with none registered, rings unanswered
                         (no-answer after {NO_ANSWER_SECONDS} s)
A callee hangs up with: curl -s -X POST {emulator}/_emulator/calls/<CallSid>/hangup
(the CallSid is the member's callSid in the session).

A warm transfer, once the agent is Connected: hold the customer, bring in a
colleague, the agent leaves, the customer is taken off hold with the colleague.

  curl -s -X POST {base}/sessions/$SESSION/hold {auth} {json} -d '{{"reason": "Transferring"}}'
  curl -s -X POST {base}/sessions/$SESSION/members {auth} \\
      {json} -d '{{"memberToAdd": "{DEMO_MEMBER}"}}'
  curl -s -X DELETE {base}/sessions/$SESSION/members/{DEMO_EMAIL} {auth}
  curl -s -X PATCH {base}/sessions/$SESSION {auth} {json} -d '{{"callState": "Connected"}}'

(wait for the colleague to be Connected before the last two).

End the call: the conference ends and every leg is hung up.

  curl -s -X DELETE {base}/sessions/$SESSION {auth}

An agent's own call: the demo agent's softphone, registered at the emulator with
the token GetAppConfig gave it (identity {user}), calls a customer. The service
opens an outgoing session, puts the agent in its conference, then dials the
number; the answer's conferenceName is the session's id.

  curl -s -X POST {emulator}/_emulator/softphones/{user}/calls \\
      --data-urlencode To={DEMO_CUSTOMER}
  curl -s {base}/sessions/my {auth}

Click to call, for an agent away from the softphone's dial pad: the service rings
the agent's softphone first, then dials the number once the agent is in the call.

  curl -s -X POST {base}/sessions/outgoing {auth} \\
      {json} -d '{{"numberToDial": "{DEMO_CUSTOMER}"}}'

A ring queue: calls to {DEMO_QUEUE_NUMBER} wait in the queue "{DEMO_QUEUE}" ({strategy}),
which rings every free agent who is Ready at once: {names[0]} and {names[1]}. The
first to answer takes the call and the other's offer is withdrawn. The demo agent is
an agent of the queue too, but logged out: nothing rings for them yet. A customer
calls the queue; the queues show the call waiting; then the session, its queue fields:

  SESSION=$(curl -s -H 'Accept: text/plain' -X POST {emulator}/_emulator/incoming \\
      --data-urlencode From={DEMO_QUEUE_CALLER} --data-urlencode To={DEMO_QUEUE_NUMBER})
  curl -s {base}/queues {auth}
  curl -s {base}/sessions/$SESSION {auth} \\
      | grep -oE '"(queueState|queueMemberId|answeredByName)":("[^"]*"|null)'

Run the last command again after ~{RING_SECONDS} s: queueState Connected, and queueMemberId the
queue agent who took the call. When it ends, that agent is in WrapUp for
{DEMO_QUEUE_SETTINGS.wrap_up} s, then Ready again.

The demo agent sets their own state (Ready, NotReady or LoggedOut; the console's
switch does the same). Ready, they are offered the queue's next call along with
the others: their softphone rings and the console shows the offer.

  curl -s -X PATCH {base}/app/agent-state {auth} \\
      {json} -d '{{"agentState": "Ready"}}'

Every operation is described at {base}/openapi.json. Ctrl-C stops everything.
"""

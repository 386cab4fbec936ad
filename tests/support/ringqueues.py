"""Ring queues as the operator sets them up and agents staff them (docs/queues.md): a
queue with its number, agents with their keys, their softphones at the emulator and
their state, and what the tests read of a queue's calls."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from orchestrator import keys, provision, redis_client
from orchestrator.launch import wait_until
from tests.support.accounts import random_number
from tests.support.stack import Stack


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    key: str


@dataclass
class RingQueue:
    stack: Stack
    account: str
    id: str
    number: str
    key: str  # a key of no user, for the account's sessions
    agents: list[Agent] = field(default_factory=list)

    def agent(self, name: str, answer: str = "answer", state: str = "Ready") -> Agent:
        """A new user of the account, agent of the queue, with a softphone that takes calls
        as `answer` says, in `state`."""
        r = redis_client.connect_sync(self.stack.redis_url)
        email = f"{name.lower()}-{secrets.token_hex(3)}@example.com"
        uid = provision.add_user(r, email, self.account, name=name)
        agent = Agent(uid, name, provision.create_key(r, self.account, ["User"], user=uid))
        provision.add_agent(r, self.id, uid)
        self.stack.softphone(agent.key, answer)
        if state != "LoggedOut":
            set_state(self.stack, agent, state)
        self.agents.append(agent)
        return agent

    def sibling(self, name: str, **settings: Any) -> RingQueue:
        """Another queue of the same account, with a number of its own."""
        r = redis_client.connect_sync(self.stack.redis_url)
        qid = provision.create_queue(r, self.account, name, provision.QueueSettings(**settings))
        number = provision.add_number(r, random_number(), self.account, queue_id=qid)
        return RingQueue(self.stack, self.account, qid, number, self.key)

    def join(self, agent: Agent) -> None:
        """An agent of another queue of the account becomes one of this one's too."""
        provision.add_agent(redis_client.connect_sync(self.stack.redis_url), self.id, agent.id)
        self.agents.append(agent)

    def call(self) -> str:
        """A customer calls the queue's number: the session's id."""
        return self.stack.incoming_call(random_number(), self.number)["conferenceName"]

    def session(self, sid: str) -> dict[str, Any]:
        with self.stack.client(self.key) as c:
            response = c.get(f"/sessions/{sid}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, sid: str, check: Any, what: str, timeout: float = 20) -> dict[str, Any]:
        """The session once `check(session)` holds."""

        def ready() -> dict[str, Any] | None:
            session = self.session(sid)
            return session if check(session) else None

        return wait_until(ready, timeout, what)

    def offers(self, sid: str) -> list[dict[str, str]]:
        """The session's offers (members a queue added), oldest first, as Redis holds them."""
        r = self.stack.redis
        found = []
        for mid in r.lrange(keys.session_members(sid), 0, -1):
            m = r.hgetall(keys.member(sid, mid))
            if m.get("_offer"):
                found.append({"id": mid, **m})
        return found


def new_queue(stack: Stack, **settings: Any) -> RingQueue:
    """A fresh account with a queue (settings as `queues create` takes them) and a number
    whose calls go to it."""
    r = redis_client.connect_sync(stack.redis_url)
    account = provision.create_account(r, "Queue Co")
    qid = provision.create_queue(r, account, "Support", provision.QueueSettings(**settings))
    number = provision.add_number(r, random_number(), account, queue_id=qid)
    return RingQueue(stack, account, qid, number, provision.create_key(r, account, ["User"]))


def set_state(stack: Stack, agent: Agent, state: str) -> dict[str, Any]:
    """The agent sets their state (SetAgentState)."""
    with stack.client(agent.key) as c:
        response = c.patch("/app/agent-state", json={"agentState": state})
    assert response.status_code == 200, response.text
    return response.json()


def agent_state(stack: Stack, agent: Agent) -> tuple[str, str]:
    user = stack.redis.hgetall(keys.user(agent.id))
    return user.get("agentState", "LoggedOut"), user.get("agentStateReason", "Unknown")


def busy(stack: Stack, agent: Agent) -> bool:
    """Whether the agent has a leg in any session (reserved, ringing, in a call)."""
    return stack.redis.scard(keys.user_sessions(agent.id)) > 0

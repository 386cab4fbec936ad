"""Ring queues (docs/queues.md): a call to a queue's number is offered to its free agents
by the queue's strategy; the first agent whose leg connects takes it and every other
offer is withdrawn; nobody rings in vain and nobody is left reserved, ringing or in
wrap-up. Real processes throughout: the emulator's softphones answer, decline or ignore.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rq.job import Job

from orchestrator import keys, provision, redis_client
from orchestrator.jobs import job_id
from orchestrator.launch import wait_until
from tests.support import queues
from tests.support.ringqueues import RingQueue, agent_state, busy, new_queue, set_state
from tests.support.stack import Stack, private_stack
from tests.support.webhooks import post


@pytest.fixture(scope="module")
def qstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of the module's own, with two workers: offers ring together."""
    with private_stack(tmp_path_factory.mktemp("queues"), workers=2) as stack:
        yield stack


def connected_agents(q: RingQueue, sid: str) -> list[str]:
    return [
        m["identity"]
        for m in q.session(sid)["members"]
        if m["role"] == "Agent" and m["callState"] == "Connected"
    ]


def settled(q: RingQueue, sid: str) -> bool:
    """Every offer is over but the winner's."""
    s = q.session(sid)
    live = [o for o in q.offers(sid) if o.get("_rank") != "3"]
    return len(live) == 1 and live[0]["endpointId"] == s["queueMemberId"]


def test_ring_all_the_first_to_answer_takes_the_call(qstack: Stack) -> None:
    q = new_queue(qstack, strategy="ring-all", wrap_up=1)
    agents = [q.agent(name) for name in ("Ann", "Ben", "Cat")]
    sid = q.call()
    s = q.wait(sid, lambda s: s["queueState"] == "Connected", "an agent took the call")
    assert s["ringQueueId"] == q.id
    winner = s["queueMemberId"]
    assert winner in {a.id for a in agents} and s["answeredById"] == winner
    # All three answered at once: one took the call, the two others were taken off it.
    wait_until(lambda: settled(q, sid), 15, "the other offers over")
    assert connected_agents(q, sid) == [winner]
    log = [e["message"] for e in q.session(sid)["log"]]
    assert sum("took the call" in m and "withdrawn" not in m for m in log) == 1
    losers = [a for a in agents if a.id != winner]
    for loser in losers:
        wait_until(lambda a=loser: not busy(qstack, a), 15, f"{loser.name} free")
        assert agent_state(qstack, loser) == ("Ready", "SetByUser")  # no wrap-up, no miss
        assert qstack.redis.hget(keys.user(loser.id), "_misses") in (None, "0")

    # The caller hangs up: the winner wraps up, then is Ready again by themselves.
    caller = qstack.redis.hget(keys.session(sid), "callSid")
    qstack.emulator(f"calls/{caller}/hangup", "POST")
    won = next(a for a in agents if a.id == winner)
    wait_until(lambda: agent_state(qstack, won)[0] == "WrapUp", 15, "wrap-up")
    wait_until(lambda: agent_state(qstack, won) == ("Ready", "SetBySystem"), 15, "ready again")
    assert q.session(sid)["outcome"] == "Completed"


def test_linear_offers_one_agent_at_a_time_in_order(qstack: Stack) -> None:
    q = new_queue(qstack, strategy="linear", ring_timeout=5)
    first = q.agent("Dee", answer="decline")
    second = q.agent("Eve", answer="answer")
    sid = q.call()
    s = q.wait(sid, lambda s: s["queueState"] == "Connected", "the second agent took it")
    assert s["queueMemberId"] == second.id
    offers = q.offers(sid)
    assert [o["endpointId"] for o in offers] == [first.id, second.id]
    # The decline was a miss, and the next agent was offered at once, not after the ring.
    assert qstack.redis.hget(keys.user(first.id), "_misses") == "1"
    # Each offer's phone rings for the queue's ring timeout, not a dial's usual 30 s.
    for o in offers:
        record = qstack.emulator(f"calls/{o['callSid']}").json()
        create = next(r for r in record["requests"] if r["operation"] == "CreateParticipant")
        assert create["params"]["Timeout"] == "5"


def test_an_agent_who_lets_offers_ring_out_is_offered_the_next_agent_then_goes_not_ready(
    qstack: Stack,
) -> None:
    q = new_queue(qstack, strategy="linear", ring_timeout=5, max_misses=1)
    sleepy = q.agent("Fay", answer="ignore")
    awake = q.agent("Gus", answer="answer")
    sid = q.call()
    s = q.wait(sid, lambda s: s["queueState"] == "Connected", "after the ring timeout", 25)
    assert s["queueMemberId"] == awake.id
    assert agent_state(qstack, sleepy) == ("NotReady", "MissedCall")
    log = [e["message"] for e in s["log"]]
    # Twilio gave up on the ringing leg (no-answer), or the queue's ring round ended first.
    assert any(m.startswith("Fay did not answer") for m in log), "\n".join(log)


def test_the_caller_hanging_up_withdraws_every_offer(qstack: Stack) -> None:
    q = new_queue(qstack, strategy="ring-all")
    agents = [q.agent(name, answer="ignore") for name in ("Hal", "Ivy")]
    sid = q.call()
    wait_until(lambda: len([o for o in q.offers(sid) if o.get("callSid")]) == 2, 15, "both ringing")
    assert q.session(sid)["queueState"] == "Ringing"
    caller = qstack.redis.hget(keys.session(sid), "callSid")
    qstack.emulator(f"calls/{caller}/hangup", "POST")
    s = q.wait(sid, lambda s: s["ended"], "ended")
    assert s["outcome"] == "Abandoned" and s["wasMissed"] is True
    assert s["queueState"] == "Disconnected"
    for agent in agents:
        wait_until(lambda a=agent: not busy(qstack, a), 15, f"{agent.name} free")
        assert agent_state(qstack, agent) == ("Ready", "SetByUser")
    for offer in q.offers(sid):
        wait_until(
            lambda o=offer: qstack.emulator(f"calls/{o['callSid']}").json()["status"] == "canceled",
            15,
            "the offer's ringing leg cancelled",
        )


def test_with_nobody_available_the_call_overflows_at_once(qstack: Stack) -> None:
    overflow = "+14155550177"
    q = new_queue(qstack, overflow=overflow)
    q.agent("Jo", state="LoggedOut")
    sid = q.call()
    s = q.wait(sid, lambda s: any(m["identity"] == overflow for m in s["members"]), "overflow")
    assert s["queueState"] == "Disconnected" and not s["ended"]
    assert q.offers(sid) == []


def test_with_nobody_available_and_no_overflow_the_call_is_missed(qstack: Stack) -> None:
    q = new_queue(qstack)
    q.agent("Kim", state="NotReady")
    sid = q.call()
    s = q.wait(sid, lambda s: s["ended"], "ended")
    assert s["outcome"] == "Missed" and s["wasMissed"] is True


def test_an_agent_is_offered_one_call_at_a_time(qstack: Stack) -> None:
    q = new_queue(qstack, strategy="ring-all", ring_timeout=30)
    only = q.agent("Lou", answer="ignore")
    first, second = q.call(), q.call()
    wait_until(lambda: len(q.offers(first)) == 1, 15, "the first call offered")
    assert q.offers(second) == []
    assert q.session(second)["queueState"] == "Queued"
    assert busy(qstack, only)


def offered_agents(q: RingQueue, sid: str) -> list[str]:
    return [o["endpointId"] for o in q.offers(sid)]


def hang_up_caller(q: RingQueue, sid: str) -> None:
    caller = q.stack.redis.hget(keys.session(sid), "callSid")
    q.stack.emulator(f"calls/{caller}/hangup", "POST")


def answered_then_over(q: RingQueue, sid: str) -> str:
    """The agent who took the call, once the caller hung up and the call is over."""
    s = q.wait(sid, lambda s: s["queueState"] == "Connected", "an agent took the call")
    hang_up_caller(q, sid)
    q.wait(sid, lambda s: s["ended"], "ended")
    return s["queueMemberId"]


def test_round_robin_starts_after_the_agent_who_took_the_last_call(qstack: Stack) -> None:
    q = new_queue(qstack, strategy="round-robin", wrap_up=0)
    agents = [q.agent(name) for name in ("Ora", "Pat", "Quin")]
    takers = []
    for _ in range(4):
        sid = q.call()
        takers.append(answered_then_over(q, sid))
        wait_until(lambda: all(not busy(qstack, a) for a in agents), 15, "everyone free")
        wait_until(
            lambda: all(agent_state(qstack, a)[0] == "Ready" for a in agents), 15, "all Ready"
        )
    ids = [a.id for a in agents]
    assert takers == [ids[0], ids[1], ids[2], ids[0]]


def test_longest_idle_offers_the_agent_idle_longest_first(qstack: Stack) -> None:
    q = new_queue(qstack, strategy="longest-idle", wrap_up=0)
    first = q.agent("Rex", state="NotReady")
    second = q.agent("Sue", state="NotReady")
    set_state(qstack, second, "Ready")  # idle since now
    set_state(qstack, first, "Ready")  # idle since a moment later
    sid = q.call()
    assert answered_then_over(q, sid) == second.id
    wait_until(
        lambda: agent_state(qstack, second)[0] == "Ready" and not busy(qstack, second), 15, "free"
    )
    # Sue just wrapped up: Rex has now been idle longest.
    sid = q.call()
    assert answered_then_over(q, sid) == first.id


def test_after_the_longest_wait_the_call_goes_to_the_overflow(qstack: Stack) -> None:
    overflow = "+14155550178"
    q = new_queue(qstack, strategy="ring-all", max_wait=2, overflow=overflow)
    q.agent("Tom", answer="ignore")
    sid = q.call()
    s = q.wait(sid, lambda s: any(m["identity"] == overflow for m in s["members"]), "overflow")
    assert s["queueState"] == "Disconnected"
    s = q.wait(
        sid,
        lambda s: (
            next(m for m in s["members"] if m["identity"] == overflow)["callState"] == "Connected"
        ),
        "the overflow connected",
    )
    assert not s["ended"]
    assert any("withdrawn" in e["message"] or "did not answer" in e["message"] for e in s["log"])


def test_a_progressive_dial_waits_in_the_queue_once_the_customer_answers(qstack: Stack) -> None:
    q = new_queue(qstack, strategy="ring-all")
    agent = q.agent("Una")
    dialler = q.agent("Vic", state="NotReady")  # places the call, takes none
    customer = "+14155550179"
    with qstack.client(dialler.key) as c:
        placed = c.post("/sessions/outgoing", json={"numberToDial": customer, "flowId": q.id})
    assert placed.status_code == 200, placed.text
    sid = placed.json()["id"]
    assert [m["identity"] for m in placed.json()["members"]] == [customer]
    s = q.wait(sid, lambda s: s["queueState"] == "Connected", "the agent took the call")
    assert s["direction"] == "Outgoing" and s["queueMemberId"] == agent.id
    log = [e["message"] for e in s["log"]]
    assert log.index("Waiting in queue Support") > next(
        i for i, m in enumerate(log) if m.endswith("answered")
    )
    placed_calls = qstack.emulator("calls").json()["calls"]
    leg = next(c for c in placed_calls if c["to"] == customer and c["conferenceName"] == sid)
    create = next(r for r in leg["requests"] if "StartConferenceOnEnter" in r["params"])
    assert create["params"]["StartConferenceOnEnter"] in ("false", ["false"])


def test_an_agent_of_two_queues_is_offered_one_call_when_both_ring_at_once(
    qstack: Stack,
) -> None:
    support = new_queue(qstack, strategy="ring-all", ring_timeout=30)
    shared = support.agent("Wes", answer="ignore")
    sales = support.sibling("Sales", strategy="ring-all", ring_timeout=30)
    sales.join(shared)
    with ThreadPoolExecutor(2) as pool:
        sids = list(pool.map(lambda q: q.call(), [support, sales]))
    pairs = list(zip((support, sales), sids, strict=True))

    def offers() -> list[dict[str, str]]:
        return [o for q, sid in pairs for o in q.offers(sid)]

    wait_until(lambda: len(offers()) >= 1, 15, "an offer")
    assert len(offers()) == 1 and offers()[0]["endpointId"] == shared.id
    assert qstack.redis.scard(keys.user_sessions(shared.id)) == 1
    waiting = [q.session(sid)["queueState"] for q, sid in pairs]
    assert sorted(waiting) == ["Queued", "Ringing"]


# --- races ---------------------------------------------------------------------------------


def nothing_stuck(q: RingQueue, sid: str) -> None:
    """Once the call is over: no agent of the queue reserved, ringing or on it, none left
    in WrapUp past its wrap-up, and the conference has nobody in it."""
    q.wait(sid, lambda s: s["ended"], "the call over")
    for agent in q.agents:
        wait_until(lambda a=agent: not busy(q.stack, a), 15, f"{agent.name} free")
        wait_until(
            lambda a=agent: agent_state(q.stack, a)[0] in ("Ready", "NotReady"),
            15,
            f"{agent.name} out of wrap-up",
        )
    legs = [c for c in q.stack.emulator("calls").json()["calls"] if c["conferenceName"] == sid]
    wait_until(
        lambda: all(
            q.stack.emulator(f"calls/{c['sid']}").json()["status"]
            in ("completed", "canceled", "no-answer", "busy", "failed")
            for c in legs
        ),
        15,
        "every leg over",
    )


def test_an_agent_answering_as_the_caller_hangs_up_leaves_nothing_stuck(qstack: Stack) -> None:
    q = new_queue(qstack, strategy="ring-all", wrap_up=1)
    for name in ("Xan", "Yul"):
        q.agent(name)
    for _ in range(5):
        sid = q.call()
        # The callees answer 0.1 s after they ring: hang up just as they do.
        wait_until(lambda s=sid: any(o.get("callSid") for o in q.offers(s)), 15, "ringing")
        hang_up_caller(q, sid)
        nothing_stuck(q, sid)
        s = q.session(sid)
        assert s["outcome"] in ("Abandoned", "Completed"), s["outcome"]
        assert s["queueState"] in ("Disconnected", "Connected")


@pytest.fixture
def slow_phones(tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own (its own Redis: no other stack's worker takes its dials) whose
    callees answer after 5 s."""
    with private_stack(tmp_path, workers=2, emulator_args=("--ring-seconds", "5")) as stack:
        yield stack


@pytest.fixture
def lone(tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own with one worker, for a test that kills it; a job may take 10 s
    (so a Twilio request 2 s)."""
    env = {"DIAL_JOB_TIMEOUT": "10", "DIAL_RETRY_BACKOFF": "0,1,1"}
    with private_stack(tmp_path, env=env) as stack:
        yield stack


def test_an_agent_answering_as_the_ring_round_ends_is_taken_or_withdrawn_cleanly(
    slow_phones: Stack,
) -> None:
    """The agent's phone answers after 5 s, the queue's ring round is 5 s: either the
    agent takes the call, or the offer is withdrawn and the call offered again; never
    two agents on it, never an agent left on a call that has none."""
    stack = slow_phones
    q = new_queue(stack, strategy="ring-all", ring_timeout=5, wrap_up=0, max_misses=5)
    agents = [q.agent(name) for name in ("Zed", "Abe")]
    sid = q.call()
    s = q.wait(sid, lambda s: s["queueState"] == "Connected", "an agent took the call", 40)
    try:
        wait_until(lambda: settled(q, sid), 20, "every other offer over")
    except TimeoutError:
        raise AssertionError(
            (q.offers(sid), [e["message"] for e in q.session(sid)["log"]])
        ) from None
    assert connected_agents(q, sid) == [s["queueMemberId"]]
    assert s["queueMemberId"] in {a.id for a in agents}
    hang_up_caller(q, sid)
    nothing_stuck(q, sid)


def test_a_worker_killed_while_offering_leaves_no_call_waiting(lone: Stack) -> None:
    # Twilio takes 1.5 s to answer the offer's create, and the kill lands while it is in
    # flight.
    stack = lone
    q = new_queue(stack, strategy="ring-all", ring_timeout=30)
    agent = q.agent("Bea")
    stack.emulator("faults", "POST", data={"mode": "delay", "seconds": "1.5", "count": "1"})
    sid = q.call()
    # The create is at Twilio, which holds it: the dial is in flight.
    wait_until(lambda: stack.emulator("faults").json()["served"] >= 1, 15, "the create held")
    stack.processes["worker"].kill()
    stack.start("worker", "-m", "orchestrator", "worker")
    s = q.wait(sid, lambda s: s["queueState"] == "Connected", "the call taken after all", 40)
    assert s["queueMemberId"] == agent.id
    assert connected_agents(q, sid) == [agent.id]
    offer = q.offers(sid)[0]
    # The dial job the kill cut short is found abandoned and retried; the retry finds the
    # leg its first attempt placed.
    rq = redis_client.connect_sync(stack.redis_url)
    wait_until(lambda: queues.job_over(rq, job_id(offer["id"])), 40, "the offer's job over")
    left = stack.redis.hget(Job.key_for(job_id(offer["id"])), "retries_left")
    assert int(left) < 3, "the kill did not land mid-dial: this proved nothing"
    assert stack.creates(offer["id"]) == 1  # retried, and dialled once


def test_a_queued_caller_waits_with_hold_music_until_an_agent_starts_the_conference(
    qstack: Stack,
) -> None:
    q = new_queue(qstack)
    q.agent("Di", answer="ignore")
    form = {"CallSid": "CA" + "5" * 32, "From": "+14155550182", "To": q.number}
    twiml = post(qstack, "/twilio/voice", form).text
    assert 'startConferenceOnEnter="false"' in twiml and 'endConferenceOnExit="true"' in twiml
    sid = qstack.redis.get(keys.call(form["CallSid"])).split()[0]
    assert q.session(sid)["queueState"] in ("Queued", "Ringing")


def test_an_agent_is_not_offered_a_call_before_their_last_leg_is_down(qstack: Stack) -> None:
    """EndSession ends the session at once and the legs a moment later: the agent is
    busy until theirs is down (then wraps up), not offered the next call meanwhile."""
    q = new_queue(qstack, strategy="ring-all", wrap_up=1)
    q.agent("Eli")
    first = q.call()
    q.wait(first, lambda s: s["queueState"] == "Connected", "the first call taken")
    with qstack.client(q.key) as c:
        assert c.delete(f"/sessions/{first}").status_code == 204
    second = q.call()
    q.wait(second, lambda s: s["queueState"] == "Connected", "the second call taken", 30)

    def when(sid: str, text: str) -> str:
        return next(e["date"] for e in q.session(sid)["log"] if text in e["message"])

    left = wait_until(lambda: when(first, "Eli left"), 15, "the first leg down")
    assert when(second, "Offered to Eli") >= left


def test_each_queue_keeps_its_free_agents_and_the_sweep_mends_a_set_gone_wrong(
    qstack: Stack,
) -> None:
    """A queue reads only its free agents (Ready, with no leg anywhere), from a set the
    scripts keep as the agent's state and calls change, in every queue of theirs; a set
    that disagrees with its agents (lost, or older than the code) is mended by the sweep,
    and the call it held up is offered."""
    q = new_queue(qstack, strategy="longest-idle", wrap_up=0)
    other = q.sibling("Sales", strategy="ring-all")
    ivy = q.agent("Ivy")
    other.join(ivy)
    r = redis_client.connect_sync(qstack.redis_url)

    def free(queue: RingQueue) -> set[str]:
        return set(qstack.redis.zrange(keys.queue_free(queue.id), 0, -1))

    assert free(q) == free(other) == {ivy.id}
    set_state(qstack, ivy, "NotReady")
    assert free(q) == free(other) == set()
    set_state(qstack, ivy, "Ready")
    provision.remove_agent(r, other.id, ivy.id)
    assert (free(q), free(other)) == ({ivy.id}, set())
    provision.add_agent(r, other.id, ivy.id)
    assert free(q) == free(other) == {ivy.id}

    # Both sets forget Ivy: the call waits for her (she is Ready), until the sweep's look
    # at the queue puts her back and offers it.
    qstack.redis.delete(keys.queue_free(q.id), keys.queue_free(other.id))
    sid = q.call()
    s = q.wait(sid, lambda s: s["queueState"] == "Connected", "the call taken once mended")
    assert s["queueMemberId"] == ivy.id
    assert free(q) == free(other) == set()  # on a call: free in neither queue
    caller = qstack.redis.hget(keys.session(sid), "callSid")
    qstack.emulator(f"calls/{caller}/hangup", "POST")
    wait_until(lambda: free(q) == free(other) == {ivy.id}, 15, "Ivy free again in both")

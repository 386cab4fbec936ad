"""Faults injected for real: workers SIGKILLed mid-dial, Redis restarted under
load, Twilio failing, many workers sharing one dial rate. Each test runs its
own Redis and processes, so it can break them."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from rq.job import Job

from orchestrator import jobs, keys, redis_client, redis_server
from orchestrator.launch import wait_until
from tests.support.accounts import new_account, random_number
from tests.support.stack import OwnStacks, Stack
from workers import worker


def _member_ids(stack: Stack) -> dict[str, dict[str, str]]:
    """Every invited (non-caller) member: id -> its stored hash."""
    r = stack.redis
    members = {}
    for key in r.scan_iter(keys.member("*", "*")):
        fields = r.hgetall(key)
        if fields.get("role") != "Caller":
            members[fields["id"]] = {**fields, "_session": key.split(":")[2]}
    return members


def _dialling(stack: Stack) -> bool:
    for key in stack.redis.scan_iter(keys.member("*", "*"), count=1000):
        lease, call_sid, rank = stack.redis.hmget(key, "_lease", "callSid", "_rank")
        if lease and not call_sid and rank != "3" and float(lease) > time.time():
            return True
    return False


def _settled(stack: Stack, member: dict[str, str]) -> bool:
    """Dialled (has a call leg) or ended with a log entry saying why."""
    fresh = stack.redis.hgetall(keys.member(member["_session"], member["id"]))
    return bool(fresh.get("callSid")) or fresh.get("_rank") == "3"


def _legs_by_label(stack: Stack) -> dict[str, str]:
    """Every call leg the emulator placed for a member: member id (the label) -> CallSid."""
    legs: dict[str, str] = {}
    for call in stack.emulator("calls").json()["calls"]:
        if call["label"]:
            assert call["label"] not in legs, f"two legs for {call['label']}"
            legs[call["label"]] = call["sid"]
    return legs


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[redis_server.RedisServer]:
    server = redis_server.start(tmp_path / "redis", appendonly=True)
    yield server
    server.stop()


def test_worker_killed_mid_dial_dials_each_member_exactly_once(
    own_redis: redis_server.RedisServer, own_stack: OwnStacks
) -> None:
    stack = own_stack(
        own_redis.url,
        env={"DIAL_JOB_TIMEOUT": "4", "DIAL_RETRY_BACKOFF": "0,1,1,1,1,1", "TWILIO_CPS": "20"},
    )
    account = new_account(own_redis.url)
    sessions = stack.open_sessions(account.number, 3)
    # Slow creates (Twilio taking 0.3 s) so that kills land mid-dial.
    stack.emulator("faults", "POST", data={"mode": "delay", "seconds": "0.3", "for_seconds": "30"})
    invited: list[str] = []

    def invite() -> None:
        with stack.client(account.key) as c:
            while len(invited) < 40:
                sid = random.choice(sessions)
                response = c.post(f"/sessions/{sid}/members", json={"memberToAdd": random_number()})
                assert response.status_code == 200, response.text
                invited.append(sid)
                time.sleep(0.05)

    inviter = threading.Thread(target=invite)
    inviter.start()
    rng = random.Random(7)
    for _ in range(6):
        # Kill while a dial is in flight (claimed, not yet recorded), at a random point.
        wait_until(lambda: _dialling(stack), 30, "a dial in flight")
        time.sleep(rng.uniform(0, 0.3))
        stack.processes["worker"].kill()
        stack.start("worker", "-m", "orchestrator", "worker")
    inviter.join()

    members = _member_ids(stack)
    assert len(members) == len(invited) == 40
    wait_until(
        lambda: all(_settled(stack, m) for m in members.values()),
        120,
        "every invite to be dialled or ended",
    )
    creates = stack.emulator("creates").json()["byLabel"]
    legs = _legs_by_label(stack)
    retried = [
        mid
        for mid in members
        if int(stack.redis.hget(Job.key_for(jobs.job_id(mid)), "retries_left") or 6) < 6
    ]
    assert retried, "no kill landed mid-dial; the test proved nothing"
    for mid, member in members.items():
        fresh = stack.redis.hgetall(keys.member(member["_session"], mid))
        log = [e["message"] for e in stack.session_log(member["_session"])]
        if mid in creates:
            # Twilio placed the call: the member holds that very leg, dialled once,
            # and is not recorded as failed while its phone rings.
            assert creates[mid] == 1, f"{mid} dialled {creates[mid]} times"
            assert fresh.get("callSid") == legs[mid], f"{mid} lost its leg {legs[mid]}"
            name = fresh["displayName"]
            assert not [e for e in log if e.startswith(f"Could not dial {name}")], log
        else:
            assert not fresh.get("callSid")
            assert any(mid in entry or fresh["identity"] in entry for entry in log)


def test_redis_restart_loses_no_accepted_invite(
    own_redis: redis_server.RedisServer, own_stack: OwnStacks
) -> None:
    stack = own_stack(own_redis.url)
    account = new_account(own_redis.url)
    (sid,) = stack.open_sessions(account.number, 1)
    accepted: list[str] = []
    outcomes: list[int] = []
    stop = threading.Event()

    def invite() -> None:
        with stack.client(account.key) as c:
            while not stop.is_set():
                number = random_number()
                try:
                    response = c.post(
                        f"/sessions/{sid}/members", json={"memberToAdd": number}, timeout=5
                    )
                except httpx.TimeoutException:
                    outcomes.append(-1)
                    continue
                outcomes.append(response.status_code)
                if response.status_code == 200:
                    accepted.append(number)
                else:
                    assert response.status_code == 503, response.text
                    assert response.json()["responseStatus"]["errorCode"]
                time.sleep(0.02)

    inviter = threading.Thread(target=invite)
    inviter.start()
    wait_until(lambda: len(accepted) >= 10, 20, "invites before the restart")
    own_redis.stop()
    wait_until(lambda: 503 in outcomes, 20, "503 while Redis is away")
    before = len(accepted)
    restarted = redis_server.start(own_redis.directory, port=own_redis.port, appendonly=True)
    own_redis.process = restarted.process
    wait_until(lambda: len(accepted) >= before + 10, 30, "the web to recover by itself")
    stop.set()
    inviter.join()
    assert -1 not in outcomes, "a request hung while Redis was away"

    active = stack.redis.hgetall(keys.session_active(sid))
    assert set(accepted) <= set(active), "an invite answered 200 was lost"
    wait_until(
        lambda: all(stack.redis.hget(keys.member(sid, active[n]), "callSid") for n in accepted),
        60,
        "the worker to reconnect and dial every accepted invite",
    )
    creates = stack.emulator("creates").json()["byLabel"]
    assert all(creates.get(active[n]) == 1 for n in accepted)


def test_a_job_claimed_by_a_worker_that_never_started_it_is_run_once(
    own_redis: redis_server.RedisServer, own_stack: OwnStacks
) -> None:
    """A worker that loses Redis, or dies, between taking a job and starting it (what a
    Redis restart under load hits) leaves the job claimed, in no queue and no registry;
    it goes back to its queue and is dialled, once, by the next maintenance run."""
    stack = own_stack(own_redis.url)
    stack.stop("worker")
    account = new_account(own_redis.url)
    (sid,) = stack.open_sessions(account.number, 1)
    with stack.client(account.key) as c:
        response = c.post(f"/sessions/{sid}/members", json={"memberToAdd": random_number()})
    assert response.status_code == 200, response.text
    (mid,) = _member_ids(stack)
    r = redis_client.connect_sync(own_redis.url)
    dial = worker.ClaimingQueue(jobs.DIAL_QUEUE, connection=r)
    # Taken as a worker takes it, and never started: the worker is gone.
    job, _ = worker.ClaimingQueue.dequeue_any([dial], None, connection=r)
    assert job.id == jobs.job_id(mid)
    assert r.llen(dial.key) == 0 and r.lrange(dial.intermediate_queue_key, 0, -1) == [
        job.id.encode()
    ]

    stack.start("worker", "-m", "orchestrator", "worker")
    member = keys.member(sid, mid)
    wait_until(
        lambda: stack.redis.hget(member, "callSid"),
        # The first worker, stopped as it started, may have left RQ's maintenance lock.
        worker.MAINTENANCE_LOCK_SECONDS
        + worker.CLAIM_GRACE_SECONDS
        + worker.MAINTENANCE_SECONDS
        + 5,
        "the claimed job to be run",
    )
    assert stack.emulator("creates").json()["byLabel"].get(mid) == 1
    assert r.llen(dial.intermediate_queue_key) == 0
    assert "claimed but never started" in stack.processes["worker"].log()


def test_dial_rate_is_shared_by_all_workers(
    own_redis: redis_server.RedisServer, own_stack: OwnStacks
) -> None:
    stack = own_stack(own_redis.url, env={"TWILIO_CPS": "5"}, workers=4)
    account = new_account(own_redis.url)
    sessions = stack.open_sessions(account.number, 5)
    with stack.client(account.key) as c:
        for i in range(25):
            response = c.post(
                f"/sessions/{sessions[i % 5]}/members", json={"memberToAdd": random_number()}
            )
            assert response.status_code == 200
    times = wait_until(
        lambda: len(t := stack.emulator("creates").json()["times"]) == 25 and t,
        60,
        "25 dials",
    )
    times.sort()
    # No one-second window holds more than 5 dials (small slack for clock reads).
    assert all(b - a >= 0.98 for a, b in zip(times, times[5:], strict=False))
    # And the cap is used: 25 dials at 5/s take about 4 s (4.5 with the jitter margin).
    assert times[-1] - times[0] < 4 * 1.12 * 1.3


@pytest.mark.parametrize(
    ("fault", "needed_retries"),
    [
        ({"mode": "status", "status": "503", "count": "2"}, 2),
        ({"mode": "status", "status": "429", "count": "2"}, 2),
        ({"mode": "reset", "count": "2"}, 2),
        # A create that times out was still made by Twilio: found by label, not redialled.
        ({"mode": "delay", "seconds": "3", "count": "1"}, 0),
    ],
    ids=["503", "429", "reset", "timeout"],
)
def test_twilio_faults_are_retried_without_a_storm(
    own_redis: redis_server.RedisServer, own_stack: OwnStacks, fault: dict, needed_retries: int
) -> None:
    stack = own_stack(
        own_redis.url,
        env={"DIAL_JOB_TIMEOUT": "4", "DIAL_RETRY_BACKOFF": "0,1,1,1"},
    )
    account = new_account(own_redis.url)
    (sid,) = stack.open_sessions(account.number, 1)
    stack.emulator("faults", "POST", data=fault)
    mid = stack.add_member(account.key, sid, random_number())
    wait_until(
        lambda: stack.redis.hget(keys.member(sid, mid), "callSid"),
        30,
        "the dial to get through",
    )
    creates = stack.emulator("creates").json()
    assert creates["byLabel"][mid] == 1
    # Calls made vs needed: one create per fault it had to outlast, plus the one that
    # worked (a timed-out create counts as the one that worked).
    assert creates["attempts"] == 1 + needed_retries


def _busy_member_whose_create_answer_is_late(
    own_redis: redis_server.RedisServer, own_stack: OwnStacks
) -> tuple[Stack, str, str]:
    """A busy callee invited while Twilio holds its create's answer past the worker's
    request timeout (so the worker retries the dial): the stack, session and member."""
    stack = own_stack(
        own_redis.url,
        # Twilio requests time out after 0.8 s; the retry follows 3 to 6 s later.
        env={"DIAL_JOB_TIMEOUT": "4", "DIAL_RETRY_BACKOFF": "3,3"},
    )
    account = new_account(own_redis.url)
    (sid,) = stack.open_sessions(account.number, 1)
    stack.emulator("faults", "POST", data={"mode": "delay", "seconds": "2", "count": "1"})
    busy = random_number()[:-4] + "0001"
    return stack, sid, stack.add_member(account.key, sid, busy)


def test_a_lost_create_answer_on_a_call_that_ended_before_the_retry_is_not_redialled(
    own_redis: redis_server.RedisServer, own_stack: OwnStacks
) -> None:
    """Twilio made the call but its answer never reached the worker, and the callee was
    busy before the retry ran: Twilio no longer lists that participant, so only the leg's
    own callbacks can tell the retry that the member was dialled."""
    stack, sid, mid = _busy_member_whose_create_answer_is_late(own_redis, own_stack)
    r = stack.redis
    member = keys.member(sid, mid)
    wait_until(lambda: r.hget(member, "_rank") == "3", 20, "the busy callee's callbacks")
    assert r.hget(member, "_attempts") == "1", "the retry ran before the callee was busy"
    job = Job.fetch(jobs.job_id(mid), connection=redis.Redis.from_url(own_redis.url))
    wait_until(lambda: job.get_status(refresh=True) == "finished", 20, "the retry to run")
    # The retry found the member ended by its leg's callbacks, and dialled nobody.
    assert job.return_value() == "final"

    creates = stack.emulator("creates").json()
    assert creates["byLabel"][mid] == 1 and creates["attempts"] == 1
    legs = _legs_by_label(stack)
    assert r.hget(member, "callSid") == legs[mid]
    call = stack.emulator(f"calls/{legs[mid]}").json()
    assert call["status"] == "busy"
    assert r.hget(member, "callState") == "None"
    log = [e["message"] for e in stack.session_log(sid)]
    assert sum(e.endswith(" was busy") for e in log) == 1, log
    assert sum(e.startswith("Dialled ") for e in log) == 1, log


def test_a_lost_create_answer_on_a_call_whose_callbacks_were_lost_too_is_found_in_the_calls_list(
    own_redis: redis_server.RedisServer, own_stack: OwnStacks
) -> None:
    """Twilio made the call but its answer never reached the worker, the callee was busy,
    and not one of the leg's callbacks reached the service (refused past all of Twilio's
    retries): the participant list no longer shows the leg, but Twilio's Calls list keeps
    it. The retry finds it there and records it instead of dialling a second time."""
    stack, sid, mid = _busy_member_whose_create_answer_is_late(own_redis, own_stack)
    # The create is being answered late (its call plays once the answer is out): from now
    # on the app is unreachable for every callback, retries included.
    wait_until(lambda: stack.emulator("creates").json()["attempts"] == 1, 10, "the create")
    stack.emulator(
        "faults", "POST", data={"operation": "callbacks", "mode": "reset", "for_seconds": "60"}
    )
    r = stack.redis
    member = keys.member(sid, mid)
    job = Job.fetch(jobs.job_id(mid), connection=redis.Redis.from_url(own_redis.url))
    wait_until(lambda: job.get_status(refresh=True) == "finished", 30, "the retry to run")
    assert job.return_value() == "reconciled"

    creates = stack.emulator("creates").json()
    assert creates["byLabel"][mid] == 1 and creates["attempts"] == 1
    legs = _legs_by_label(stack)
    call = stack.emulator(f"calls/{legs[mid]}").json()
    assert call["status"] == "busy"
    assert call["callbacks"] == [], "a callback reached the app"
    assert call["failedCallbacks"] or call["sending"], "no callback was refused"
    assert r.hget(member, "callSid") == legs[mid]
    assert r.hget(member, "_rank") == "3" and r.hget(member, "callState") == "None"
    assert f"Twilio lists the call busy); recorded: call {legs[mid]}" in stack.logs()
    log = [e["message"] for e in stack.session_log(sid)]
    assert sum(e.endswith(" was busy") for e in log) == 1, log
    assert sum(e.startswith("Dialled ") for e in log) == 1, log


def test_a_callback_refused_while_redis_is_away_is_applied_when_twilio_retries(
    own_redis: redis_server.RedisServer, own_stack: OwnStacks
) -> None:
    """Twilio retries a callback the web process refused (503) while Redis was away;
    once Redis is back the retry is applied, once."""
    stack = own_stack(own_redis.url)
    account = new_account(own_redis.url)
    (sid,) = stack.open_sessions(account.number, 1)
    mid = stack.add_member(account.key, sid, random_number())
    r = stack.redis
    member = keys.member(sid, mid)
    wait_until(lambda: r.hget(member, "callState") == "Connected", 20, "the member to connect")
    call_sid = r.hget(member, "callSid")
    log_before = [e["message"] for e in stack.session_log(sid)]

    own_redis.stop()
    stack.emulator(f"calls/{call_sid}/hangup", "POST")  # the member hangs up meanwhile

    def refused() -> bool:
        call = stack.emulator(f"calls/{call_sid}").json()
        return any(a.get("status") == 503 for a in call["sending"])

    wait_until(refused, 10, "a callback answered 503 while Redis is away")
    restarted = redis_server.start(own_redis.directory, port=own_redis.port, appendonly=True)
    own_redis.process = restarted.process

    wait_until(lambda: stack.redis.hget(member, "_rank") == "3", 20, "the retry to be applied")
    assert stack.redis.hget(member, "callState") == "None"
    call = wait_until(
        lambda: (
            (c := stack.emulator(f"calls/{call_sid}").json())
            and any(d.get("status") == 204 and len(d["attempts"]) > 1 for d in c["callbacks"])
            and c
        ),
        20,
        "the retried callback to be delivered",
    )
    retried = [d for d in call["callbacks"] if len(d["attempts"]) > 1]
    assert all(d["attempts"][0]["status"] == 503 for d in retried)
    assert all(d["status"] == 204 for d in call["callbacks"])
    # Applied once: the member's end is logged once, as without the outage.
    log = [e["message"] for e in stack.session_log(sid)][len(log_before) :]
    ends = [m for m in log if m.endswith((" left the call", " left the conference"))]
    assert len(ends) == 1, log

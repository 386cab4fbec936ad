"""Ring queues as operators and consoles see them (docs/operations.md#ring-queues,
docs/api.md#listqueues): `orchestrator queues create / add / remove / list` and
`numbers add --queue`, run as operators run them, with their refusals; ListQueues on every
route and format; and the queues' figures in `/metrics`."""

from __future__ import annotations

import os
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from prometheus_client.parser import text_string_to_metric_families
from servicestack import JsonServiceClient

from orchestrator import jsv, keys, provision, queue_reads, redis_client
from orchestrator.launch import wait_until
from tests.support import net
from tests.support.accounts import Team, new_account, new_team, random_number
from tests.support.cli import cli
from tests.support.servicestack import official_dtos
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(stack: Stack) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": stack.redis_url, "PHONE_DEFAULT_REGION": "US"}


@pytest.fixture
def team(stack: Stack) -> Team:
    return new_team(stack.redis_url)


def _ok(*args: str, env: dict[str, str]) -> str:
    """The command's one line of output (the new id), after checking it succeeded."""
    result = cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1, result.stdout
    return result.stdout.strip()


def _refused(*args: str, env: dict[str, str], status: int = 2) -> str:
    """The command's stderr, after checking it was refused with nothing on stdout."""
    result = cli(*args, env=env)
    assert result.returncode == status, (args, result.stdout, result.stderr)
    assert result.stdout == "", args
    return result.stderr


# --- queues create --------------------------------------------------------------------------


def test_create_stores_the_queue_with_its_defaults(
    stack: Stack, team: Team, env: dict[str, str]
) -> None:
    qid = _ok("queues", "create", "Sales", "--account", team.id, env=env)
    assert re.fullmatch(r"que_[0-9a-f]{24}", qid)
    stored = stack.redis.hgetall(keys.queue(qid))
    assert stored.pop("dateCreated").endswith("Z")
    assert stored == {
        "id": qid,
        "accountId": team.id,
        "name": "Sales",
        "strategy": "ring-all",
        "ringTimeout": "20",
        "maxWait": "300",
        "wrapUp": "10",
        "maxMisses": "3",
    }
    assert stack.redis.zrange(keys.account_queues(team.id), 0, -1) == [qid]
    assert stack.redis.sismember(keys.queues(), qid)


def test_create_takes_every_option_and_an_overflow_number_or_user(
    stack: Stack, team: Team, env: dict[str, str]
) -> None:
    options = ("--strategy", "linear", "--ring-timeout", "5", "--max-wait", "1")
    options += ("--wrap-up", "0", "--max-misses", "1", "--overflow", "(415) 555-0199")
    qid = _ok("queues", "create", "Night shift", "--account", team.id, *options, env=env)
    stored = stack.redis.hgetall(keys.queue(qid))
    assert (stored["name"], stored["strategy"], stored["overflow"]) == (
        "Night shift",
        "linear",
        "+14155550199",
    )
    assert (stored["ringTimeout"], stored["maxWait"], stored["wrapUp"], stored["maxMisses"]) == (
        "5",
        "1",
        "0",
        "1",
    )
    by_email = _ok(
        "queues", "create", "B", "--account", team.id, "--overflow", team.bob_email.upper(),
        "--strategy", "longest-idle", "--ring-timeout", "600", env=env,
    )  # fmt: skip
    assert stack.redis.hget(keys.queue(by_email), "overflow") == team.bob
    by_id = _ok("queues", "create", "C", "--account", team.id, "--overflow", team.ada, env=env)
    assert stack.redis.hget(keys.queue(by_id), "overflow") == team.ada
    assert stack.redis.zrange(keys.account_queues(team.id), 0, -1) == [qid, by_email, by_id]


BAD_OPTIONS = [
    (("--ring-timeout", "4"), "--ring-timeout"),
    (("--ring-timeout", "601"), "--ring-timeout"),
    (("--ring-timeout", "ten"), "--ring-timeout"),
    (("--max-wait", "0"), "--max-wait"),
    (("--wrap-up", "-1"), "--wrap-up"),
    (("--max-misses", "0"), "--max-misses"),
    (("--strategy", "random"), "--strategy"),
    (("--overflow", "nobody@example.com"), "--overflow"),
    (("--overflow", "usr_000000000000000000000000"), "--overflow"),
    (("--overflow", "hello"), "--overflow"),
    (("--overflow", "+1415"), "--overflow"),
]


@pytest.mark.parametrize(("options", "named"), BAD_OPTIONS)
def test_a_bad_value_is_refused_naming_its_option(
    stack: Stack, team: Team, env: dict[str, str], options: tuple[str, ...], named: str
) -> None:
    stderr = _refused("queues", "create", "Sales", "--account", team.id, *options, env=env)
    assert named in stderr, stderr
    assert stack.redis.zcard(keys.account_queues(team.id)) == 0


def test_create_for_an_unknown_account_or_with_no_name_is_refused(
    stack: Stack, env: dict[str, str]
) -> None:
    assert "acc_missing" in _refused(
        "queues", "create", "Sales", "--account", "acc_missing", env=env
    )
    team = new_team(stack.redis_url)
    assert "name" in _refused("queues", "create", "  ", "--account", team.id, env=env)
    assert stack.redis.zcard(keys.account_queues(team.id)) == 0


# --- queues add / remove ----------------------------------------------------------------------


def test_add_keeps_the_order_agents_were_added_in_and_remove_takes_them_out(
    stack: Stack, team: Team, env: dict[str, str]
) -> None:
    qid = _ok("queues", "create", "Sales", "--account", team.id, env=env)
    other = _ok("queues", "create", "Support", "--account", team.id, env=env)
    assert _ok("queues", "add", qid, team.bob_email.upper(), env=env) == team.bob
    assert _ok("queues", "add", qid, team.ada, env=env) == team.ada
    assert _ok("queues", "add", other, team.ada_email, env=env) == team.ada
    # Added again: no second entry, and Bob keeps his place.
    assert _ok("queues", "add", qid, team.bob, env=env) == team.bob
    assert stack.redis.lrange(keys.queue_agents(qid), 0, -1) == [team.bob, team.ada]
    assert stack.redis.smembers(keys.user_queues(team.ada)) == {qid, other}

    assert _ok("queues", "remove", qid, team.bob_email, env=env) == team.bob
    assert stack.redis.lrange(keys.queue_agents(qid), 0, -1) == [team.ada]
    assert stack.redis.smembers(keys.user_queues(team.bob)) == set()
    # Removing who is not an agent changes nothing, and says so.
    again = cli("queues", "remove", qid, team.bob, env=env)
    assert again.returncode == 0 and again.stdout == team.bob + "\n"
    assert "was not an agent" in again.stderr
    assert stack.redis.lrange(keys.queue_agents(qid), 0, -1) == [team.ada]
    # Added back, Bob comes last.
    _ok("queues", "add", qid, team.bob, env=env)
    assert stack.redis.lrange(keys.queue_agents(qid), 0, -1) == [team.ada, team.bob]


def test_add_and_remove_refuse_an_unknown_queue_or_user(
    stack: Stack, team: Team, env: dict[str, str]
) -> None:
    qid = _ok("queues", "create", "Sales", "--account", team.id, env=env)
    stranger = new_account(stack.redis_url)
    for action in ("add", "remove"):
        stderr = _refused("queues", action, "que_missing", team.ada, env=env)
        assert "no queue 'que_missing'" in stderr
        stderr = _refused("queues", action, qid, "nobody@example.com", env=env)
        assert "no user 'nobody@example.com'" in stderr
        # A user of another account is no user of the queue's account.
        stderr = _refused("queues", action, qid, stranger.user_id, env=env)
        assert stranger.user_id in stderr and team.id in stderr
    assert stack.redis.llen(keys.queue_agents(qid)) == 0
    assert stack.redis.smembers(keys.user_queues(stranger.user_id)) == set()


# --- queues list ------------------------------------------------------------------------------


def test_list_shows_each_queue_its_timings_and_agents_with_their_state(
    stack: Stack, team: Team, env: dict[str, str]
) -> None:
    sales = _ok("queues", "create", "Sales team", "--account", team.id, "--strategy", "linear",
                "--overflow", team.bob_email, env=env)  # fmt: skip
    empty = _ok("queues", "create", "Empty", "--account", team.id, "--max-wait", "60", env=env)
    _ok("queues", "add", sales, team.bob, env=env)
    _ok("queues", "add", sales, team.ada, env=env)
    with stack.client(team.ada_key) as c:
        assert c.patch("/app/agent-state", json={"agentState": "Ready"}).status_code == 200
    result = cli("queues", "list", "--account", team.id, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [shlex.split(line) for line in lines] == [
        [
            sales, "Sales team", "linear", "ring-timeout=20", "max-wait=300", "wrap-up=10",
            "max-misses=3", f"overflow={team.bob}", "waiting=0",
            f"agents={team.bob}:LoggedOut,{team.ada}:Ready",
        ],
        [
            empty, "Empty", "ring-all", "ring-timeout=20", "max-wait=60", "wrap-up=10",
            "max-misses=3", "overflow=-", "waiting=0", "agents=-",
        ],
    ]  # fmt: skip
    nothing = new_account(stack.redis_url)
    listed = cli("queues", "list", "--account", nothing.id, env=env)
    assert listed.returncode == 0 and listed.stdout == ""
    assert "acc_missing" in _refused("queues", "list", "--account", "acc_missing", env=env)


# --- numbers add --queue ----------------------------------------------------------------------


def test_numbers_add_with_a_queue_routes_the_number_to_it(
    stack: Stack, team: Team, env: dict[str, str]
) -> None:
    qid = _ok("queues", "create", "Sales", "--account", team.id, env=env)
    number = random_number()
    assert _ok("numbers", "add", number, "--account", team.id, "--queue", qid, env=env) == number
    assert stack.redis.get(keys.number_queue(number)) == qid
    assert stack.redis.get(keys.number(number)) == team.id
    # A number the account has already: routed to the queue too.
    assert _ok("numbers", "add", team.number, "--account", team.id, "--queue", qid, env=env)
    assert stack.redis.get(keys.number_queue(team.number)) == qid
    # Without --queue, as before: no queue.
    plain = random_number()
    _ok("numbers", "add", plain, "--account", team.id, env=env)
    assert stack.redis.get(keys.number_queue(plain)) is None
    assert stack.redis.lrange(keys.account_numbers(team.id), 0, -1)[-2:] == [number, plain]


def test_numbers_add_refuses_a_queue_not_of_the_account(
    stack: Stack, team: Team, env: dict[str, str]
) -> None:
    stranger = new_account(stack.redis_url)
    theirs = _ok("queues", "create", "Theirs", "--account", stranger.id, env=env)
    number = random_number()
    stderr = _refused("numbers", "add", number, "--account", team.id, "--queue", theirs, env=env)
    assert "--queue" in stderr and theirs in stderr
    stderr = _refused(
        "numbers", "add", number, "--account", team.id, "--queue", "que_missing", env=env
    )
    assert "--queue" in stderr and "que_missing" in stderr
    assert stack.redis.get(keys.number(number)) is None
    assert stack.redis.get(keys.number_queue(number)) is None


# --- ListQueues -------------------------------------------------------------------------------


def _queue(stack: Stack, team: Team, **settings: object) -> str:
    """A queue of the team's, with Ada then Bob as its agents."""
    r = redis_client.connect_sync(stack.redis_url)
    qid = provision.create_queue(r, team.id, "Sales", provision.QueueSettings(**settings))
    provision.add_agent(r, qid, team.ada)
    provision.add_agent(r, qid, team.bob)
    return qid


ROUTES = [
    ("/queues", {}, "application/json"),
    ("/queues.json", {}, "application/json"),
    ("/api/ListQueues", {}, "application/json"),
    ("/json/reply/ListQueues", {"Accept": "text/jsv"}, "application/json"),
    ("/jsv/reply/ListQueues", {}, "text/jsv"),
    ("/queues.jsv", {}, "text/jsv"),
    ("/queues?format=jsv", {}, "text/jsv"),
    ("/queues", {"Accept": "application/jsv"}, "text/jsv"),
]


def test_list_queues_on_every_route_and_format(stack: Stack, team: Team) -> None:
    qid = _queue(stack, team, strategy="round-robin", ring_timeout=30, overflow=team.bob)
    with stack.client(team.ada_key) as c:
        assert c.patch("/app/agent-state", json={"agentState": "NotReady"}).status_code == 200
    expected = {
        "queues": [
            {
                "id": qid,
                "name": "Sales",
                "strategy": "round-robin",
                "ringTimeout": 30,
                "maxWait": 300,
                "wrapUp": 10,
                "maxMisses": 3,
                "overflow": team.bob,
                "waiting": [],
                "agents": [
                    {
                        "userId": team.ada,
                        "name": "Ada Agent",
                        "agentState": "NotReady",
                        "agentStateReason": "SetByUser",
                        "busy": False,
                    },
                    {
                        "userId": team.bob,
                        "name": "Bob Builder",
                        "agentState": "LoggedOut",
                        "agentStateReason": "Unknown",
                        "busy": False,
                    },
                ],
            }
        ]
    }
    # Any key of the account: the console's, or an agent's.
    for key in (team.key, team.bob_key):
        with stack.client(key) as c:
            for path, headers, content_type in ROUTES:
                response = c.get(path, headers=headers)
                assert response.status_code == 200, (path, response.text)
                assert response.headers["content-type"].startswith(content_type), path
                if content_type == "text/jsv":
                    body = jsv.loads(response.text)
                    # JSV has no types: numbers and booleans read back as text.
                    assert body["queues"][0]["id"] == qid
                    assert body["queues"][0]["ringTimeout"] in (30, "30")
                    assert [a["userId"] for a in body["queues"][0]["agents"]] == [
                        team.ada,
                        team.bob,
                    ]
                else:
                    assert response.json() == expected, path
    # Another account sees only its own (none).
    with stack.client(new_account(stack.redis_url).key) as c:
        assert c.get("/queues").json() == {"queues": []}
    with stack.client() as anonymous:
        assert anonymous.get("/queues").status_code == 401


def test_list_queues_shows_the_calls_waiting_and_who_is_busy(stack: Stack, team: Team) -> None:
    """A call to the queue's number waits while its only available agent is in WrapUp (set
    here as the engine sets it after a call): nobody is free, but somebody will be."""
    qid = _queue(stack, team)
    r = stack.redis
    r.hset(keys.user(team.ada), mapping={"agentState": "WrapUp", "agentStateReason": "SetBySystem"})
    r.hset(keys.agent_states(), team.ada, "WrapUp")
    number = random_number()
    provision.add_number(redis_client.connect_sync(stack.redis_url), number, team.id, qid)
    caller = random_number()
    before = datetime.now(UTC)
    call = stack.incoming_call(caller, number)
    sid = call["conferenceName"]
    # Bob is on another call (he answers it): busy.
    stack.softphone(team.bob_key, "answer")
    other = stack.incoming_call(random_number(), team.number)["conferenceName"]
    with stack.client(team.key) as c:
        invited = c.post(f"/sessions/{other}/members", json={"memberToAdd": team.bob_email})
    assert invited.status_code == 200, invited.text

    def listed() -> dict | None:
        with stack.client(team.key) as c:
            queue = c.get("/queues").json()["queues"][0]
        bob = queue["agents"][1]
        return queue if queue["waiting"] and bob["busy"] else None

    queue = wait_until(listed, 15, "the call waiting and Bob busy")
    (waiting,) = queue["waiting"]
    assert waiting["sessionId"] == sid and waiting["fromAddress"] == caller
    assert waiting["queueState"] == "Queued"
    since = datetime.fromisoformat(waiting["since"].replace("Z", "+00:00"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", waiting["since"])
    assert before.timestamp() - 1 <= since.timestamp() <= datetime.now(UTC).timestamp()
    assert isinstance(waiting["waitSeconds"], int) and waiting["waitSeconds"] >= 0
    ada, bob = queue["agents"]
    assert (ada["agentState"], ada["agentStateReason"], ada["busy"]) == (
        "WrapUp",
        "SetBySystem",
        False,
    )
    assert bob["busy"] is True
    # The CLI lists it too.
    env = {**os.environ, "REDIS_URL": stack.redis_url}
    line = _ok("queues", "list", "--account", team.id, env=env)
    assert "waiting=1" in line and f"{team.bob}:LoggedOut:busy" in line
    # Once the call ends, it waits no more.
    with stack.client(team.key) as c:
        assert c.delete(f"/sessions/{sid}").status_code == 204
        c.delete(f"/sessions/{other}")
    wait_until(lambda: _waiting(stack, team) == [], 10, "the call gone from the queue")


def _waiting(stack: Stack, team: Team) -> list[dict]:
    with stack.client(team.key) as c:
        return c.get("/queues").json()["queues"][0]["waiting"]


def test_list_queues_matches_the_document(stack: Stack, team: Team) -> None:
    _queue(stack, team, overflow="+14155550199")
    schema = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")
    for path in ("/queues", "/api/ListQueues", "/json/reply/ListQueues"):
        answer = (
            schema[path]["GET"]
            .Case()
            .call_and_validate(headers={"Authorization": f"Bearer {team.key}"})
        )
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json()["queues"][0]["overflow"] == "+14155550199"


def test_the_official_client_lists_the_queues(stack: Stack, team: Team, tmp_path: Path) -> None:
    qid = _queue(stack, team, strategy="linear")
    dtos = official_dtos(stack, tmp_path, "queue_dtos")
    client = JsonServiceClient(stack.base_url)
    client.set_bearer_token(team.key)
    listed = client.get(dtos.ListQueues())
    assert isinstance(listed, dtos.ListQueuesResponse)
    (queue,) = listed.queues
    assert isinstance(queue, dtos.QueueInfo)
    assert (queue.id, queue.strategy, queue.ring_timeout, queue.waiting) == (qid, "linear", 20, [])
    assert [a.user_id for a in queue.agents] == [team.ada, team.bob]
    assert queue.agents[0].agent_state == dtos.AgentStates.LOGGED_OUT
    assert queue.agents[0].busy is False


# --- /metrics ---------------------------------------------------------------------------------


def _scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = net.get(stack.base_url + "/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_show_each_queues_calls_waits_and_the_agents_by_state(
    stack: Stack, team: Team
) -> None:
    qid = _queue(stack, team)
    before = _scrape(stack)
    # What the engine counts (lua/_queues.lua), written as it writes it.
    stats = {"calls:Answered": 3, "calls:Abandoned": 1, "calls:Overflowed": 2}
    stats |= {"wait:0": 1, "wait:3": 2, "wait:9": 1, "wait:sum_ms": 412_500, "wait:count": 4}
    stack.redis.hset(keys.queue_stats(qid), mapping=stats)
    with stack.client(team.ada_key) as c:
        assert c.patch("/app/agent-state", json={"agentState": "Ready"}).status_code == 200
    after = _scrape(stack)
    q = (("queue", qid),)

    def calls(outcome: str) -> float:
        return after[("orchestrator_queue_calls_total", (("outcome", outcome), ("queue", qid)))]

    assert [calls(o) for o in ("Answered", "Abandoned", "Missed", "Overflowed")] == [3, 1, 0, 2]
    buckets = [
        after[("orchestrator_queue_wait_seconds_bucket", (("le", le), *q))]
        for le in [*(str(float(b)) for b in queue_reads.WAIT_BUCKETS), "+Inf"]
    ]
    assert buckets == [1, 1, 1, 3, 3, 3, 3, 3, 3, 4]  # cumulative, as Prometheus reads them
    assert after[("orchestrator_queue_wait_seconds_count", q)] == 4
    assert after[("orchestrator_queue_wait_seconds_sum", q)] == 412.5

    def agents(samples: dict, state: str) -> float:
        return samples.get(("orchestrator_agents", (("state", state),)), 0.0)

    # Ada went from LoggedOut (as every new user starts) to Ready.
    assert agents(after, "Ready") - agents(before, "Ready") == 1
    assert agents(after, "LoggedOut") - agents(before, "LoggedOut") == -1
    assert ("orchestrator_agents", (("state", "WrapUp"),)) in after


def test_a_queue_call_is_counted_by_the_engine_in_metrics(stack: Stack, team: Team) -> None:
    """End to end: a caller who hangs up while waiting is an Abandoned call of the queue."""
    qid = _queue(stack, team)
    # Ada wraps up (written as the engine writes it): the call waits for her.
    stack.redis.hset(keys.user(team.ada), mapping={"agentState": "WrapUp"})
    stack.redis.hset(keys.agent_states(), team.ada, "WrapUp")
    number = random_number()
    provision.add_number(redis_client.connect_sync(stack.redis_url), number, team.id, qid)
    call = stack.incoming_call(random_number(), number)
    wait_until(lambda: _waiting(stack, team), 10, "the call waiting")
    stack.emulator(f"calls/{call['callSid']}/hangup", "POST")
    key = ("orchestrator_queue_calls_total", (("outcome", "Abandoned"), ("queue", qid)))
    wait_until(lambda: _scrape(stack).get(key) == 1, 15, "the abandoned call counted")


def test_the_scripts_bucket_waits_as_metrics_reads_them() -> None:
    """lua/_queues.lua counts each answered call's wait in the bucket of WAIT_BUCKETS that
    /metrics reports it under: the two lists are the same."""
    lua = (ROOT / "orchestrator" / "lua" / "_queues.lua").read_text()
    found = re.search(r"local WAIT_BUCKETS = \{([^}]*)\}", lua)
    assert found is not None
    assert tuple(int(b) for b in found[1].split(",")) == queue_reads.WAIT_BUCKETS

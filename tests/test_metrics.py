"""Operations (docs/operations.md) through real processes: `/metrics` adds up what the web
processes and the worker counted, `/ready` follows Redis, `LOG_FORMAT=json`
gives JSON lines with the SIDs, and an idle worker logs nothing routine.

One stack of its own (its Redis is stopped at the end; its emulator's faults
are armed), with two web processes (`orchestrator web --workers 2`) and JSON
logs. Counters are compared as deltas between two scrapes.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator

from orchestrator import keys, redis_server
from orchestrator.launch import wait_until
from orchestrator.settings import ConfigError, Settings
from tests.support import net, queues
from tests.support.accounts import Account, new_account, random_number
from tests.support.cli import cli
from tests.support.stack import Stack, running_stack
from tests.support.webhooks import invite_parked

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def redis_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis_server.RedisServer]:
    server = redis_server.start(tmp_path_factory.mktemp("metrics-redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ops(redis_srv: redis_server.RedisServer, tmp_path_factory: pytest.TempPathFactory):
    with running_stack(
        tmp_path_factory.mktemp("metrics-stack"),
        redis_srv.url,
        env={"LOG_FORMAT": "json"},
        web_args=("--workers", "2"),
    ) as stack:
        yield stack


def scrape(stack: Stack) -> Samples:
    response = net.get(stack.base_url + "/metrics", timeout=10)  # no auth
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def _account(stack: Stack) -> tuple[str, str, str]:
    """(account id, its number, a User key) in the stack's Redis."""
    account = new_account(stack.redis_url, "Metrics Co")
    return account.id, account.number, account.key


def signed_post(
    stack: Stack, path: str, params: dict[str, str], token: str = "", auth_token: str = ""
) -> httpx.Response:
    url = stack.base_url + path
    signature = RequestValidator(auth_token or stack.auth_token).compute_signature(url, params)
    headers = {"X-Twilio-Signature": signature}
    if token:
        headers["I-Twilio-Idempotency-Token"] = token
    return net.post(url, data=params, headers=headers, timeout=10)


def invite(stack: Stack, key: str, sid: str, number: str) -> None:
    with stack.client(key) as client:
        response = client.post(f"/sessions/{sid}/members", json={"memberToAdd": number})
    assert response.status_code == 200, response.text


def log_lines(stack: Stack, name: str) -> list[str]:
    return stack.processes[name].log_path.read_text(errors="replace").splitlines()


def test_callbacks_are_counted_by_event_and_outcome_and_forgeries_apart(ops: Stack) -> None:
    aid, number, _ = _account(ops)
    before = scrape(ops)
    call_sid = "CA" + random.randbytes(16).hex()
    voice = {"CallSid": call_sid, "From": random_number(), "To": number}
    assert signed_post(ops, "/twilio/voice", voice).status_code == 200
    sid = ops.redis.get(keys.call(call_sid)).split()[0]
    # A member whose dial job is parked: only these callbacks move it.
    (mid,) = invite_parked(ops, Account(aid, number, "", "", ""), sid, 1)
    leg = "CA" + random.randbytes(16).hex()
    path = f"/twilio/call-status?session={sid}&member={mid}"

    def status(name: str, seq: int, token: str = "") -> None:
        params = {"CallSid": leg, "CallStatus": name, "SequenceNumber": str(seq)}
        assert signed_post(ops, path, params, token=token).status_code == 204

    status("initiated", 0)  # applied
    status("ringing", 1)  # unchanged: initiated already made it ringing
    status("ringing", 1)  # stale: not newer than the last
    status("in-progress", 2, token="tok-1")  # applied
    status("in-progress", 3, token="tok-1")  # replayed: Twilio's retry of the same request
    status("completed", 4)  # applied
    status("ringing", 5)  # final
    unknown = {"CallSid": leg, "CallStatus": "ringing"}
    stranger = f"/twilio/call-status?session={sid}&member=mem_x"
    assert signed_post(ops, stranger, unknown).status_code == 204
    conference = {"FriendlyName": "ses_nope", "StatusCallbackEvent": "conference-end"}
    assert signed_post(ops, "/twilio/conference-status", conference).status_code == 204

    # Forged: another token's signature, none at all, a signature of other parameters.
    forged = {"CallSid": leg, "CallStatus": "completed", "SequenceNumber": "9"}
    assert signed_post(ops, path, forged, auth_token="not-the-token").status_code == 403
    assert net.post(ops.base_url + path, data=forged, timeout=10).status_code == 403
    sig = RequestValidator(ops.auth_token).compute_signature(ops.base_url + path, forged)
    other = {**forged, "CallStatus": "busy"}
    headers = {"X-Twilio-Signature": sig}
    assert net.post(ops.base_url + path, data=other, headers=headers).status_code == 403
    assert net.post(ops.base_url + "/twilio/voice", data=voice, timeout=10).status_code == 403

    after = scrape(ops)
    expected = {
        ("incoming-call", "created"): 1,
        ("initiated", "applied"): 1,
        ("ringing", "unchanged"): 1,
        ("ringing", "stale"): 1,
        ("in-progress", "applied"): 1,
        ("in-progress", "replayed"): 1,
        ("completed", "applied"): 1,
        ("ringing", "final"): 1,
        ("ringing", "unknown"): 1,
        ("conference-end", "unknown"): 1,
    }
    moved = {
        (dict(labels)["event"], dict(labels)["outcome"]): value - before.get((name, labels), 0)
        for (name, labels), value in after.items()
        if name == "orchestrator_callbacks_total" and value != before.get((name, labels), 0)
    }
    assert moved == expected  # and the forged ones counted no callback
    failures = "orchestrator_signature_failures_total"
    assert delta(after, before, failures, webhook="call-status") == 3
    assert delta(after, before, failures, webhook="voice") == 1
    assert after[("orchestrator_event_subscribers", ())] == 0


def test_invites_and_dials_are_counted_across_web_and_worker_processes(ops: Stack) -> None:
    _, number, key = _account(ops)
    sid = ops.incoming_call(random_number(), number)["conferenceName"]
    before = scrape(ops)
    for _ in range(3):
        invite(ops, key, sid, random_number())
    invite(ops, key, sid, "+14155550004")  # the emulator refuses it: 400, Twilio error 21211

    # The worker counts each dial after recording it; the web serves what it counted.
    def dialled() -> Samples | None:
        after = scrape(ops)
        done = delta(after, before, "orchestrator_dials_total", outcome="dialled", twilio_code="")
        refused = delta(
            after, before, "orchestrator_dials_total", outcome="rejected", twilio_code="21211"
        )
        return after if (done, refused) == (3, 1) else None

    after = wait_until(dialled, 20, "3 dials and 1 rejection in /metrics")
    requests = "orchestrator_requests_total"
    assert delta(after, before, requests, operation="InviteChatMember", status="200") == 4
    assert delta(after, before, "orchestrator_dispatch_seconds_count") == 3
    assert delta(after, before, "orchestrator_dispatch_seconds_bucket", le="+Inf") == 3
    assert delta(after, before, "orchestrator_dispatch_seconds_sum") > 0
    retries = [k for k in after if k[0] == "orchestrator_dial_retries_total"]
    assert sum(after[k] - before.get(k, 0) for k in retries) == 0
    assert after[("orchestrator_queue_depth", (("queue", "dial"),))] == 0
    assert after[("orchestrator_queue_depth", (("queue", "control"),))] == 0

    # An error is counted with its status.
    with ops.client(key) as client:
        missing = client.post("/sessions/ses_nope/members", json={"memberToAdd": random_number()})
        assert missing.status_code == 404
        assert client.post(f"/sessions/{sid}/members", json={}).status_code == 400
    later = scrape(ops)
    assert delta(later, after, requests, operation="InviteChatMember", status="404") == 1
    assert delta(later, after, requests, operation="InviteChatMember", status="400") == 1


def test_dial_retries_after_a_twilio_fault_are_counted(ops: Stack) -> None:
    _, number, key = _account(ops)
    sid = ops.incoming_call(random_number(), number)["conferenceName"]
    before = scrape(ops)
    ops.emulator("faults", "POST", data={"status": "503", "count": "2"})
    try:
        invite(ops, key, sid, random_number())

        def dialled() -> Samples | None:
            after = scrape(ops)
            dials = "orchestrator_dials_total"
            done = delta(after, before, dials, outcome="dialled", twilio_code="")
            return after if done == 1 else None

        after = wait_until(dialled, 30, "the dial to go through after two retries")
    finally:
        ops.emulator("faults", "POST", data={"status": "503", "count": "0"})
    assert delta(after, before, "orchestrator_dial_retries_total", reason="twilio") == 2
    assert delta(after, before, "orchestrator_dispatch_seconds_count") == 1
    # RQ's own lines about the failed attempts stay in the log (they are not routine).
    rq_lines = [json.loads(line) for line in log_lines(ops, "worker") if '"logger":"rq.' in line]
    assert any(line["level"] in ("WARNING", "ERROR") for line in rq_lines)


def test_json_logs_carry_the_sids(ops: Stack) -> None:
    _, number, key = _account(ops)
    sid = ops.incoming_call(random_number(), number)["conferenceName"]
    invite(ops, key, sid, random_number())

    def dial_line() -> dict | None:
        for line in log_lines(ops, "worker"):
            record = json.loads(line)
            if record.get("sessionId") == sid and record["logger"] == "orchestrator.dial":
                return record
        return None

    record = wait_until(dial_line, 10, "the worker's dial line for the session")
    assert record["level"] == "INFO" and record["message"].startswith("dialled ")
    assert record["memberId"].startswith("mem_") and record["callSid"].startswith("CA")
    assert record["time"].endswith("Z")
    web = [json.loads(line) for line in log_lines(ops, "web") if line.strip()]
    assert any(r.get("sessionId") == sid and r["logger"] == "orchestrator.webhooks" for r in web)
    # Every line of both processes is one JSON object.
    for name in ("web", "worker"):
        for line in log_lines(ops, name):
            if line.strip():
                assert {"time", "level", "logger", "message"} <= json.loads(line).keys()


def test_an_idle_worker_logs_nothing_routine_at_info(ops: Stack) -> None:
    r = redis.Redis.from_url(ops.redis_url)
    wait_until(lambda: queues.all_idle(r), 30, "the earlier tests' jobs to end")
    seen = len(log_lines(ops, "worker"))
    queues.wait_maintenance(r)  # what RQ does routinely: its registry clean-ups
    new = [json.loads(line) for line in log_lines(ops, "worker")[seen:] if line.strip()]
    assert [r for r in new if r["level"] in ("DEBUG", "INFO")] == []
    assert [r for r in new if r["logger"].startswith("rq.")] == []


def test_ready_follows_redis_and_health_stays(
    ops: Stack, redis_srv: redis_server.RedisServer
) -> None:
    assert net.get(ops.base_url + "/ready", timeout=5).json() == {"ok": True}
    assert net.get(ops.base_url + "/health", timeout=5).json() == {"ok": True}
    redis_srv.stop()
    try:
        for _ in range(3):  # whichever web process answers
            started = time.monotonic()
            response = net.get(ops.base_url + "/ready", timeout=10)
            assert time.monotonic() - started < 3
            assert response.status_code == 503
            assert response.json()["responseStatus"]["errorCode"] == "ServiceUnavailable"
        # /metrics still answers, without the queues it could not read.
        assert ("orchestrator_queue_depth", (("queue", "dial"),)) not in scrape(ops)
    finally:
        restarted = redis_server.start(redis_srv.directory, port=redis_srv.port)
        redis_srv.process = restarted.process

    def ready() -> bool:
        return net.get(ops.base_url + "/ready", timeout=5).status_code == 200

    wait_until(ready, 10, "/ready to answer 200 again")
    assert net.get(ops.base_url + "/ready", timeout=5).json() == {"ok": True}


# --- settings ---------------------------------------------------------------------

GOOD = {
    "REDIS_URL": "redis://127.0.0.1:6390/0",
    "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
    "TWILIO_AUTH_TOKEN": "secret",
    "PUBLIC_BASE_URL": "https://orchestrator.example.com/",
}


def test_log_and_metrics_settings(tmp_path: Path) -> None:
    s = Settings.from_env(GOOD)
    assert (s.log_format, s.log_level) == ("text", "INFO")
    loud = Settings.from_env({**GOOD, "LOG_FORMAT": "JSON", "LOG_LEVEL": "debug"})
    assert (loud.log_format, loud.log_level) == ("json", "DEBUG")
    # One default directory per Redis URL: a deployment's web and workers on a machine meet.
    other = Settings.from_env({**GOOD, "REDIS_URL": "redis://127.0.0.1:6391/0"})
    assert s.metrics_dir == Settings.from_env(GOOD).metrics_dir != other.metrics_dir
    given = Settings.from_env({**GOOD, "METRICS_DIR": str(tmp_path)})
    assert given.metrics_dir == str(tmp_path)
    for name, value in (("LOG_FORMAT", "yaml"), ("LOG_LEVEL", "chatty")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**GOOD, name: value})


def test_a_bad_log_format_stops_web_and_worker_with_one_line() -> None:
    env = {**os.environ, **GOOD, "LOG_FORMAT": "yaml"}
    for command in ("web", "worker"):
        result = cli(command, env=env)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "orchestrator: LOG_FORMAT must be text or json"
        ]

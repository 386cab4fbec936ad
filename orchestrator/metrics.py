"""The service's Prometheus metrics (docs/operations.md), shared by the web and worker processes.

prometheus_client's multiprocess mode: every process writes its samples to
memory-mapped files in one directory per machine (`PROMETHEUS_MULTIPROC_DIR`,
which `orchestrator web` and `orchestrator worker` set from METRICS_DIR before
anything imports prometheus_client), and `GET /metrics` on any web process adds
up the files of every process of the machine, web and worker alike. Counting is
a write to the process's own mapped file: no Redis round trip, no syscall.

The queue depth is not counted by anyone: the web reads it from Redis when it
is scraped (`queue_depth`). Nor are the ring queues' figures: the scripts keep them
in Redis (calls by outcome and waits, per queue; every user's agent state), and
the web reads them at scrape too (`ring_queues`, from orchestrator/queue_reads.py),
so every web process answers the same totals.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from orchestrator.queue_reads import WAIT_BUCKETS, Snapshot

CONTENT_TYPE = CONTENT_TYPE_LATEST

REQUESTS = Counter(
    "orchestrator_requests",
    "API requests answered, by operation (its request DTO's name) and HTTP status",
    ["operation", "status"],
)
CALLBACKS = Counter(
    "orchestrator_callbacks",
    "Signed Twilio webhooks, by event (CallStatus, StatusCallbackEvent, or incoming-call) and "
    "what applying it did: applied, unchanged, final, stale, replayed, unknown, unknown-member, "
    "ignored (for an incoming call: created, exists, nonumber)",
    ["event", "outcome"],
)
SIGNATURE_FAILURES = Counter(
    "orchestrator_signature_failures",
    "Webhook requests refused (403) for a missing or invalid X-Twilio-Signature",
    ["webhook"],
)
DIALS = Counter(
    "orchestrator_dials",
    "Dial attempts that did not end in a retry, by outcome (dialled, rejected: Twilio refused "
    "the create; gave-up: retries ran out; reconciled: an earlier attempt's leg was found; "
    "removed; busy: left to another attempt; failed: the job failed; or why nobody was "
    "dialled: ended, final, missing, nocaller) and the Twilio error code behind it",
    ["outcome", "twilio_code"],
)
DIAL_RETRIES = Counter(
    "orchestrator_dial_retries",
    "Dial attempts handed back to RQ to retry with backoff, by reason (twilio: a 429 or 5xx; "
    "network; rate-limit: TWILIO_CPS; lookup: finding an earlier attempt's leg failed; busy: "
    "another attempt holds the member)",
    ["reason"],
)
DISPATCH = Histogram(
    "orchestrator_dispatch_seconds",
    "From an invite accepted (the member's dateCreated) to Twilio's answer to its participant "
    "create, for members dialled",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
CONTROL_JOBS = Counter(
    "orchestrator_control_jobs",
    "Control job runs, by outcome (settled, gone: the session expired; refused: Twilio refused "
    "a change; retried: Twilio 429/5xx or network, RQ retries; failed: no retry left)",
    ["outcome"],
)
EVENT_SUBSCRIBERS = Gauge(
    "orchestrator_event_subscribers",
    "Open live event streams",
    multiprocess_mode="livesum",
)
EVENTS_SENT = Counter(
    "orchestrator_events_sent_total",
    "Changes handed to live event subscribers (one per change per subscriber)",
)
EVENT_DROPS = Counter(
    "orchestrator_event_subscribers_dropped_total",
    "Live event subscribers dropped for falling too far behind (they may resume)",
)

# Event labels are the names Twilio documents (and ours for an incoming call and an agent's
# call); anything else counts as "other", so that no request can add a label value.
_EVENTS = frozenset(
    (
        "incoming-call",
        "agent-call",
        *("queued", "initiated", "ringing", "in-progress", "answered", "completed"),
        *("busy", "no-answer", "failed", "canceled"),
        *("conference-start", "conference-end", "participant-join", "participant-leave"),
        *("participant-mute", "participant-unmute", "participant-hold", "participant-unhold"),
        *("participant-modify", "participant-speech-start", "participant-speech-stop"),
        *("announcement-end", "announcement-fail"),
        *("conference-record-start", "conference-record-end"),
    )
)


def callback(event: str, outcome: str) -> None:
    """Count a signed webhook: its event and what applying it did."""
    CALLBACKS.labels(event if event in _EVENTS else "other", outcome).inc()


def directory() -> str | None:
    """The multiprocess directory this process writes to, or None when it counts in memory
    (a process not started by `orchestrator web` / `worker`, such as a test)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_exited() -> None:
    """At a clean exit: this process's live gauges (subscribers) no longer count."""
    path = directory()
    if path is not None:
        multiprocess.mark_process_dead(os.getpid(), path)


def queue_depth(lengths: Mapping[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "orchestrator_queue_depth",
        "Jobs waiting in each RQ queue (dial, control), read from Redis at scrape time; "
        "absent when Redis did not answer",
        labels=["queue"],
    )
    for queue, length in sorted(lengths.items()):
        family.add_metric([queue], length)
    return family


def ring_queues(snapshot: Snapshot) -> list[Metric]:
    """The ring queues' figures as Redis held them at scrape: calls by queue (its id) and
    outcome, answered calls' waits by queue, agents by state."""
    calls = CounterMetricFamily(
        "orchestrator_queue_calls",
        "Ring queue calls by queue (its id) and outcome: Answered (an agent took it), "
        "Abandoned (the caller hung up first), Missed (nobody took it, no overflow), "
        "Overflowed (sent to the queue's overflow)",
        labels=["queue", "outcome"],
    )
    waits = HistogramMetricFamily(
        "orchestrator_queue_wait_seconds",
        "How long answered ring queue calls waited for an agent, by queue (its id)",
        labels=["queue"],
    )
    bounds = [*(str(float(b)) for b in WAIT_BUCKETS), "+Inf"]
    for qid, stats in snapshot.queues.items():
        for outcome, count in sorted(stats.calls.items()):
            calls.add_metric([qid, outcome], count)
        cumulative, buckets = 0, []
        for bound, count in zip(bounds, stats.wait_buckets, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        # Counted in one script with its bucket, so the count is the +Inf bucket's.
        waits.add_metric([qid], buckets, stats.wait_sum_seconds)
    agents = GaugeMetricFamily(
        "orchestrator_agents",
        "Users by agent state (Ready, NotReady, LoggedOut, WrapUp), across every account",
        labels=["state"],
    )
    for state, count in sorted(snapshot.agents.items()):
        agents.add_metric([state], count)
    return [calls, waits, agents]


class _Families(Collector):
    def __init__(self, *families: Metric) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def exposition(queue_lengths: Mapping[str, int] | None, queues: Snapshot | None = None) -> bytes:
    """The text format of every process of this machine (or of this process alone, when
    it counts in memory), with the queue depth and the ring queues' figures when Redis
    gave them. Reads files: run it off the event loop."""
    registry = CollectorRegistry()
    path = directory()
    if path is None:
        registry.register(_Forward())
    else:
        multiprocess.MultiProcessCollector(registry, path)
    if queue_lengths is not None:
        registry.register(_Families(queue_depth(queue_lengths)))
    if queues is not None:
        registry.register(_Families(*ring_queues(queues)))
    return generate_latest(registry)


class _Forward(Collector):
    """This process's own metrics, counted in memory."""

    def collect(self) -> Iterator:
        return REGISTRY.collect()

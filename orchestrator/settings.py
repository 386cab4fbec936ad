"""Process configuration, read once from the environment at start.

A bad setting must stop the process before it serves anything, with one line
for each missing or malformed variable, all of them in one run: a typo in
production is found at deploy, not on the first live call, and fixed in one go.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from orchestrator import dial_policy, redis_client
from orchestrator.phone import InvalidPhoneNumber, normalise
from orchestrator.scripts import Retention

ACCOUNT_SID_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")
API_KEY_SID_RE = re.compile(r"^SK[0-9a-fA-F]{32}$")
APP_SID_RE = re.compile(r"^AP[0-9a-fA-F]{32}$")
# Twilio refuses an access token that lives longer than a day (errors 20104, 20157).
MAX_ACCESS_TOKEN_TTL = 24 * 3600
TWILIO_API = "https://api.twilio.com"


class ConfigError(Exception):
    """Settings are missing or malformed: one line (`problems`) for each, naming it;
    `missing` lists the required ones not set at all."""

    def __init__(self, *problems: str, missing: Sequence[str] = ()) -> None:
        super().__init__(*problems)
        self.problems = list(problems)
        self.missing = list(missing)

    def __str__(self) -> str:
        return "\n".join(self.problems)


@dataclass(frozen=True)
class Settings:
    redis_url: str
    twilio_account_sid: str
    twilio_auth_token: str
    twilio_api_base_url: str
    public_base_url: str
    default_caller_id: str | None
    twilio_cps: float
    phone_region: str = "US"
    # The countries any dial may reach unless the account has its own list
    # (orchestrator/dial_policy.py); default: the country of phone_region.
    dial_countries: tuple[str, ...] = ("US",)
    # The first retry is immediate: it is what recovers a job whose worker died,
    # and it needs no RQ scheduler (whose lock a dead worker holds for a minute).
    dial_retry_backoff: tuple[int, ...] = (0, 2, 4, 8, 16, 30)
    dial_job_timeout: int = 30
    hold_music_url: str | None = None  # None: Twilio's own hold music
    log_format: str = "text"
    log_level: str = "INFO"
    # prometheus_client's multiprocess directory, shared by this machine's processes.
    metrics_dir: str = ""
    # Live event streams (docs/events.md): the comment line that keeps an idle one open, and how
    # many events a subscriber may fall behind before it is dropped (it then resumes).
    event_heartbeat_seconds: float = 15.0
    event_buffer: int = 1000
    # An API change is answered once this many replicas have it (Redis WAIT), so a
    # failover cannot lose it; a wait longer than redis_wait_timeout_ms answers 503.
    redis_min_replicas: int = 0
    redis_wait_timeout_ms: int = 1000
    # How long Redis keeps an ended session and the live events (docs/events.md: an hour at least;
    # shorter only where no client resumes that far back, as in a soak test).
    session_retention_seconds: int = Retention.sessions
    event_retention_seconds: int = Retention.events
    # What signs agents' softphone tokens (docs/api.md, GetAppConfig). Optional: without them
    # the service runs and GetAppConfig answers an error naming what is missing.
    twilio_api_key_sid: str | None = None
    twilio_api_key_secret: str | None = None
    twilio_twiml_app_sid: str | None = None
    access_token_ttl: int = 3600

    @property
    def softphone_settings_missing(self) -> list[str]:
        """The settings agents' access tokens need that are not set (none: tokens can be minted)."""
        given = {
            "TWILIO_API_KEY_SID": self.twilio_api_key_sid,
            "TWILIO_API_KEY_SECRET": self.twilio_api_key_secret,
            "TWILIO_TWIML_APP_SID": self.twilio_twiml_app_sid,
        }
        return [name for name, value in given.items() if not value]

    @property
    def retention(self) -> Retention:
        return Retention(self.session_retention_seconds, self.event_retention_seconds)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings, or ConfigError naming every missing or malformed one at once: an
        operator fixes them all in one go, not one per restart."""
        env = os.environ if env is None else env
        problems: list[str] = []
        missing: list[str] = []

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                missing.append(name)
                problems.append(f"{name} is required but not set")
            return value

        def url(name: str, value: str) -> str:
            try:
                return _http_url(env, name, value)
            except ConfigError as exc:
                problems.extend(exc.problems)
                return value

        sid = required("TWILIO_ACCOUNT_SID")
        if sid and not ACCOUNT_SID_RE.match(sid):
            problems.append("TWILIO_ACCOUNT_SID must look like AC followed by 32 hex digits")
        token = required("TWILIO_AUTH_TOKEN")
        redis_url = required("REDIS_URL")
        if redis_url:
            try:
                redis_client.sentinel_group(redis_url)
            except ValueError as exc:
                problems.append(str(exc))
        public = required("PUBLIC_BASE_URL")
        public = url("PUBLIC_BASE_URL", public) if public else public
        api = url("TWILIO_API_BASE_URL", env.get("TWILIO_API_BASE_URL") or TWILIO_API)
        region = (env.get("PHONE_DEFAULT_REGION") or "US").strip().upper()
        if region not in dial_policy.KNOWN_COUNTRIES:
            problems.append("PHONE_DEFAULT_REGION must be a country code, e.g. US or GB")
        raw_countries = env.get("DIAL_COUNTRIES", "").strip()
        try:
            dial_countries = dial_policy.parse_countries(raw_countries or region)
        except ValueError as exc:
            dial_countries = ()
            if raw_countries:  # else PHONE_DEFAULT_REGION's own line says it
                problems.append(f"DIAL_COUNTRIES: {exc}")

        caller = env.get("DEFAULT_CALLER_ID", "").strip() or None
        if caller is not None:
            try:
                caller = normalise(caller, region)
            except InvalidPhoneNumber:
                problems.append("DEFAULT_CALLER_ID must be an E.164 phone number")

        raw_cps = env.get("TWILIO_CPS", "").strip() or "1"
        try:
            cps = float(raw_cps)
        except ValueError:
            cps = 0.0
        if not cps > 0:
            problems.append("TWILIO_CPS must be a number greater than 0")

        raw_backoff = env.get("DIAL_RETRY_BACKOFF", "").strip() or ",".join(
            map(str, cls.dial_retry_backoff)
        )
        try:
            backoff = tuple(int(part) for part in raw_backoff.split(","))
        except ValueError:
            backoff = ()
        if not backoff or min(backoff) < 0:
            problems.append("DIAL_RETRY_BACKOFF must be whole seconds >= 0, comma separated")

        raw_timeout = env.get("DIAL_JOB_TIMEOUT", "").strip() or str(cls.dial_job_timeout)
        if not raw_timeout.isdigit() or not 3 <= int(raw_timeout) <= 300:
            problems.append("DIAL_JOB_TIMEOUT must be whole seconds from 3 to 300")
            raw_timeout = str(cls.dial_job_timeout)

        hold_music = env.get("HOLD_MUSIC_URL", "").strip()
        hold_music_url = url("HOLD_MUSIC_URL", hold_music) if hold_music else None

        log_format = (env.get("LOG_FORMAT") or "text").strip().lower()
        if log_format not in ("text", "json"):
            problems.append("LOG_FORMAT must be text or json")
        log_level = (env.get("LOG_LEVEL") or "INFO").strip().upper()
        if log_level not in logging.getLevelNamesMapping():
            problems.append("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")

        heartbeat = _number(env, "EVENT_HEARTBEAT_SECONDS", cls.event_heartbeat_seconds)
        if not 0.05 <= heartbeat <= 300:
            problems.append("EVENT_HEARTBEAT_SECONDS must be a number from 0.05 to 300")
        buffer = _number(env, "EVENT_BUFFER", cls.event_buffer)
        if not _whole(buffer) or not 1 <= buffer <= 1_000_000:
            problems.append("EVENT_BUFFER must be a whole number from 1 to 1000000")

        replicas = _number(env, "REDIS_MIN_REPLICAS", cls.redis_min_replicas)
        if not _whole(replicas) or not 0 <= replicas <= 100:
            problems.append("REDIS_MIN_REPLICAS must be a whole number from 0 to 100")
        wait_ms = _number(env, "REDIS_WAIT_TIMEOUT_MS", cls.redis_wait_timeout_ms)
        if not _whole(wait_ms) or not 10 <= wait_ms <= 10_000:
            problems.append("REDIS_WAIT_TIMEOUT_MS must be whole milliseconds from 10 to 10000")

        sessions = _number(env, "SESSION_RETENTION_SECONDS", cls.session_retention_seconds)
        kept = _number(env, "EVENT_RETENTION_SECONDS", cls.event_retention_seconds)
        if not _whole(kept) or not 60 <= kept <= 7 * 24 * 3600:
            problems.append("EVENT_RETENTION_SECONDS must be whole seconds from 60 to 604800")
            kept = 60  # the sessions' own bound is checked against the least
        if not _whole(sessions) or not kept <= sessions <= 366 * 24 * 3600:
            problems.append(
                "SESSION_RETENTION_SECONDS must be whole seconds from EVENT_RETENTION_SECONDS "
                "(live events show the sessions they are of) to 31622400"
            )

        key_sid = env.get("TWILIO_API_KEY_SID", "").strip() or None
        if key_sid is not None and not API_KEY_SID_RE.match(key_sid):
            problems.append("TWILIO_API_KEY_SID must look like SK followed by 32 hex digits")
        key_secret = env.get("TWILIO_API_KEY_SECRET", "").strip() or None
        app_sid = env.get("TWILIO_TWIML_APP_SID", "").strip() or None
        if app_sid is not None and not APP_SID_RE.match(app_sid):
            problems.append("TWILIO_TWIML_APP_SID must look like AP followed by 32 hex digits")
        token_ttl = _number(env, "ACCESS_TOKEN_TTL", cls.access_token_ttl)
        if not _whole(token_ttl) or not 1 <= token_ttl <= MAX_ACCESS_TOKEN_TTL:
            problems.append(
                f"ACCESS_TOKEN_TTL must be whole seconds from 1 to {MAX_ACCESS_TOKEN_TTL} "
                "(Twilio refuses a longer-lived token)"
            )

        if problems:
            raise ConfigError(*problems, missing=missing)
        return cls(
            redis_url=redis_url,
            twilio_account_sid=sid,
            twilio_auth_token=token,
            twilio_api_base_url=api,
            public_base_url=public,
            default_caller_id=caller,
            twilio_cps=cps,
            phone_region=region,
            dial_countries=dial_countries,
            dial_retry_backoff=backoff,
            dial_job_timeout=int(raw_timeout),
            hold_music_url=hold_music_url,
            log_format=log_format,
            log_level=log_level,
            metrics_dir=_metrics_dir(env, redis_url),
            event_heartbeat_seconds=heartbeat,
            event_buffer=int(buffer),
            redis_min_replicas=int(replicas),
            redis_wait_timeout_ms=int(wait_ms),
            session_retention_seconds=int(sessions),
            event_retention_seconds=int(kept),
            twilio_api_key_sid=key_sid,
            twilio_api_key_secret=key_secret,
            twilio_twiml_app_sid=app_sid,
            access_token_ttl=int(token_ttl),
        )


def _whole(value: float) -> bool:
    """A whole number (not NaN, the mark of a value that is not a number at all)."""
    return math.isfinite(value) and value == int(value)


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    """The variable as a number, NaN (which no range check admits) if it is not one."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        return float("nan")


def _metrics_dir(env: Mapping[str, str], redis_url: str) -> str:
    """METRICS_DIR, else PROMETHEUS_MULTIPROC_DIR, else one temporary directory per Redis
    URL: the web and worker processes of one deployment on a machine meet there."""
    given = (env.get("METRICS_DIR") or env.get("PROMETHEUS_MULTIPROC_DIR") or "").strip()
    if given:
        return os.path.abspath(given)
    digest = hashlib.sha256(redis_url.encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"orchestrator-metrics-{digest}")


def _http_url(env: Mapping[str, str], name: str, value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL")
    return value.strip().rstrip("/")

"""Log lines of the web and worker processes (docs/operations.md): short text lines by default,
or with `LOG_FORMAT=json` one JSON object per line, carrying the session, member
and call SIDs as fields when the line is about one (`extra=ids(...)`)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The record attributes `ids` sets, in the order a JSON line shows them.
FIELDS = ("sessionId", "memberId", "callSid")


def ids(session: str | None = None, member: str | None = None, call: str | None = None) -> dict:
    """`extra=` for a log call about a session, a member, a call leg: the fields known."""
    values = (("sessionId", session), ("memberId", member), ("callSid", call))
    return {name: value for name, value in values if value}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ms), level, logger, message, the SIDs
    given with `extra=ids(...)`, and the traceback, if any, as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)


def config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for a process: our handler on the root logger, so
    every library's records (uvicorn's, RQ's) come out in the same format. uvicorn applies
    it in each of its worker processes too (`log_config`)."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "main"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # The twilio client logs every request's headers at INFO.
            "twilio.http_client": {"level": "WARNING"},
            # uvicorn's own loggers would otherwise keep handlers of their own.
            **{
                name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
        },
    }

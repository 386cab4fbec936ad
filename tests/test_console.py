"""The agent console (docs/events.md) in a real browser: Debian's Chromium, driven by
Playwright, against the running web, worker, emulator and Redis.

What an agent does is done through the page (paste the key, invite, remove,
hold, resume, end, place a call from the dial box, set their state), and what the
page shows must follow the calls and the agents' states live from the event stream,
never from a reload. Callees ring for a while here, so the page can be seen showing
Ringing before Connected; the agents' softphones are registered at the emulator
(`Stack.softphone`) and answer, decline or ignore as each test says.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import phonenumbers
import pytest
import redis
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright

from orchestrator import keys, provision
from orchestrator.launch import wait_until
from tests.support import net
from tests.support.accounts import Account, new_account, random_number
from tests.support.ringqueues import agent_state, new_queue, set_state
from tests.support.stack import Stack, private_stack, ringing_stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RING_SECONDS = 1.5
WAIT_MS = 15_000  # what any one expectation may take: a dial, a callback, a reconnect
NARROW = {"width": 360, "height": 740}  # a small phone
US_PREMIUM = "+19002345678"  # never dialled (docs/api.md, where dials may go)


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Its own Redis, emulator, web and worker, with callees that ring for 1.5 s."""
    with ringing_stack(tmp_path_factory, "console", RING_SECONDS, RING_SECONDS * 2) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the console's browser test needs Debian's Chromium "
            "(apt-get install -y chromium)"
        )
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def desk(console_stack: Stack) -> Account:
    """A fresh account with a number, a user and a User key (acting as no user)."""
    return new_account(console_stack.redis_url, "Console Co")


class Tab:
    """A browser tab on the console that records every request it makes and every
    error its scripts raise, so a test can check the page stayed on this server."""

    def __init__(self, context: BrowserContext, stack: Stack) -> None:
        self.stack = stack
        self.page: Page = context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda message: (
                self.errors.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )

    def open(self, path: str = "/console") -> None:
        response = self.page.goto(self.stack.base_url + path)
        assert response is not None and response.status == 200, response

    def by(self, testid: str, root: Locator | None = None) -> Locator:
        return (root or self.page).locator(f'[data-testid="{testid}"]')

    def connect(self, key: str) -> None:
        self.by("key-input").fill(key)
        self.by("key-submit").click()

    def session(self, sid: str) -> Locator:
        return self.page.locator(f'[data-testid="session"][data-session-id="{sid}"]')

    def member(self, card: Locator, identity: str) -> Locator:
        return card.locator(f'[data-testid="member"][data-identity="{identity}"]')

    def state_of(self, row: Locator) -> Locator:
        return self.by("member-state", row)

    def check_stayed_home(self) -> None:
        origin = self.stack.base_url + "/"
        elsewhere = [url for url in self.requests if not url.startswith(origin)]
        assert not elsewhere, f"the page loaded from other hosts: {elsewhere}"
        assert any(u.endswith("/console/console.js") for u in self.requests), self.requests
        assert not self.errors, self.errors

    def screenshot(self, tmp_path: Path, name: str) -> Path:
        path = tmp_path / name
        self.page.screenshot(path=str(path), full_page=True)
        print(f"console screenshot: {path}")
        if artifacts := os.environ.get("TEST_ARTIFACTS"):
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(artifacts) / name)
        return path


@pytest.fixture
def tab(browser: Browser, console_stack: Stack) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield Tab(context, console_stack)
    finally:
        context.close()


def _agent_key(stack: Stack, account: Account) -> str:
    """A User key that acts as the account's user, Ada Agent."""
    r = redis.Redis.from_url(stack.redis_url)
    return provision.create_key(r, account.id, ["User"], user=account.user_id)


def _number_ending(ending: str) -> str:
    """A valid US number that ends in `ending`: the emulator's callee table
    (docs/emulator.md) says what such a callee does."""
    while True:
        number = f"+1415{random.randint(200, 999)}{ending}"
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number


def _fits(page: Page) -> bool:
    """No horizontal scrolling: the page is no wider than the window."""
    return page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def _api(stack: Stack, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    with stack.client(key) as client:
        return client.request(method, path, **kwargs)


def _session(stack: Stack, key: str, sid: str) -> dict[str, Any]:
    response = _api(stack, key, "GET", f"/sessions/{sid}")
    assert response.status_code == 200, response.text
    return response.json()


def _api_member(stack: Stack, key: str, sid: str, identity: str) -> dict[str, Any]:
    return [m for m in _session(stack, key, sid)["members"] if m["identity"] == identity][-1]


def test_the_console_follows_a_call_live_and_acts_on_it(
    tab: Tab, console_stack: Stack, desk: Account, tmp_path: Path
) -> None:
    stack = console_stack
    stack.softphone(_agent_key(stack, desk))  # Ada Agent answers when the page invites her
    tab.open()
    expect(tab.by("key-form")).to_be_visible()

    # A wrong key is refused with the API's own message, and the key is asked for again.
    tab.connect("not-a-key")
    expect(tab.by("error-text")).to_contain_text("Invalid API key")
    expect(tab.by("stream-status")).to_have_text("Key refused")
    expect(tab.by("key-form")).to_be_visible()

    tab.connect(desk.key)
    expect(tab.by("stream-status")).to_have_text("Live")
    expect(tab.by("error")).to_be_hidden()
    expect(tab.by("empty")).to_be_visible()  # a new account has no calls yet
    # The stream is opened before the sessions are read, so no change falls between them.
    paths = [httpx.URL(u).path for u in tab.requests]
    assert paths.index("/sessions/events") < paths.index("/sessions/active"), paths

    # A customer calls: the session appears without a reload, the caller in the call.
    caller = random_number()
    sid = stack.incoming_call(caller, desk.number)["conferenceName"]
    card = tab.session(sid)
    expect(card).to_have_count(1)
    expect(tab.by("session-state", card)).to_have_text("Connected")
    expect(tab.state_of(tab.member(card, caller))).to_have_text("Connected")
    expect(tab.by("member-role", tab.member(card, caller))).to_have_text("Caller")
    expect(tab.by("session-count")).to_have_text("1")
    expect(tab.by("empty")).to_be_hidden()

    # A key of no user: the page says so in plain words, and offers no dial box.
    expect(tab.by("agent-note")).to_contain_text("not to one agent")
    expect(tab.by("dial-form")).to_be_hidden()
    expect(tab.by("my-calls")).to_be_hidden()
    expect(tab.by("agent")).to_be_hidden()
    expect(tab.by("agent-status")).to_be_hidden()  # a state is a user's
    expect(tab.by("queues")).to_be_hidden()  # the account has no ring queues

    # A failed action shows the API's ResponseStatus message on the card it was for.
    refused = _api(stack, desk.key, "POST", f"/sessions/{sid}/members", json={"memberToAdd": "12"})
    assert refused.status_code == 400, refused.text
    tab.by("invite-input", card).fill("12")
    tab.by("invite-button", card).click()
    card_error = tab.by("session-error-text", card)
    expect(card_error).to_contain_text(refused.json()["responseStatus"]["message"])
    expect(card_error).to_contain_text("The invite did not work")
    expect(card_error).not_to_contain_text("{")
    expect(tab.by("error")).to_be_hidden()  # not the page's error line

    # Invite a number through the page: Ringing, then Connected, live.
    colleague = random_number()
    tab.by("invite-input", card).fill(colleague)
    tab.by("invite-button", card).click()
    row = tab.member(card, colleague)
    expect(tab.state_of(row)).to_have_text("Ringing")
    expect(tab.by("session-error", card)).to_be_hidden()  # the next action that works clears it
    expect(tab.by("member-role", row)).to_have_text("Transfer")
    expect(tab.state_of(row)).to_have_text("Connected")
    expect(tab.by("invite-input", card)).to_have_value("")

    # Muted by another console (the API): the page shows it.
    expect(tab.by("member-muted", row)).to_be_hidden()
    call_sid = _api_member(stack, desk.key, sid, colleague)["callSid"]
    muted = _api(
        stack,
        desk.key,
        "PATCH",
        f"/sessions/{sid}/conference/members/{call_sid}",
        json={"muted": True},
    )
    assert muted.status_code == 200, muted.text
    expect(tab.by("member-muted", row)).to_be_visible()

    # And a user, by email: shown by name, as an Agent.
    tab.by("invite-input", card).fill(desk.user_email)
    tab.by("invite-button", card).click()
    agent = tab.member(card, desk.user_id)
    expect(tab.by("member-name", agent)).to_have_text("Ada Agent")
    expect(tab.by("member-role", agent)).to_have_text("Agent")
    expect(tab.state_of(agent)).to_have_text("Connected")
    tab.screenshot(tmp_path, "console.png")

    # Hold: a key of no user holds everyone in the call; resume takes them all off hold.
    expect(tab.by("resume", card)).to_be_disabled()
    tab.by("hold", card).click()
    expect(tab.by("session-state", card)).to_have_text("Hold")
    for identity in (caller, colleague, desk.user_id):
        expect(tab.state_of(tab.member(card, identity))).to_have_text("Hold")
    expect(tab.by("hold", card)).to_be_disabled()
    tab.by("resume", card).click()
    expect(tab.by("session-state", card)).to_have_text("Connected")
    for identity in (caller, colleague, desk.user_id):
        expect(tab.state_of(tab.member(card, identity))).to_have_text("Connected")

    # Remove the colleague: it leaves the call, and the API agrees.
    tab.by("remove-member", row).click()
    expect(tab.state_of(row)).to_have_text("Removed")
    expect(tab.by("remove-member", row)).to_be_hidden()
    expect(row).to_have_class(re.compile(r"\binactive\b"))
    assert _api_member(stack, desk.key, sid, colleague)["callState"] == "None"
    expect(tab.state_of(tab.member(card, caller))).to_have_text("Connected")

    # End the call: the page asks first; "Keep the call" keeps it.
    tab.by("end-call", card).click()
    expect(tab.by("end-confirm", card)).to_be_visible()
    tab.by("end-confirm-no", card).click()
    expect(tab.by("end-confirm", card)).to_be_hidden()
    expect(tab.by("session-state", card)).to_have_text("Connected")
    assert _session(stack, desk.key, sid)["ended"] is False
    # Confirmed, it ends: the card says how it ended, then leaves the active view.
    tab.by("end-call", card).click()
    tab.by("end-confirm-yes", card).click()
    expect(tab.by("session-state", card)).to_have_text("Disconnected")
    expect(tab.by("session-note", card)).to_contain_text("Ended by")
    expect(tab.by("end-call", card)).to_be_disabled()
    tab.screenshot(tmp_path, "console-ended.png")
    expect(card).to_have_count(0)
    expect(tab.by("session-count")).to_have_text("0")
    assert _session(stack, desk.key, sid)["ended"] is True

    tab.check_stayed_home()


def test_an_agent_places_a_call_from_the_dial_box_and_finds_it_under_my_calls(
    tab: Tab, console_stack: Stack, desk: Account, tmp_path: Path
) -> None:
    stack = console_stack
    key = _agent_key(stack, desk)
    stack.softphone(key, answer="answer")
    # A customer's call that the agent is not in: one of the account's other calls.
    other = stack.incoming_call(random_number(), desk.number)["conferenceName"]

    tab.open(f"/console#key={key}")
    expect(tab.by("stream-status")).to_have_text("Live")
    # Who the agent is, from GET /app/config.
    expect(tab.by("agent-name")).to_have_text("Ada Agent")
    expect(tab.by("agent-identity")).to_have_text(desk.user_id)
    expect(tab.by("agent-note")).to_be_hidden()
    expect(tab.by("my-calls")).to_be_visible()
    expect(tab.by("my-empty")).to_be_visible()
    expect(tab.by("sessions-heading")).to_have_text("Other calls on the account")
    expect(tab.by("sessions").locator(f'[data-session-id="{other}"]')).to_have_count(1)
    expect(tab.by("session-count")).to_have_text("1")

    # A number the account may not dial: the API's message, in plain words, by the box.
    refused = _api(stack, key, "POST", "/sessions/outgoing", json={"numberToDial": US_PREMIUM})
    assert refused.status_code == 400, refused.text
    message = refused.json()["responseStatus"]["message"]
    tab.by("dial-input").fill(US_PREMIUM)
    tab.by("dial-button").click()
    expect(tab.by("dial-error")).to_contain_text(message)
    expect(tab.by("dial-error")).not_to_contain_text("{")
    expect(tab.by("error")).to_be_hidden()
    expect(tab.by("my-empty")).to_be_visible()  # nothing was placed

    # Click to call: the agent's softphone rings and answers, then the number is dialled.
    number = random_number()
    tab.by("dial-input").fill(number)
    tab.by("dial-button").click()
    expect(tab.by("dial-error")).to_be_hidden()
    expect(tab.by("dial-input")).to_have_value("")
    mine = tab.by("my-sessions").locator('[data-testid="session"]')
    expect(mine).to_have_count(1)
    sid = mine.get_attribute("data-session-id")
    assert sid and sid != other
    card = tab.session(sid)
    expect(tab.by("session-sub", card)).to_contain_text("Outgoing")
    me = tab.member(card, desk.user_id)
    expect(tab.by("member-you", me)).to_be_visible()
    expect(tab.by("member-role", me)).to_have_text("Agent (original)")
    expect(tab.state_of(me)).to_have_text("Connected")
    callee = tab.member(card, number)
    expect(tab.by("member-you", callee)).to_be_hidden()
    expect(tab.state_of(callee)).to_have_text("Connected")
    expect(tab.by("my-count")).to_have_text("1")
    expect(tab.by("my-empty")).to_be_hidden()
    expect(tab.by("session-count")).to_have_text("1")  # the other call stays apart
    listed = _api(stack, key, "GET", "/sessions/my")
    assert [s["id"] for s in listed.json()["sessions"]] == [sid], listed.text
    tab.screenshot(tmp_path, "console-agent.png")

    # On a small phone nothing scrolls sideways, with the confirm step and an error open.
    tab.page.set_viewport_size(NARROW)
    tab.by("dial-input").fill(US_PREMIUM)
    tab.by("dial-button").click()
    expect(tab.by("dial-error")).to_be_visible()
    tab.by("end-call", card).click()
    expect(tab.by("end-confirm", card)).to_be_visible()
    wait_until(lambda: _fits(tab.page), 5, "the page to fit 360 px")
    boxes = [mine.bounding_box(), tab.session(other).bounding_box()]
    assert all(b is not None and b["x"] >= 0 and b["x"] + b["width"] <= 360 for b in boxes), boxes
    assert boxes[0]["y"] + boxes[0]["height"] <= boxes[1]["y"], boxes  # stacked: mine first
    tab.screenshot(tmp_path, "console-narrow.png")

    # Confirmed, the call ends and leaves my calls.
    tab.by("end-confirm-yes", card).click()
    expect(tab.by("session-state", card)).to_have_text("Disconnected")
    expect(card).to_have_count(0)
    expect(tab.by("my-empty")).to_be_visible()
    assert _session(stack, key, sid)["ended"] is True
    tab.check_stayed_home()


def test_each_member_shows_what_became_of_its_call(
    tab: Tab, console_stack: Stack, desk: Account
) -> None:
    """The emulator's callees that are busy, never answer and fail show as such, not
    as a bare None (docs/emulator.md's callee table)."""
    stack = console_stack
    tab.open(f"/console#key={desk.key}")
    expect(tab.by("stream-status")).to_have_text("Live")
    caller = random_number()
    sid = stack.incoming_call(caller, desk.number)["conferenceName"]
    card = tab.session(sid)
    expect(tab.state_of(tab.member(card, caller))).to_have_text("Connected")

    expected = {"0001": "Busy", "0002": "No answer", "0003": "Failed"}
    numbers = {ending: _number_ending(ending) for ending in expected}
    for number in numbers.values():
        tab.by("invite-input", card).fill(number)
        tab.by("invite-button", card).click()
        expect(tab.member(card, number)).to_have_count(1)
    for ending, label in expected.items():
        row = tab.member(card, numbers[ending])
        expect(tab.state_of(row)).to_have_text(label)
        expect(tab.by("remove-member", row)).to_be_hidden()  # over: nothing to remove
        assert _api_member(stack, desk.key, sid, numbers[ending])["callState"] == "None"
    expect(tab.state_of(tab.member(card, caller))).to_have_text("Connected")

    # The caller hangs up: Left.
    caller_sid = _api_member(stack, desk.key, sid, caller)["callSid"]
    assert stack.emulator(f"calls/{caller_sid}/hangup", "POST").is_success
    expect(tab.state_of(tab.member(card, caller))).to_have_text("Left")
    tab.check_stayed_home()


def test_without_softphones_the_page_says_so_and_learns_the_agent_from_their_calls(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A server whose softphones are not set up answers GetAppConfig 503 NotConfigured:
    the page says so in plain words and works all the same; who the agent is, it learns
    from the calls GET /sessions/my lists."""
    workdir = tmp_path_factory.mktemp("console-unconfigured")
    # The agent's Client rings for long: no softphone is registered to answer it.
    rings = ("--ring-seconds", "0.1", "--no-answer-seconds", "60")
    with private_stack(workdir, emulator_args=rings, softphones=False) as stack:
        desk = new_account(stack.redis_url, "Console Co")
        key = _agent_key(stack, desk)
        assert _api(stack, key, "GET", "/app/config").status_code == 503
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            tab = Tab(context, stack)
            tab.open(f"/console#key={key}")
            expect(tab.by("stream-status")).to_have_text("Live")
            expect(tab.by("agent-note")).to_contain_text("Softphones are not set up")
            expect(tab.by("agent")).to_be_hidden()  # not known yet
            expect(tab.by("dial-form")).to_be_visible()
            expect(tab.by("my-empty")).to_be_visible()

            # A customer's call, and the agent invited to it: it is one of my calls now.
            sid = stack.incoming_call(random_number(), desk.number)["conferenceName"]
            invited = _api(
                stack,
                desk.key,
                "POST",
                f"/sessions/{sid}/members",
                json={"memberToAdd": desk.user_id},
            )
            assert invited.status_code == 200, invited.text
            card = tab.by("my-sessions").locator(f'[data-session-id="{sid}"]')
            expect(card).to_have_count(1)
            expect(tab.by("agent-name")).to_have_text("Ada Agent")
            me = tab.member(card, desk.user_id)
            expect(tab.by("member-you", me)).to_be_visible()
            expect(tab.state_of(me)).to_have_text("Ringing")
            tab.check_stayed_home()
        finally:
            context.close()


def _shown(tab: Tab, testid: str) -> str:
    """The text of the first element `testid` as soon as the page shows it: checked on every
    animation frame, for what is on screen only a moment (an offer rings for seconds)."""
    script = f"""() => {{
        const el = document.querySelector('[data-testid="{testid}"]');
        return el && el.offsetParent !== null ? el.textContent : null;
    }}"""
    return tab.page.wait_for_function(script, polling="raf", timeout=WAIT_MS).json_value()


def _shows(tab: Tab, testid: str, text: str) -> None:
    """Waits until the element `testid` reads `text`, checked on every animation frame."""
    script = f"""() => {{
        const el = document.querySelector('[data-testid="{testid}"]');
        return el !== null && el.textContent === {text!r};
    }}"""
    tab.page.wait_for_function(script, polling="raf", timeout=WAIT_MS)


def test_the_agent_sets_their_state_and_sees_an_offer_ring_then_the_state_a_miss_sets(
    tab: Tab, console_stack: Stack, tmp_path: Path
) -> None:
    """The header's switch sets the agent's state through the API; a call of their queue
    rings for them in the page, waits in the queue panel, and the offer they let ring out
    puts them NotReady (MissedCall), shown live in plain words."""
    stack = console_stack
    q = new_queue(stack, strategy="ring-all", max_misses=1)
    ada = q.agent("Ada", answer="ignore", state="LoggedOut")
    bob = q.agent("Bob", answer="ignore", state="LoggedOut")
    tab.open(f"/console#key={ada.key}")
    expect(tab.by("stream-status")).to_have_text("Live")
    # GetAppConfig's state at load: a new agent is logged out.
    expect(tab.by("agent-state")).to_have_text("Logged out")
    expect(tab.by("agent-state-LoggedOut")).to_have_attribute("aria-pressed", "true")
    expect(tab.by("agent-state-Ready")).to_have_attribute("aria-pressed", "false")
    # The queue panel: the queue, no call waiting, its agents and their states.
    panel = tab.page.locator(f'[data-testid="queue"][data-queue-id="{q.id}"]')
    expect(tab.by("queue-name", panel)).to_have_text("Support")
    expect(tab.by("waiting-empty", panel)).to_be_visible()
    row = {
        a.id: panel.locator(f'[data-testid="queue-agent"][data-user-id="{a.id}"]')
        for a in (ada, bob)
    }
    expect(tab.by("queue-agent-state", row[ada.id])).to_have_text("Logged out")
    expect(tab.by("queue-agent-name", row[ada.id])).to_contain_text("Ada")

    # The switch: Ready, in Redis and in GetAppConfig; the panel follows.
    tab.by("agent-state-Ready").click()
    expect(tab.by("agent-state")).to_have_text("Ready")
    expect(tab.by("agent-state-Ready")).to_have_attribute("aria-pressed", "true")
    expect(tab.by("agent-state-error")).to_be_hidden()
    config = _api(stack, ada.key, "GET", "/app/config").json()
    assert (config["agentState"], config["agentStateReason"]) == ("Ready", "SetByUser"), config
    assert agent_state(stack, ada) == ("Ready", "SetByUser")
    expect(tab.by("queue-agent-state", row[ada.id])).to_have_text("Ready")
    # Another agent's change (through the API, elsewhere) shows in the panel too.
    set_state(stack, bob, "NotReady")
    expect(tab.by("queue-agent-state", row[bob.id])).to_have_text("Not ready")
    tab.screenshot(tmp_path, "console-queues.png")

    # On a small phone, a customer calls the queue: the offer rings for Ada in the page, and
    # the call waits in the panel, with its caller and how long it has waited.
    tab.page.set_viewport_size(NARROW)
    caller = random_number()
    sid = stack.incoming_call(caller, q.number)["conferenceName"]
    assert _shown(tab, "offer-text") == f"Incoming call from {caller}, queue Support"
    assert _shown(tab, "waiting-from") == caller
    tab.screenshot(tmp_path, "console-offer.png")
    assert _fits(tab.page), "the page scrolls sideways at 360 px"
    waiting = panel.locator(f'[data-testid="waiting-call"][data-session-id="{sid}"]')
    expect(waiting).to_have_count(1)
    expect(tab.by("waiting-time", waiting)).to_have_text(re.compile(r"^\d+:\d\d$"))

    # Ada's softphone lets it ring out: a miss (max misses 1), NotReady for missed calls, set
    # by the service and shown live; the offer is gone, and with nobody left to take it the
    # call leaves the queue.
    expect(tab.by("agent-state")).to_have_text("Not ready (missed calls)")
    expect(tab.by("agent-state-NotReady")).to_have_attribute("aria-pressed", "true")
    assert agent_state(stack, ada) == ("NotReady", "MissedCall")
    expect(tab.by("offer")).to_have_count(0)
    expect(tab.by("offers")).to_be_hidden()
    expect(waiting).to_have_count(0)
    expect(tab.by("waiting-empty", panel)).to_be_visible()
    expect(tab.by("queue-agent-state", row[ada.id])).to_have_text("Not ready (missed calls)")
    assert _session(stack, q.key, sid)["outcome"] == "Missed"
    tab.check_stayed_home()


def test_a_queue_call_the_agent_answers_is_theirs_then_wrap_up_shows_until_ready_again(
    tab: Tab, console_stack: Stack
) -> None:
    stack = console_stack
    q = new_queue(stack, strategy="ring-all", wrap_up=4)
    cy = q.agent("Cy", answer="answer")
    tab.open(f"/console#key={cy.key}")
    expect(tab.by("stream-status")).to_have_text("Live")
    expect(tab.by("agent-state")).to_have_text("Ready")

    caller = random_number()
    sid = stack.incoming_call(caller, q.number)["conferenceName"]
    assert _shown(tab, "offer-text") == f"Incoming call from {caller}, queue Support"
    # Answered on the softphone: no more offer; the call is one of Cy's, Connected.
    card = tab.by("my-sessions").locator(f'[data-session-id="{sid}"]')
    expect(tab.by("session-sub", card)).to_contain_text("queue Support (Connected)")
    expect(tab.state_of(tab.member(card, cy.id))).to_have_text("Connected")
    expect(tab.by("offer")).to_have_count(0)
    assert _session(stack, q.key, sid)["queueMemberId"] == cy.id

    # The caller hangs up: wrap-up, set by the service, then Ready again by itself.
    caller_sid = _api_member(stack, q.key, sid, caller)["callSid"]
    assert stack.emulator(f"calls/{caller_sid}/hangup", "POST").is_success
    _shows(tab, "agent-state", "Wrap-up (after a call)")
    expect(tab.by("agent-state-Ready")).to_have_attribute("aria-pressed", "false")
    expect(tab.by("agent-state")).to_have_text("Ready")
    assert agent_state(stack, cy) == ("Ready", "SetBySystem")
    tab.check_stayed_home()


def test_a_state_the_service_refuses_is_shown_next_to_the_switch(
    tab: Tab, console_stack: Stack, desk: Account
) -> None:
    stack = console_stack
    key = _agent_key(stack, desk)
    tab.open(f"/console#key={key}")
    expect(tab.by("agent-state")).to_have_text("Logged out")
    expect(tab.by("queues")).to_be_hidden()  # no queues in this account
    # The user is removed while the page is open: the API refuses the change (403).
    stack.redis.delete(keys.user(desk.user_id))
    refused = _api(stack, key, "PATCH", "/app/agent-state", json={"agentState": "Ready"})
    assert refused.status_code == 403, refused.text
    tab.by("agent-state-Ready").click()
    error = tab.by("agent-state-error")
    expect(error).to_contain_text(refused.json()["responseStatus"]["message"])
    expect(error).to_contain_text("Setting your state to Ready did not work")
    expect(error).not_to_contain_text("{")
    expect(tab.by("agent-state")).to_have_text("Logged out")
    expect(tab.by("stream-status")).to_have_text("Live")  # not a refused key
    expect(tab.by("error")).to_be_hidden()
    tab.check_stayed_home()


def test_a_key_in_the_address_is_used_then_taken_out_of_it(tab: Tab, desk: Account) -> None:
    tab.open(f"/console#key={desk.key}")
    expect(tab.by("stream-status")).to_have_text("Live")
    assert "#" not in tab.page.url and desk.key not in tab.page.url, tab.page.url
    assert tab.page.evaluate("Object.values(sessionStorage)") == [desk.key]
    expect(tab.by("key-form")).to_be_hidden()

    tab.page.reload()  # the tab keeps the key
    expect(tab.by("stream-status")).to_have_text("Live")
    expect(tab.by("key-hint")).to_have_text(f"key …{desk.key[-4:]}")

    tab.by("forget-key").click()
    expect(tab.by("key-form")).to_be_visible()
    expect(tab.by("stream-status")).to_have_text("Not connected")
    assert tab.page.evaluate("sessionStorage.length") == 0
    tab.check_stayed_home()


def test_a_key_without_the_user_role_is_refused_with_the_apis_message(
    tab: Tab, console_stack: Stack, desk: Account
) -> None:
    r = redis.Redis.from_url(console_stack.redis_url)
    key = provision.create_key(r, desk.id, ["Reports"])
    tab.open()
    tab.connect(key)
    expect(tab.by("error-text")).to_contain_text("Invalid Role")
    expect(tab.by("stream-status")).to_have_text("Key refused")
    expect(tab.by("key-form")).to_be_visible()
    assert tab.page.evaluate("sessionStorage.length") == 0
    tab.check_stayed_home()


def test_after_losing_the_stream_the_page_catches_up_from_its_last_event(
    tab: Tab, console_stack: Stack, desk: Account
) -> None:
    """While the page cannot reach the stream, a member is invited and answers; when it
    reconnects (with Last-Event-ID) it shows that, from the kept events, without a reload."""
    stack = console_stack
    tab.open()
    tab.connect(desk.key)
    expect(tab.by("stream-status")).to_have_text("Live")
    caller = random_number()
    sid = stack.incoming_call(caller, desk.number)["conferenceName"]
    card = tab.session(sid)
    expect(tab.state_of(tab.member(card, caller))).to_have_text("Connected")
    loads = sum(u.endswith("/sessions/active") for u in tab.requests)
    assert loads == 1, tab.requests

    # The web process dies and comes back while the page may not reach the stream.
    streams = re.compile(r".*/sessions/events$")
    tab.page.route(streams, lambda route: route.abort())
    stack.processes["web"].kill()
    expect(tab.by("stream-status")).to_have_text("Reconnecting…")
    stack.start("web", "-m", "orchestrator", "web", "--host", "127.0.0.1")
    wait_until(lambda: _reachable(stack.base_url + "/health"), 20, "the web process to restart")

    colleague = random_number()
    invited = _api(
        stack, desk.key, "POST", f"/sessions/{sid}/members", json={"memberToAdd": colleague}
    )
    assert invited.status_code == 200, invited.text
    wait_until(
        lambda: _api_member(stack, desk.key, sid, colleague)["callState"] == "Connected",
        15,
        "the colleague to connect",
    )
    assert tab.member(card, colleague).count() == 0  # the page has not seen it yet

    tab.page.unroute(streams)
    expect(tab.by("stream-status")).to_have_text("Live", timeout=30_000)
    expect(tab.state_of(tab.member(card, colleague))).to_have_text("Connected")
    assert sum(u.endswith("/sessions/active") for u in tab.requests) == loads  # no reload
    tab.check_stayed_home()


def _reachable(url: str) -> bool:
    try:
        return net.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_the_console_files_are_served_from_the_package_and_load_nothing_else(
    console_stack: Stack,
) -> None:
    base = console_stack.base_url
    expected = {
        "/console": "text/html",
        "/console/console.js": "text/javascript",
        "/console/console.css": "text/css",
        "/console/icon.svg": "image/svg+xml",
    }
    for path, media_type in expected.items():
        response = net.get(base + path, timeout=10)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith(media_type), response.headers
        assert response.headers["cache-control"] == "no-cache"
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy, policy
        sources = re.findall(r"(?:src|href)=\"([^\"]+)\"", response.text)
        assert all(s.startswith("/console/") for s in sources), sources
        again = net.get(base + path, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304 and not again.content
    # Nothing in the page names another host (the SVG's XML namespace is a name, not a load).
    for path in expected:
        text = net.get(base + path, timeout=10).text.replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://|url\(", text), path
    missing = net.get(base + "/console/secrets.txt", timeout=10)
    assert missing.status_code == 404
    assert "responseStatus" in missing.json()


ROOT = Path(__file__).resolve().parent.parent


def test_the_log_texts_the_page_reads_are_the_ones_the_service_writes() -> None:
    """The member labels (console.js, memberOutcomes) read the session log: every end a
    call-progress callback logs, and each other text it reads, must be written as it
    expects, or a label would quietly fall back to Invited."""
    page = (ROOT / "orchestrator/console/console.js").read_text()
    lua = ROOT / "orchestrator/lua"
    call_event = (lua / "call_event.lua").read_text()
    table = re.search(r"local finals = \{(.*?)\n\}", call_event, re.S)
    assert table is not None, "call_event.lua has no finals table"
    finals = re.findall(r"\['[\w-]+'\] = '([^']+)'", table.group(1))
    assert len(finals) >= 5, finals
    for suffix in finals:
        assert f'"{suffix}"' in page, f"console.js does not read {suffix!r}"
    written = {
        "conference_event.lua": ["' left the conference'"],
        "begin_dial.lua": ["'Not dialled '", "': removed'", "': the session has ended'"],
        "remove_member.lua": ["'removed '", "' was removed'"],
        "redirect.lua": ["' left for the transfer'"],
        "_members.lua": ["'invited '", "'Invited '"],
    }
    for name, texts in written.items():
        source = (lua / name).read_text()
        for text in texts:
            assert text in source, f"{name} no longer writes {text}"
            assert text.strip("'").strip() in page, f"console.js does not read {text}"
    assert 'f"Could not dial ' in (ROOT / "workers/dial.py").read_text()
    assert "Could not dial " in page

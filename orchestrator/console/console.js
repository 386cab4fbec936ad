// The agent console: who the key's agent is (GET /app/config) and their state, with a
// switch to set it (PATCH /app/agent-state), the calls a ring queue offers them, the
// calls they are in (GET /sessions/my), a dial box (POST /sessions/outgoing), the calls
// waiting in the account's queues (GET /queues), and the account's other active
// sessions, all live from the event stream.
//
// Start-up order, so that no change is missed: open the stream, wait for the
// server's ": connected" comment, then read GET /sessions/active; every event
// carries the whole session after its change, and replaces our copy of it.
// EventSource cannot send an Authorization header, so the stream is read with
// fetch() and parsed here as the W3C server-sent events format defines it.
"use strict";

(() => {
  const KEY_STORAGE = "orchestrator.console.key";
  const STREAM_PATH = "/sessions/events";
  const DEFAULT_RETRY_MS = 1500; // until the server says otherwise (its "retry:" field)
  const MAX_RETRY_MS = 15000;
  const DROPPED_RETRY_MS = 300; // the server dropped a slow reader: catch up at once
  const ENDED_VISIBLE_MS = 4000; // an ended call stays in view this long, then fades out
  const FADE_MS = 800;

  const byId = (root, id) => root.querySelector(`[data-testid="${id}"]`);
  const ui = {
    keyForm: byId(document, "key-form"),
    keyInput: byId(document, "key-input"),
    status: byId(document, "stream-status"),
    keyHint: byId(document, "key-hint"),
    forget: byId(document, "forget-key"),
    error: byId(document, "error"),
    errorText: byId(document, "error-text"),
    errorDismiss: byId(document, "error-dismiss"),
    summary: byId(document, "summary"),
    count: byId(document, "session-count"),
    empty: byId(document, "empty"),
    sessions: byId(document, "sessions"),
    account: byId(document, "account-name"),
    agent: byId(document, "agent"),
    agentName: byId(document, "agent-name"),
    agentIdentity: byId(document, "agent-identity"),
    agentNote: byId(document, "agent-note"),
    dialForm: byId(document, "dial-form"),
    dialInput: byId(document, "dial-input"),
    dialButton: byId(document, "dial-button"),
    dialError: byId(document, "dial-error"),
    myCalls: byId(document, "my-calls"),
    myCount: byId(document, "my-count"),
    myEmpty: byId(document, "my-empty"),
    mySessions: byId(document, "my-sessions"),
    heading: byId(document, "sessions-heading"),
    agentStatus: byId(document, "agent-status"),
    agentState: byId(document, "agent-state"),
    agentStateError: byId(document, "agent-state-error"),
    stateButtons: [...document.querySelectorAll('[data-testid="agent-state-switch"] button')],
    offers: byId(document, "offers"),
    queues: byId(document, "queues"),
    queueList: byId(document, "queue-list"),
    queuesError: byId(document, "queues-error"),
    waitingCount: byId(document, "waiting-count"),
  };
  const sessionTemplate = document.getElementById("session-template");
  const memberTemplate = document.getElementById("member-template");

  const state = {
    key: null,
    generation: 0, // bumped whenever the key changes: work of an older key is dropped
    controller: null, // aborts the open stream
    reconnectTimer: null,
    lastEventId: null,
    retryMs: DEFAULT_RETRY_MS,
    failures: 0,
    live: false,
    loaded: false,
    loadSeq: 0,
    buffer: null, // events that arrive while the active list loads, applied after it
    sessions: new Map(), // session id -> the latest SessionInfo
    cards: new Map(), // session id -> its card
    fading: new Map(), // session id -> timer of an ended session's removal
    busy: new Set(), // "<session id>:<action>" while its request is under way
    errorSource: null,
    // Who the key acts as, from GET /app/config: "user" (me is known), "unconfigured"
    // (a user, but softphones are not set up: me may be learnt from my calls), "nouser"
    // (403: an account-wide key), or null while the answer is awaited.
    kind: null,
    me: null, // {endpointId, identity, name, email} of the key's user
    mine: new Set(), // ids of the sessions GET /sessions/my listed
    myAvailable: null, // false when the server has no GET /sessions/my
    myTimer: null,
    mySeq: 0,
    dialing: false,
    // The agent's own state (AppConfig's, then AgentStateChanged events and PATCH answers).
    agentState: null, // {agentState, agentStateReason}, or null while unknown
    agentEvents: 0, // how many AgentStateChanged events of the agent arrived: newer than a read
    settingState: false,
    settingTo: null,
    statesSeen: new Map(), // user id -> their latest AgentStateChanged, with its arrival number
    // The account's ring queues (GET /queues), and when that answer came (local clock).
    queues: null,
    queuesAt: 0,
    queuesAvailable: null, // false when the server has no GET /queues for this key
    queueTimer: null,
    queueSeq: 0,
  };
  const MY_REFRESH_MS = 250; // events come in bursts: one GET /sessions/my per burst
  const QUEUES_REFRESH_MS = 300; // and one GET /queues per burst, at most

  // --- the API --------------------------------------------------------------------------

  class ApiProblem extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** The ResponseStatus of an error answer, as one readable line. */
  function problemOf(status, body, text) {
    const rs = body && typeof body === "object" ? body.responseStatus || body.ResponseStatus : null;
    if (!rs) {
      const detail = text && text.length < 200 ? `: ${text}` : "";
      return new ApiProblem(status, `HTTP${status}`, `HTTP ${status}${detail}`);
    }
    const message = rs.message || rs.errorCode || `HTTP ${status}`;
    const more = (rs.errors || [])
      .map((e) => e && e.message)
      .filter((m) => m && m !== message);
    return new ApiProblem(status, rs.errorCode || "", [message, ...more].join("; "));
  }

  async function readProblem(response) {
    const text = await response.text().catch(() => "");
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    return problemOf(response.status, body, text);
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${state.key}`, Accept: "application/json" };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiProblem(0, "NetworkError", "The server could not be reached");
    }
    if (!response.ok) throw await readProblem(response);
    if (response.status === 204) return null;
    return response.json();
  }

  const sessionPath = (sid) => `/sessions/${encodeURIComponent(sid)}`;

  // --- the event stream -----------------------------------------------------------------

  /**
   * Reads a text/event-stream body, calling `on` with each message
   * ({event, data, id}), each comment ({comment}) and each retry ({retry}).
   */
  async function readEventStream(body, on) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    let event = "";
    let data = [];
    let id = null;

    const line = (text) => {
      if (text === "") {
        if (data.length) on({ event: event || "message", data: data.join("\n"), id });
        event = "";
        data = [];
        return;
      }
      if (text.startsWith(":")) {
        on({ comment: text.slice(1).trim() });
        return;
      }
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? "" : text.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id" && !value.includes("\0")) id = value;
      else if (field === "retry" && /^\d+$/.test(value)) on({ retry: Number(value) });
    };

    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      pending += value;
      let start = 0;
      for (let i = 0; i < pending.length; i++) {
        const c = pending[i];
        if (c !== "\n" && c !== "\r") continue;
        if (c === "\r" && i + 1 === pending.length) break; // a "\n" may follow in the next chunk
        line(pending.slice(start, i));
        if (c === "\r" && pending[i + 1] === "\n") i++;
        start = i + 1;
      }
      pending = pending.slice(start);
    }
  }

  async function openStream(gen) {
    if (gen !== state.generation) return;
    const controller = new AbortController();
    state.controller = controller;
    setStatus("wait", state.failures || state.loaded ? "Reconnecting…" : "Connecting…");
    const headers = { Authorization: `Bearer ${state.key}`, Accept: "text/event-stream" };
    if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;

    let response;
    try {
      response = await fetch(STREAM_PATH, { headers, signal: controller.signal, cache: "no-store" });
    } catch {
      if (gen === state.generation) reconnectLater(gen);
      return;
    }
    if (gen !== state.generation) return;
    const type = response.headers.get("content-type") || "";
    if (!response.ok || !type.startsWith("text/event-stream")) {
      const problem = response.ok
        ? new ApiProblem(response.status, "NotAStream", `the server answered ${type || "no content type"}`)
        : await readProblem(response);
      if (gen !== state.generation) return;
      if (response.status === 401 || response.status === 403) {
        refuseKey(problem);
        return;
      }
      showError(`Live updates unavailable: ${problem.message}. Retrying…`, "stream");
      if (!state.loaded) loadActive(gen);
      reconnectLater(gen);
      return;
    }

    const connection = { connected: false, dropped: false };
    try {
      await readEventStream(response.body, (message) => onStreamMessage(gen, connection, message));
    } catch {
      // aborted, or the connection broke: either way it is over
    }
    if (gen !== state.generation) return;
    setLive(false);
    reconnectLater(gen, connection.dropped ? DROPPED_RETRY_MS : undefined);
  }

  function reconnectLater(gen, delay) {
    state.failures += 1;
    // The server's retry interval for the first attempts, then longer and longer waits.
    const wait = delay ?? Math.min(state.retryMs * 2 ** Math.max(0, state.failures - 3), MAX_RETRY_MS);
    setStatus("wait", "Reconnecting…");
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(() => openStream(gen), wait);
  }

  function onConnected(gen, connection) {
    connection.connected = true;
    state.failures = 0;
    setLive(true);
    if (state.errorSource === "stream") clearError();
    // With a Last-Event-ID the server replays what we missed; without one, we read it all.
    if (!state.lastEventId || !state.loaded) loadActive(gen);
    refreshMine(gen, 0);
    refreshQueues(gen, 0);
  }

  function onStreamMessage(gen, connection, message) {
    if (gen !== state.generation) return;
    if (message.retry !== undefined) {
      state.retryMs = message.retry;
      return;
    }
    if (message.comment !== undefined) {
      if (!connection.connected && message.comment === "connected") onConnected(gen, connection);
      return;
    }
    if (!connection.connected) onConnected(gen, connection);
    if (message.id) state.lastEventId = message.id;
    if (message.event === "Dropped") {
      connection.dropped = true; // the server closes now; we resume from lastEventId
      setStatus("wait", "Catching up…");
      return;
    }
    if (message.event === "Reset") {
      // What happened since our Last-Event-ID is no longer kept: read everything again.
      loadActive(gen);
      refreshMine(gen, 0);
      refreshQueues(gen, 0);
      reloadOwnState(gen);
      return;
    }
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    if (message.event === "AgentStateChanged") {
      if (data && data.userId) onAgentStateChanged(gen, data);
      return;
    }
    if (!data || !data.session) return;
    if (state.buffer) state.buffer.push(data.session);
    else applySession(data.session, true);
    if (concernsMe(data.session)) refreshMine(gen, MY_REFRESH_MS);
    if (data.session.ringQueueId || (state.queues && state.queues.length)) refreshQueues(gen, QUEUES_REFRESH_MS);
  }

  async function loadActive(gen) {
    const seq = ++state.loadSeq;
    if (!state.buffer) state.buffer = [];
    try {
      const body = await api("GET", "/sessions/active");
      if (gen !== state.generation || seq !== state.loadSeq) return;
      const buffered = state.buffer || [];
      state.buffer = null;
      replaceAll((body && body.sessions) || []);
      for (const session of buffered) applySession(session, true);
      state.loaded = true;
      renderSummary();
    } catch (problem) {
      if (gen !== state.generation || seq !== state.loadSeq) return;
      const buffered = state.buffer || [];
      state.buffer = null;
      for (const session of buffered) applySession(session, true);
      if (problem.status === 401 || problem.status === 403) refuseKey(problem);
      else showError(`Loading the active sessions failed: ${problem.message}`, "load");
    }
  }

  // --- the agent ------------------------------------------------------------------------

  /**
   * Who the key acts as (GET /app/config). 403: a key of no user, an account-wide view;
   * 503 NotConfigured: a user, but the server cannot make softphone tokens, so it cannot
   * say which user either: we learn that from the calls GET /sessions/my lists.
   */
  async function loadAgent(gen) {
    const seen = state.agentEvents;
    try {
      const config = await api("GET", "/app/config");
      if (gen !== state.generation) return;
      const info = config.userInfo || {};
      const full = [info.firstName, info.lastName].filter(Boolean).join(" ");
      state.kind = "user";
      state.me = {
        endpointId: config.endpointId || null,
        identity: config.identity || config.endpointId || null,
        name: info.name || full || config.emailAddress || config.identity || "",
        email: config.emailAddress || "",
      };
      // An event of the agent that came while this was read is newer than its answer.
      const early = newerEvent(seen);
      if (early) setOwnState(early.agentState, early.agentStateReason);
      else setOwnState(config.agentState, config.agentStateReason);
      setNote("");
    } catch (problem) {
      if (gen !== state.generation) return;
      if (problem.status === 401) {
        refuseKey(problem);
        return;
      }
      if (problem.status === 403) {
        state.kind = "nouser";
        setNote(
          "This key belongs to the account, not to one agent: you see all of the account's calls, " +
            "but there is no \u201cMy calls\u201d list and no dial box. Use a key of your own to place calls.",
        );
      } else if (problem.code === "NotConfigured") {
        state.kind = "unconfigured";
        setNote(
          "Softphones are not set up on this server yet, so the console cannot tell who you are " +
            "until you are in a call, and calls to you may not ring. Everything else works.",
        );
      } else {
        // The server cannot say now: the account-wide view works all the same.
        state.kind = "unconfigured";
        setNote(`Your agent details could not be read (${problem.message}). Everything else works.`);
      }
    }
    renderAgent();
    rerenderAll();
    refreshMine(gen, 0);
  }

  function setNote(text) {
    ui.agentNote.textContent = text;
    ui.agentNote.hidden = !text;
  }

  function renderAgent() {
    const me = state.me;
    ui.agent.hidden = !me;
    ui.agentName.textContent = me ? me.name || me.identity || "" : "";
    ui.agentIdentity.textContent = me && me.identity && me.identity !== me.name ? me.identity : "";
    ui.agentIdentity.title = me ? "Your identity (the softphone registers under it)" : "";
    const user = state.kind === "user" || state.kind === "unconfigured";
    ui.dialForm.hidden = !state.key || !user;
    ui.myCalls.hidden = !state.key || !user;
    ui.heading.textContent = user ? "Other calls on the account" : "Active sessions";
    ui.agentStatus.hidden = !state.key || !user;
    renderOwnState();
  }

  /** Is this member the key's own user (by AppConfig.endpointId and identity)? */
  function isMe(member) {
    const me = state.me;
    if (!me || !member) return false;
    return Boolean(
      (me.endpointId && (member.endpointId === me.endpointId || member.identity === me.endpointId)) ||
        (me.identity && member.identity === me.identity),
    );
  }

  /** Whether a changed session may change the list of my calls. */
  function concernsMe(session) {
    if (state.kind !== "user" && state.kind !== "unconfigured") return false;
    if (state.myAvailable === false) return false;
    if (!state.me || state.mine.has(session.id)) return true;
    return (session.members || []).some(isMe);
  }

  /** Re-reads GET /sessions/my after `delay` ms (one request for a burst of events). */
  function refreshMine(gen, delay) {
    if (state.kind !== "user" && state.kind !== "unconfigured") return;
    if (state.myAvailable === false) return;
    clearTimeout(state.myTimer);
    state.myTimer = setTimeout(() => loadMine(gen), delay);
  }

  /**
   * Reads the list of a panel that the key or the server may not offer (GET /sessions/my,
   * GET /queues): its items that have an id, or null when there is nothing to show. An
   * answer overtaken by a newer read (the counter `state[seqName]`) or by another key is
   * dropped; 401 refuses the key; 403, 404 or 405 mean no such list for this key or on this
   * server (`unavailable`: no panel); any other failure is retried with the next change
   * (`failed`).
   */
  async function readPanelList(gen, seqName, path, listKey, unavailable, failed) {
    const seq = ++state[seqName];
    const current = () => gen === state.generation && seq === state[seqName];
    let body;
    try {
      body = await api("GET", path);
    } catch (problem) {
      if (!current()) return null;
      if (problem.status === 401) refuseKey(problem);
      else if (problem.status === 403 || problem.status === 404 || problem.status === 405) unavailable(problem);
      else failed(problem);
      return null;
    }
    if (!current()) return null;
    return ((body && body[listKey]) || []).filter((item) => item && item.id);
  }

  async function loadMine(gen) {
    const list = await readPanelList(
      gen,
      "mySeq",
      "/sessions/my",
      "sessions",
      (problem) => {
        state.myAvailable = false;
        ui.myEmpty.textContent = `Your calls cannot be listed here: ${problem.message}`;
        renderSummary();
      },
      (problem) => {
        ui.myEmpty.textContent = `Your calls could not be read: ${problem.message}. Retrying with the next change.`;
      },
    );
    if (!list) return;
    state.myAvailable = true;
    ui.myEmpty.textContent = "You are in no call right now.";
    state.mine = new Set(list.map((s) => s.id));
    for (const session of list) applySession(session, false, true);
    if (!state.me) learnMe(list);
    for (const sid of state.cards.keys()) placeCard(sid);
    renderSummary();
  }

  /**
   * Without an AppConfig (503), the agent is the one agent who is a member of every
   * one of my calls; if exactly one is, we show their name and mark their rows.
   */
  function learnMe(list) {
    if (!list.length) return;
    let common = null;
    for (const session of list) {
      const ids = new Set(
        (session.members || []).filter((m) => m.role === "Agent" && m.identity).map((m) => m.identity),
      );
      common = common ? new Set([...common].filter((id) => ids.has(id))) : ids;
    }
    if (!common || common.size !== 1) return;
    const [identity] = common;
    const member = list[0].members.find((m) => m.identity === identity);
    state.me = {
      endpointId: member.endpointId || identity,
      identity,
      name: member.displayName || identity,
      email: "",
    };
    const seen = state.statesSeen.get(identity);
    if (seen) setOwnState(seen.agentState, seen.agentStateReason);
    renderAgent();
    rerenderAll();
  }

  // --- the agent's state ----------------------------------------------------------------

  // The agent's state in plain words (docs/api.md#agent-state): what queues may offer them.
  const STATE_WORDS = {
    Ready: "Ready",
    NotReady: "Not ready",
    LoggedOut: "Logged out",
    WrapUp: "Wrap-up (after a call)",
    Outgoing: "On an outgoing call",
    Other: "Other",
    Unknown: "State unknown",
  };
  const REASON_WORDS = { MissedCall: "missed calls", SetBySystem: "set by the service" };

  function stateLabel(agentState, reason) {
    const words = STATE_WORDS[agentState] || agentState || STATE_WORDS.Unknown;
    // Why a state was set matters when the agent did not set it: NotReady after missed offers.
    if (agentState === "NotReady" && REASON_WORDS[reason]) return `${words} (${REASON_WORDS[reason]})`;
    return words;
  }

  const myId = () => (state.me && (state.me.endpointId || state.me.identity)) || null;

  /** The newest AgentStateChanged of the agent seen after `seen` events, if any. */
  function newerEvent(seen) {
    const id = myId();
    const entry = id ? state.statesSeen.get(id) : null;
    return entry && entry.seq > seen ? entry : null;
  }

  function setOwnState(agentState, reason) {
    if (!agentState) return;
    state.agentState = { agentState, agentStateReason: reason || "Unknown" };
    renderOwnState();
  }

  function renderOwnState() {
    const s = state.agentState;
    const current = s ? s.agentState : "Unknown";
    ui.agentState.textContent = s ? stateLabel(s.agentState, s.agentStateReason) : STATE_WORDS.Unknown;
    ui.agentState.className = `badge state-badge state-${current}`;
    ui.agentState.dataset.state = current;
    ui.agentState.dataset.reason = s ? s.agentStateReason : "";
    for (const button of ui.stateButtons) {
      button.setAttribute("aria-pressed", String(current === button.dataset.state));
      button.disabled = state.settingState;
      button.classList.toggle("busy", state.settingState && state.settingTo === button.dataset.state);
    }
  }

  function setStateError(text) {
    ui.agentStateError.textContent = text;
    ui.agentStateError.hidden = !text;
  }

  /** An AgentStateChanged event: the agent's own state, or a queue colleague's. */
  function onAgentStateChanged(gen, data) {
    state.agentEvents += 1;
    state.statesSeen.set(data.userId, { ...data, seq: state.agentEvents });
    if (data.userId === myId()) setOwnState(data.agentState, data.agentStateReason);
    let shown = false;
    for (const queue of state.queues || []) {
      for (const agent of queue.agents || []) {
        if (agent.userId !== data.userId) continue;
        agent.agentState = data.agentState;
        agent.agentStateReason = data.agentStateReason;
        shown = true;
      }
    }
    if (shown) renderQueues();
    if (state.queues && state.queues.length) refreshQueues(gen, QUEUES_REFRESH_MS);
  }

  /** The switch: PATCH /app/agent-state; a refusal is shown next to it, in plain words. */
  async function setAgentState(target) {
    if (state.settingState || !state.key) return;
    const gen = state.generation;
    const seen = state.agentEvents;
    state.settingState = true;
    state.settingTo = target;
    setStateError("");
    renderOwnState();
    try {
      const answer = await api("PATCH", "/app/agent-state", { agentState: target });
      if (gen !== state.generation) return;
      // Events come in order; one that came meanwhile is as new as the answer, or newer.
      if (answer && !newerEvent(seen)) setOwnState(answer.agentState, answer.agentStateReason);
    } catch (problem) {
      if (gen !== state.generation) return;
      if (problem.status === 401) refuseKey(problem);
      else setStateError(`Setting your state to ${STATE_WORDS[target]} did not work: ${problem.message}`);
    } finally {
      if (gen === state.generation) {
        state.settingState = false;
        state.settingTo = null;
        renderOwnState();
      }
    }
  }

  /** After a Reset (events lost), the agent's state is read again. */
  async function reloadOwnState(gen) {
    if (state.kind !== "user") return;
    const seen = state.agentEvents;
    try {
      const config = await api("GET", "/app/config");
      if (gen !== state.generation || newerEvent(seen)) return;
      setOwnState(config.agentState, config.agentStateReason);
    } catch {
      // the events that follow will say; nothing to show for a failed re-read
    }
  }

  // --- offers: calls a ring queue rings the agent for -------------------------------------

  /** The sessions a queue offers the agent: in a queue, with the agent's own leg ringing. */
  function offeredToMe() {
    if (!state.me) return [];
    return [...state.sessions.values()]
      .filter(
        (s) =>
          !s.ended &&
          s.ringQueueId &&
          (s.members || []).some((m) => isMe(m) && m.callState === "Ringing"),
      )
      .sort((a, b) => String(a.dateCreated || "").localeCompare(String(b.dateCreated || "")));
  }

  function queueName(qid) {
    const queue = (state.queues || []).find((q) => q.id === qid);
    return queue ? queue.name : null;
  }

  function renderOffers() {
    const offers = offeredToMe();
    const existing = new Map([...ui.offers.children].map((el) => [el.dataset.sessionId, el]));
    const items = offers.map((s) => {
      const item = existing.get(s.id) || buildOffer(s.id);
      const outgoing = s.direction === "Outgoing";
      // A queue's outgoing call (NewOutgoingSession with a flowId) is with its destination.
      const party = outgoing ? s.destination || s.toAddress : s.fromName || s.fromAddress || s.fromPhoneNumber;
      const name = queueName(s.ringQueueId);
      const where = name ? `queue ${name}` : "from a ring queue";
      byId(item, "offer-text").textContent = `Incoming call from ${party || "an unknown caller"}, ${where}`;
      return item;
    });
    ui.offers.replaceChildren(...items);
    ui.offers.hidden = items.length === 0;
  }

  function buildOffer(sid) {
    const item = document.createElement("div");
    item.className = "offer";
    item.setAttribute("data-testid", "offer");
    item.dataset.sessionId = sid;
    const icon = document.createElement("span");
    icon.className = "offer-icon";
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = "☎";
    const body = document.createElement("div");
    body.className = "offer-body";
    const text = document.createElement("strong");
    text.setAttribute("data-testid", "offer-text");
    const hint = document.createElement("span");
    hint.className = "offer-hint";
    hint.textContent = "Ringing on your softphone: answer it there to take the call.";
    body.append(text, hint);
    item.append(icon, body);
    return item;
  }

  // --- the account's queues: calls waiting, and who can take them ------------------------

  /** Reads GET /queues after `delay` ms: at most one request per burst of events. */
  function refreshQueues(gen, delay) {
    if (!state.key || state.queuesAvailable === false) return;
    if (delay === 0) {
      clearTimeout(state.queueTimer);
      state.queueTimer = null;
    }
    if (state.queueTimer) return; // one is due already: it will see this change too
    state.queueTimer = setTimeout(() => {
      state.queueTimer = null;
      loadQueues(gen);
    }, delay);
  }

  async function loadQueues(gen) {
    const list = await readPanelList(
      gen,
      "queueSeq",
      "/queues",
      "queues",
      () => {
        state.queuesAvailable = false;
        state.queues = null;
        renderQueues();
      },
      (problem) => {
        const retry = "Retrying with the next change.";
        ui.queuesError.textContent = `The queues could not be read: ${problem.message}. ${retry}`;
        ui.queuesError.hidden = false;
      },
    );
    if (!list) return;
    state.queuesAvailable = true;
    state.queues = list;
    state.queuesAt = Date.now();
    ui.queuesError.hidden = true;
    renderQueues();
    renderOffers();
    for (const session of state.sessions.values()) if (session.ringQueueId) renderSession(session, false);
  }

  function element(tag, className, testid, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (testid) el.setAttribute("data-testid", testid);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function renderQueues() {
    const list = state.queues || [];
    ui.queues.hidden = !state.key || list.length === 0;
    ui.waitingCount.textContent = String(list.reduce((n, q) => n + (q.waiting || []).length, 0));
    ui.queueList.replaceChildren(...list.map(buildQueue));
  }

  function buildQueue(q) {
    const card = element("article", "card queue", "queue");
    card.dataset.queueId = q.id;
    const waiting = q.waiting || [];
    const head = element("header", "queue-head");
    head.append(
      element("h3", "", "queue-name", q.name || q.id),
      element("span", "queue-sub", "queue-sub", `${q.strategy || ""} · ${waiting.length} waiting`),
    );
    card.append(head);

    if (waiting.length) {
      const calls = element("ol", "waiting", "waiting");
      for (const w of waiting) {
        const row = element("li", "waiting-call", "waiting-call");
        row.dataset.sessionId = w.sessionId || "";
        const queueState = w.queueState || "Queued";
        const badge = element("span", `badge badge-${queueState}`, "waiting-state", queueState);
        const time = element("span", "timer", "waiting-time");
        time.title = "How long the caller has waited";
        // From the server's count, on this browser's clock: no clock skew between the two.
        time.dataset.waitStart = String(state.queuesAt - (Number(w.waitSeconds) || 0) * 1000);
        tickWait(time);
        row.append(element("span", "waiting-from", "waiting-from", w.fromAddress || "Unknown caller"), badge, time);
        calls.append(row);
      }
      card.append(calls);
    } else {
      card.append(element("p", "empty empty-small", "waiting-empty", "No calls waiting."));
    }

    const agents = element("ul", "queue-agents", "queue-agents");
    for (const a of q.agents || []) {
      const row = element("li", "queue-agent", "queue-agent");
      row.dataset.userId = a.userId || "";
      const name = element("span", "queue-agent-name", "queue-agent-name", a.name || a.userId || "");
      if (a.userId && a.userId === myId()) name.append(" ", element("span", "chip chip-you", "", "you"));
      const badge = element(
        "span",
        `badge state-badge state-${a.agentState || "Unknown"}`,
        "queue-agent-state",
        stateLabel(a.agentState, a.agentStateReason),
      );
      row.append(name, badge);
      if (a.busy) {
        const busy = element("span", "chip", "queue-agent-busy", "busy");
        busy.title = "Ringing, in a call or on hold: offered nothing else meanwhile";
        row.append(busy);
      }
      agents.append(row);
    }
    if (!(q.agents || []).length) agents.append(element("li", "empty-small", "", "No agents yet."));
    card.append(agents);
    return card;
  }

  function tickWait(time) {
    time.textContent = duration(Date.now() - Number(time.dataset.waitStart));
  }

  // --- the dial box ---------------------------------------------------------------------

  /** Click to call: the agent's phone rings, then the number (docs/api.md, NewOutgoingSession). */
  async function dial(number) {
    if (state.dialing) return;
    const gen = state.generation;
    state.dialing = true;
    ui.dialButton.disabled = true;
    ui.dialButton.classList.add("busy");
    setDialError("");
    try {
      const session = await api("POST", "/sessions/outgoing", { numberToDial: number });
      if (gen !== state.generation) return;
      ui.dialInput.value = "";
      if (session && session.id) {
        state.mine.add(session.id);
        applySession(session, true, true);
        placeCard(session.id);
        renderSummary();
      }
      refreshMine(gen, 0);
    } catch (problem) {
      if (gen !== state.generation) return;
      if (problem.status === 401) refuseKey(problem);
      else setDialError(`The call was not placed: ${problem.message}`);
    } finally {
      if (gen === state.generation) {
        state.dialing = false;
        ui.dialButton.disabled = false;
        ui.dialButton.classList.remove("busy");
      }
    }
  }

  function setDialError(text) {
    ui.dialError.textContent = text;
    ui.dialError.hidden = !text;
  }

  // --- sessions -------------------------------------------------------------------------

  function replaceAll(list) {
    const seen = new Set();
    for (const session of list) {
      if (!session || !session.id) continue;
      seen.add(session.id);
      applySession(session, false);
    }
    for (const sid of [...state.sessions.keys()]) {
      if (!seen.has(sid) && !state.fading.has(sid)) removeCard(sid);
    }
  }

  /**
   * Whether a snapshot read outside the stream (an answer to a request) is not older
   * than our copy: the log only grows, and an ended session stays ended.
   */
  function notOlder(session, known) {
    if (!known) return true;
    if (known.ended && !session.ended) return false;
    return (session.log || []).length >= (known.log || []).length;
  }

  /**
   * Replaces our copy of a session with this snapshot of it. Events come in order and
   * always apply; a snapshot from a request (`snapshot`) only when it is not older.
   */
  function applySession(session, changed, snapshot = false) {
    if (!session || !session.id) return;
    const sid = session.id;
    if (session.ended && !state.cards.has(sid)) return; // began and ended out of our sight
    if (snapshot && !notOlder(session, state.sessions.get(sid))) return;
    state.sessions.set(sid, session);
    renderSession(session, changed);
    renderOffers();
    if (session.ended && !state.fading.has(sid)) {
      const timer = setTimeout(() => {
        const card = state.cards.get(sid);
        if (card) card.classList.add("leaving");
        setTimeout(() => removeCard(sid), FADE_MS);
      }, ENDED_VISIBLE_MS);
      state.fading.set(sid, timer);
    }
    renderSummary();
  }

  function removeCard(sid) {
    const card = state.cards.get(sid);
    if (card) card.remove();
    state.cards.delete(sid);
    state.sessions.delete(sid);
    state.mine.delete(sid);
    clearTimeout(state.fading.get(sid));
    state.fading.delete(sid);
    renderSummary();
    renderOffers();
  }

  function clearSessions() {
    for (const sid of [...state.cards.keys()]) removeCard(sid);
    state.sessions.clear();
    state.mine.clear();
  }

  function rerenderAll() {
    for (const session of state.sessions.values()) renderSession(session, false);
    renderOffers();
    renderQueues();
  }

  // --- rendering ------------------------------------------------------------------------

  /** Dates come as ISO 8601, or as ServiceStack's /Date(ms)/. */
  function parseDate(value) {
    if (!value) return null;
    const wcf = /^\/Date\((-?\d+)/.exec(value);
    const date = wcf ? new Date(Number(wcf[1])) : new Date(value);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  const clock = (date) =>
    date ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "";

  function duration(ms) {
    const total = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function initials(name) {
    const text = (name || "").trim();
    if (!text) return "?";
    if (/^[+\d(]/.test(text)) return "☎";
    const words = text.split(/[\s@._-]+/).filter(Boolean);
    return (words[0][0] + (words.length > 1 ? words[1][0] : "")).toUpperCase();
  }

  function setBadge(element, value) {
    element.textContent = value;
    element.className = `badge badge-${value}`;
  }

  function buildCard(sid) {
    const card = sessionTemplate.content.firstElementChild.cloneNode(true);
    card.dataset.sessionId = sid;
    byId(card, "invite-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const input = byId(card, "invite-input");
      const member = input.value.trim();
      if (!member) return;
      act(sid, "invite", byId(card, "invite-button"), "The invite", async () => {
        const result = await api("POST", `${sessionPath(sid)}/members`, { memberToAdd: member });
        input.value = "";
        return result;
      });
    });
    byId(card, "hold").addEventListener("click", (e) =>
      act(sid, "hold", e.currentTarget, "Hold", () =>
        api("POST", `${sessionPath(sid)}/hold`, { reason: "None" }),
      ),
    );
    byId(card, "resume").addEventListener("click", (e) =>
      act(sid, "resume", e.currentTarget, "Resume", () =>
        api("PATCH", sessionPath(sid), { callState: "Connected" }),
      ),
    );
    // Ending a call ends it for everyone in it: the page asks first.
    const confirm = byId(card, "end-confirm");
    byId(card, "end-call").addEventListener("click", () => {
      confirm.hidden = false;
      byId(card, "end-confirm-no").focus();
    });
    byId(card, "end-confirm-no").addEventListener("click", () => {
      confirm.hidden = true;
      byId(card, "end-call").focus();
    });
    byId(card, "end-confirm-yes").addEventListener("click", (e) => {
      confirm.hidden = true;
      act(sid, "end", e.currentTarget, "Ending the call", () => api("DELETE", sessionPath(sid)));
    });
    byId(card, "session-error-dismiss").addEventListener("click", () => setCardError(sid, ""));
    state.cards.set(sid, card);
    placeCard(sid);
    return card;
  }

  /**
   * Puts a card in its list: my calls (the sessions GET /sessions/my listed, and the
   * calls this page placed) or the account's other calls; newest first in each, as
   * GET /sessions/active lists them.
   */
  function placeCard(sid) {
    const card = state.cards.get(sid);
    if (!card) return;
    const session = state.sessions.get(sid);
    if (card.parentElement && session && session.ended) return; // an ended call fades where it is
    const list = state.mine.has(sid) && !ui.myCalls.hidden ? ui.mySessions : ui.sessions;
    const created = (s) => (parseDate(s && s.dateCreated) || new Date(0)).getTime();
    const mine = created(state.sessions.get(sid));
    const after = [...list.children].find(
      (other) => other !== card && created(state.sessions.get(other.dataset.sessionId)) < mine,
    );
    if (card.parentElement === list && (after ? card.nextElementSibling === after : !card.nextElementSibling))
      return; // already in place: moving it would reset what the agent is typing
    list.insertBefore(card, after || null);
  }

  function setCardError(sid, text) {
    const card = state.cards.get(sid);
    if (!card) return;
    byId(card, "session-error-text").textContent = text;
    byId(card, "session-error").hidden = !text;
  }

  function renderSession(s, changed) {
    const card = state.cards.get(s.id) || buildCard(s.id);
    const ended = Boolean(s.ended);
    const callState = ended ? "Disconnected" : s.callState || "Ringing";
    card.dataset.state = callState;
    card.classList.toggle("ended", ended);
    card.classList.toggle("mine", state.mine.has(s.id));

    const from = s.fromName || s.fromAddress || s.fromPhoneNumber || "";
    const outgoing = s.direction === "Outgoing";
    const title = outgoing ? s.destination || s.toAddress || s.displayName : s.displayName || from;
    byId(card, "session-title").textContent = title || s.customerName || s.id;
    const route = [s.fromAddress, s.toAddress].filter(Boolean).join(" → ");
    const queue = s.ringQueueId
      ? `queue ${queueName(s.ringQueueId) || s.ringQueueId}${s.queueState ? ` (${s.queueState})` : ""}`
      : "";
    byId(card, "session-sub").textContent = [s.direction, route, queue, s.endpointName, s.id]
      .filter(Boolean)
      .join(" · ");
    setBadge(byId(card, "session-state"), callState);

    const note = byId(card, "session-note");
    let noteText = "";
    if (ended) noteText = s.outcome || "Ended";
    else if (callState === "Hold") noteText = s.holdReason === "Transferring" ? "Transferring" : "On hold";
    else if (s.answeredByName) noteText = `Answered by ${s.answeredByName}`;
    note.textContent = noteText;
    note.hidden = !noteText;

    const timer = byId(card, "session-timer");
    timer.dataset.started = s.dateCreated || "";
    timer.dataset.completed = ended ? s.dateCompleted || new Date().toISOString() : "";
    tick(timer);

    renderMembers(card, s, ended);
    renderLog(card, s.log || []);

    const busy = (action) => state.busy.has(`${s.id}:${action}`);
    byId(card, "hold").disabled = ended || callState === "Hold" || busy("hold");
    byId(card, "resume").disabled = ended || callState !== "Hold" || busy("resume");
    byId(card, "end-call").disabled = ended || busy("end");
    if (ended) byId(card, "end-confirm").hidden = true;
    byId(card, "invite-button").disabled = ended || busy("invite");
    byId(card, "invite-input").disabled = ended;

    if (changed && !card.classList.contains("changed")) {
      card.classList.add("changed");
      card.addEventListener("animationend", () => card.classList.remove("changed"), { once: true });
    }
  }

  // --- what became of each member -------------------------------------------------------

  // How the session log tells of a member's end, for the texts the service writes
  // (orchestrator/lua/call_event.lua's `finals`, conference_event.lua, begin_dial.lua,
  // remove_member.lua, redirect.lua, and workers/dial.py): each rule reads the member's
  // name out of a message and says what it means.
  const END_SUFFIXES = [
    [" was busy", "Busy"],
    [" did not answer", "No answer"],
    [": the call failed", "Failed"],
    [": the call was canceled", "Left"],
    [" left the call", "Left"],
    [" left the conference", "Left"],
    [" left for the transfer", "Left"],
  ];

  /** One log message as {name, what, label}: what is "end", "removed" or "invited". */
  function readLogMessage(text) {
    let match = /^Not dialled (.+?): (.*)$/.exec(text);
    if (match) {
      const label = match[2] === "removed" ? "Removed" : match[2] === "the session has ended" ? "Left" : "Failed";
      return { name: match[1], what: "end", label };
    }
    match = /^Could not dial (.+?): /.exec(text);
    if (match) return { name: match[1], what: "end", label: "Failed" };
    for (const [suffix, label] of END_SUFFIXES) {
      if (text.endsWith(suffix)) return { name: text.slice(0, -suffix.length), what: "end", label };
    }
    if (text.endsWith(" was removed")) return { name: text.slice(0, -" was removed".length), what: "removed" };
    let at = text.lastIndexOf(" removed ");
    if (at > 0) return { name: text.slice(at + " removed ".length), what: "removed" };
    if (text.startsWith("Invited ")) return { name: text.slice("Invited ".length), what: "invited" };
    at = text.lastIndexOf(" invited ");
    if (at > 0) return { name: text.slice(at + " invited ".length), what: "invited" };
    return null;
  }

  /**
   * A name as a comparable key: the log names a member by its display name or identity
   * (the Lua scripts), by "client:<user id>" or by a number formatted for reading
   * ("+1 415-555-0100", the dial worker), so numbers compare by their digits and
   * client: names by the user id.
   */
  function nameKey(name) {
    const text = String(name || "").trim();
    if (text.startsWith("client:")) return `id:${text.slice(7)}`;
    if (/^\+?\d[\d\s().-]*$/.test(text)) return `tel:${text.replace(/\D/g, "")}`;
    return `name:${text}`;
  }

  /**
   * The label of each member of a session, in order: Invited, Ringing, Connected, Hold,
   * Busy, No answer, Failed, Left or Removed.
   *
   * A member's callState says Ringing, Connected or Hold. When it is None, the member was
   * either not dialled yet (Invited) or is over, and only the session log says how:
   *   "<name> was busy" → Busy; "<name> did not answer" → No answer;
   *   "<name>: the call failed", "Could not dial <name>: …", "Not dialled <name>: <why>" → Failed;
   *   "<name> left the call" / "left the conference" / "left for the transfer",
   *   "<name>: the call was canceled", "Not dialled <name>: the session has ended" → Left;
   *   "Not dialled <name>: removed", and any end after "<agent> removed <name>" or
   *   "<name> was removed" (or such a removal with no end after it: the member was
   *   never dialled) → Removed.
   * The same number or user can be invited again once its last call is over; each
   * "invited" message starts the next member of that name, so the n-th member of a
   * name takes the n-th end logged for it.
   */
  function memberOutcomes(members, log) {
    const keysOf = (m) => {
      const set = new Set([nameKey(m.displayName), nameKey(m.identity)]);
      if (m.identity) set.add(`id:${m.identity}`);
      set.delete("name:");
      return set;
    };
    const read = (log || []).map((e) => readLogMessage((e && e.message) || "")).filter(Boolean);
    for (const entry of read) entry.key = nameKey(entry.name);

    const endsByGroup = new Map(); // the first member's index of a name -> its ends, in order
    const groupOf = [];
    members.forEach((m, index) => {
      const keys = keysOf(m);
      const first = members.findIndex((other, i) => i < index && [...keysOf(other)].some((k) => keys.has(k)));
      const group = first >= 0 ? groupOf[first] : index;
      groupOf.push(group);
      if (endsByGroup.has(group)) return;
      const ends = [];
      let removed = false;
      for (const entry of read) {
        if (!keys.has(entry.key)) continue;
        if (entry.what === "removed") removed = true;
        else if (entry.what === "invited") {
          if (removed) ends.push("Removed"); // removed before it was dialled: that was its end
          removed = false;
        } else {
          ends.push(removed ? "Removed" : entry.label);
          removed = false;
        }
      }
      if (removed) ends.push("Removed");
      endsByGroup.set(group, ends);
    });

    const seen = new Map(); // group -> how many of its members came before
    return members.map((m, index) => {
      const group = groupOf[index];
      const nth = seen.get(group) || 0;
      seen.set(group, nth + 1);
      if (m.callState === "Ringing" || m.callState === "Connected" || m.callState === "Hold") return m.callState;
      return endsByGroup.get(group)[nth] || "Invited";
    });
  }

  const OVER = new Set(["Busy", "No answer", "Failed", "Left", "Removed"]);

  function renderMembers(card, s, ended) {
    const tbody = byId(card, "members");
    const members = Array.isArray(s.members) ? s.members : [];
    const outcomes = memberOutcomes(members, s.log);
    while (tbody.children.length > members.length) tbody.lastElementChild.remove();
    members.forEach((m, index) => {
      let row = tbody.children[index];
      if (!row) {
        row = memberTemplate.content.firstElementChild.cloneNode(true);
        byId(row, "remove-member").addEventListener("click", (e) => {
          const target = row.dataset.callSid || row.dataset.identity;
          const label = row.dataset.name || target;
          act(s.id, `remove:${row.dataset.key}`, e.currentTarget, `Removing ${label}`, () =>
            api("DELETE", `${sessionPath(s.id)}/members/${encodeURIComponent(target)}`),
          );
        });
        tbody.append(row);
      }
      const callState = m.callState || "None";
      const outcome = outcomes[index];
      const over = OVER.has(outcome);
      const name = m.displayName || m.identity || "Unknown";
      const me = isMe(m);
      row.dataset.key = String(index);
      row.dataset.identity = m.identity || "";
      row.dataset.callSid = m.callSid || "";
      row.dataset.name = name;
      row.dataset.state = callState;
      row.dataset.outcome = outcome;
      row.dataset.role = m.role || "None";
      row.classList.toggle("inactive", callState === "None");
      row.classList.toggle("me", me);

      const avatar = row.querySelector(".avatar");
      avatar.textContent = initials(name);
      avatar.className = `avatar role-${m.role || "None"}`;
      byId(row, "member-name").textContent = name;
      byId(row, "member-you").hidden = !me;
      const identity = byId(row, "member-identity");
      identity.textContent = m.identity && m.identity !== name ? m.identity : m.callSid || "";
      byId(row, "member-role").textContent = m.isOriginalMember && m.role !== "Caller" ? `${m.role} (original)` : m.role || "None";
      const badge = byId(row, "member-state");
      badge.textContent = outcome;
      badge.className = `badge badge-${outcome.replace(/\s+(\w)/g, (_, c) => c.toUpperCase())}`;
      badge.title = outcome === "Invited" ? "Invited, not yet ringing" : over ? "Not in the call any more" : "";
      byId(row, "member-muted").hidden = !m.muted;

      const remove = byId(row, "remove-member");
      remove.hidden = ended || over;
      remove.disabled = state.busy.has(`${s.id}:remove:${index}`);
    });
  }

  function renderLog(card, log) {
    byId(card, "log-summary").textContent = `Log (${log.length})`;
    const list = byId(card, "log");
    if (list.children.length === log.length) return;
    list.replaceChildren(
      ...log.map((entry) => {
        const item = document.createElement("li");
        const time = document.createElement("time");
        time.dateTime = entry.date || "";
        time.textContent = clock(parseDate(entry.date));
        const text = document.createElement("span");
        text.textContent = entry.message || "";
        item.append(time, text);
        return item;
      }),
    );
    list.scrollTop = list.scrollHeight;
  }

  function tick(timer) {
    const started = parseDate(timer.dataset.started);
    if (!started) {
      timer.textContent = "";
      return;
    }
    const end = parseDate(timer.dataset.completed) || new Date();
    timer.textContent = duration(end - started);
  }

  function renderSummary() {
    const live = (list) =>
      [...list.children].filter((card) => {
        const s = state.sessions.get(card.dataset.sessionId);
        return s && !s.ended;
      }).length;
    ui.count.textContent = String(live(ui.sessions));
    ui.summary.hidden = !state.key || !state.loaded;
    ui.empty.hidden = !state.key || !state.loaded || ui.sessions.children.length > 0;
    ui.empty.textContent = ui.myCalls.hidden
      ? "No active sessions. Calls appear here as they come in."
      : "No other calls on the account right now.";
    ui.myCount.textContent = String(live(ui.mySessions));
    ui.myEmpty.hidden = ui.mySessions.children.length > 0;
    const named = [...state.sessions.values()].find((s) => s.accountName);
    if (named) ui.account.textContent = named.accountName;
  }

  function setStatus(kind, text) {
    ui.status.className = `pill pill-${kind}`;
    ui.status.textContent = text;
  }

  function setLive(live) {
    state.live = live;
    if (live) setStatus("live", "Live");
  }

  function showError(message, source) {
    ui.errorText.textContent = message;
    ui.error.hidden = false;
    state.errorSource = source;
  }

  function clearError() {
    ui.error.hidden = true;
    ui.errorText.textContent = "";
    state.errorSource = null;
  }

  // --- actions --------------------------------------------------------------------------

  /**
   * Runs one button's request; a failure shows the API's message on the card of the
   * session it was for (only a refused key affects the whole page).
   */
  async function act(sid, action, button, label, request) {
    const token = `${sid}:${action}`;
    if (state.busy.has(token)) return;
    const gen = state.generation;
    state.busy.add(token);
    button.disabled = true;
    button.classList.add("busy");
    try {
      const result = await request();
      if (gen !== state.generation) return;
      setCardError(sid, "");
      // While live, the stream brings the change (in order); without it, the answer does.
      if (!state.live && result && result.id) applySession(result, true, true);
    } catch (problem) {
      if (gen !== state.generation) return;
      if (problem.status === 401) refuseKey(problem);
      else setCardError(sid, `${label} did not work: ${problem.message}`);
    } finally {
      state.busy.delete(token);
      button.classList.remove("busy");
      const session = state.sessions.get(sid);
      if (session) renderSession(session, false);
      else button.disabled = false;
    }
  }

  // --- the key --------------------------------------------------------------------------

  function stop() {
    state.generation += 1;
    if (state.controller) state.controller.abort();
    state.controller = null;
    clearTimeout(state.reconnectTimer);
    state.live = false;
    state.loaded = false;
    state.lastEventId = null;
    state.failures = 0;
    state.retryMs = DEFAULT_RETRY_MS;
    state.buffer = null;
    state.busy.clear();
    clearTimeout(state.myTimer);
    state.kind = null;
    state.me = null;
    state.myAvailable = null;
    state.dialing = false;
    clearTimeout(state.queueTimer);
    state.queueTimer = null;
    state.queues = null;
    state.queuesAvailable = null;
    state.agentState = null;
    state.statesSeen = new Map();
    state.settingState = false;
    state.settingTo = null;
    setStateError("");
    ui.queuesError.hidden = true;
    clearSessions();
    setNote("");
    setDialError("");
    ui.dialButton.disabled = false;
    ui.dialButton.classList.remove("busy");
    ui.myEmpty.textContent = "You are in no call right now.";
    renderAgent();
    renderQueues();
    renderOffers();
  }

  function start(key) {
    stop();
    state.key = key;
    sessionStorage.setItem(KEY_STORAGE, key);
    ui.keyForm.hidden = true;
    ui.keyHint.textContent = `key …${key.slice(-4)}`;
    ui.keyHint.hidden = false;
    ui.forget.hidden = false;
    ui.account.textContent = "";
    clearError();
    renderSummary();
    openStream(state.generation);
    loadAgent(state.generation);
  }

  function signOut() {
    stop();
    state.key = null;
    sessionStorage.removeItem(KEY_STORAGE);
    ui.keyForm.hidden = false;
    ui.keyHint.hidden = true;
    ui.forget.hidden = true;
    ui.account.textContent = "";
    setStatus("off", "Not connected");
    renderSummary();
    ui.keyInput.focus();
  }

  function refuseKey(problem) {
    signOut();
    setStatus("bad", "Key refused");
    const why = problem.status === 403 ? "This key may not use the console" : "The API key was refused";
    showError(`${why}: ${problem.message}`, "key");
  }

  /** A key handed over in the address (#key=...), taken out of the address bar at once. */
  function keyFromFragment() {
    const match = /(?:^#|&)key=([^&]*)/.exec(location.hash);
    if (!match) return null;
    history.replaceState(null, "", location.pathname + location.search);
    try {
      return decodeURIComponent(match[1]).trim() || null;
    } catch {
      return null;
    }
  }

  const cleanKey = (text) => text.trim().replace(/^Bearer\s+/i, "");

  ui.keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = cleanKey(ui.keyInput.value);
    if (!key) return;
    ui.keyInput.value = "";
    start(key);
  });
  ui.forget.addEventListener("click", () => {
    clearError();
    signOut();
  });
  ui.errorDismiss.addEventListener("click", clearError);
  ui.dialForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const number = ui.dialInput.value.trim();
    if (number) dial(number);
  });
  for (const button of ui.stateButtons) {
    button.addEventListener("click", () => setAgentState(button.dataset.state));
  }
  setInterval(() => {
    document.querySelectorAll('[data-testid="session-timer"]').forEach(tick);
    document.querySelectorAll('[data-testid="waiting-time"]').forEach(tickWait);
  }, 1000);

  const initial = keyFromFragment() || sessionStorage.getItem(KEY_STORAGE);
  if (initial) start(initial);
  else signOut();
})();

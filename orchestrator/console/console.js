// The agent console: the account's active sessions, live from the event stream.
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
  };

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
      return;
    }
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    if (!data || !data.session) return;
    if (state.buffer) state.buffer.push(data.session);
    else applySession(data.session, true);
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

  /** Replaces our copy of a session with this snapshot of it. */
  function applySession(session, changed) {
    if (!session || !session.id) return;
    const sid = session.id;
    if (session.ended && !state.cards.has(sid)) return; // began and ended out of our sight
    state.sessions.set(sid, session);
    renderSession(session, changed);
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
    clearTimeout(state.fading.get(sid));
    state.fading.delete(sid);
    renderSummary();
  }

  function clearSessions() {
    for (const sid of [...state.cards.keys()]) removeCard(sid);
    state.sessions.clear();
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
      act(sid, "invite", byId(card, "invite-button"), "Invite", async () => {
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
    byId(card, "end-call").addEventListener("click", (e) =>
      act(sid, "end", e.currentTarget, "End call", () => api("DELETE", sessionPath(sid))),
    );
    // Newest first, as GET /sessions/active lists them.
    const created = (s) => (parseDate(s && s.dateCreated) || new Date(0)).getTime();
    const mine = created(state.sessions.get(sid));
    const after = [...ui.sessions.children].find(
      (other) => created(state.sessions.get(other.dataset.sessionId)) < mine,
    );
    ui.sessions.insertBefore(card, after || null);
    state.cards.set(sid, card);
    return card;
  }

  function renderSession(s, changed) {
    const card = state.cards.get(s.id) || buildCard(s.id);
    const ended = Boolean(s.ended);
    const callState = ended ? "Disconnected" : s.callState || "Ringing";
    card.dataset.state = callState;
    card.classList.toggle("ended", ended);

    const from = s.fromName || s.fromAddress || s.fromPhoneNumber || "";
    byId(card, "session-title").textContent = s.displayName || from || s.customerName || s.id;
    const route = [s.fromAddress, s.toAddress].filter(Boolean).join(" → ");
    byId(card, "session-sub").textContent = [s.direction, route, s.endpointName, s.id]
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
    byId(card, "invite-button").disabled = ended || busy("invite");
    byId(card, "invite-input").disabled = ended;

    if (changed && !card.classList.contains("changed")) {
      card.classList.add("changed");
      card.addEventListener("animationend", () => card.classList.remove("changed"), { once: true });
    }
  }

  function renderMembers(card, s, ended) {
    const tbody = byId(card, "members");
    const members = Array.isArray(s.members) ? s.members : [];
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
      const name = m.displayName || m.identity || "Unknown";
      const left = callState === "None" && Boolean(m.callSid); // dialled, and now out of the call
      row.dataset.key = String(index);
      row.dataset.identity = m.identity || "";
      row.dataset.callSid = m.callSid || "";
      row.dataset.name = name;
      row.dataset.state = callState;
      row.dataset.role = m.role || "None";
      row.classList.toggle("inactive", callState === "None");

      const avatar = row.querySelector(".avatar");
      avatar.textContent = initials(name);
      avatar.className = `avatar role-${m.role || "None"}`;
      byId(row, "member-name").textContent = name;
      const identity = byId(row, "member-identity");
      identity.textContent = m.identity && m.identity !== name ? m.identity : m.callSid || "";
      byId(row, "member-role").textContent = m.isOriginalMember && m.role !== "Caller" ? `${m.role} (original)` : m.role || "None";
      const badge = byId(row, "member-state");
      setBadge(badge, callState);
      badge.title = callState === "None" ? (left ? "Not in the call any more" : "Invited, not yet ringing") : "";
      byId(row, "member-muted").hidden = !m.muted;

      const remove = byId(row, "remove-member");
      remove.hidden = ended || left;
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
    const active = [...state.sessions.values()].filter((s) => !s.ended).length;
    ui.count.textContent = String(active);
    ui.summary.hidden = !state.key || !state.loaded;
    ui.empty.hidden = !state.key || !state.loaded || state.cards.size > 0;
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

  /** Runs one button's request; a failure shows the API's message on the error line. */
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
      if (state.errorSource === "action") clearError();
      // While live, the stream brings the change (in order); without it, the answer does.
      if (!state.live && result && result.id) applySession(result, true);
    } catch (problem) {
      if (gen !== state.generation) return;
      if (problem.status === 401 || problem.status === 403) refuseKey(problem);
      else showError(`${label} failed: ${problem.message}`, "action");
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
    clearSessions();
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
  setInterval(() => document.querySelectorAll('[data-testid="session-timer"]').forEach(tick), 1000);

  const initial = keyFromFragment() || sessionStorage.getItem(KEY_STORAGE);
  if (initial) start(initial);
  else signOut();
})();

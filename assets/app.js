// The page: who we are (Zoom app context + authorization), which engagement
// we are in (Zoom Apps SDK, or webhooks outside Zoom), Start/Stop RTMS, and
// the live view (SSE). Vanilla ES modules, no build step, CSP-clean: no
// inline script or style; styles set through CSSOM only.
import "./csp.js";
import { ApiError, getJSON, postJSON } from "./api.js";
import { authorizeInClient, canAuthorizeInClient, connect, EngagementTracker, followEngagement } from "./zoom.js";
import { LiveFeed } from "./live.js";
import { Recordings } from "./recordings.js";
import { $, clock, count, dbText, meterFraction, setState, setText, show } from "./view.js";

const MAX_LINES = 200;
const RUNNING = new Set(["connecting", "streaming", "reconnecting"]);

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";

const state = {
  mode: meta("zcc-mode"), // demo | zoom
  inZoom: null, // null while finding out
  runningContext: null,
  zoom: null, // {sdk, config} inside Zoom
  authorizing: false, // in-client OAuth running
  session: null, // {userId, accountId, expiresAt}
  auth: null, // /api/auth/status
  sdkEngagement: null, // merged SDK view
  engagements: new Map(), // webhook-tracked, from the feed
  picked: null, // chosen engagement outside Zoom
  streams: new Map(), // rtms_stream_id -> StreamView
  status: [], // newest first
  transcripts: [], // newest first
  pending: null, // "start" | "stop" while a control call runs
  requested: null, // {engagementId, action} accepted, waiting for the stream
  live: "connecting",
};

// ---------- alerts: errors a person can act on ----------

const alerts = new Map();

function alert(key, text, level = "error", action = null) {
  alerts.set(key, { text, level, action });
  renderAlerts();
}

function clearAlert(key) {
  if (alerts.delete(key)) renderAlerts();
}

function renderAlerts() {
  const box = $("alerts");
  box.replaceChildren();
  for (const [key, a] of alerts) {
    const div = document.createElement("div");
    div.className = "alert";
    div.id = `alert-${key}`;
    div.dataset.level = a.level;
    const p = document.createElement("span");
    p.textContent = a.text;
    div.append(p);
    if (a.action) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "button small";
      b.textContent = a.action.label;
      b.addEventListener("click", a.action.run);
      div.append(b);
    }
    const close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => clearAlert(key));
    div.append(close);
    box.append(div);
  }
}

// ---------- derived state ----------

function currentEngagementId() {
  if (state.sdkEngagement && state.sdkEngagement.engagementId) return state.sdkEngagement.engagementId;
  if (state.inZoom === true && state.sdkEngagement) return null;
  if (state.picked && state.engagements.has(state.picked)) return state.picked;
  return null;
}

/** "active" | "ended" | "inactive" | "none" for the current engagement. */
function engagementState(id) {
  if (!id) return "none";
  const backend = state.engagements.get(id);
  const sdk = state.sdkEngagement && state.sdkEngagement.engagementId === id ? state.sdkEngagement : null;
  if (backend && backend.state === "ended") return "ended";
  if (sdk && sdk.state) {
    if (sdk.state === "active") return "active";
    if (sdk.state === "end") return "ended";
    return sdk.state; // inactive, wrap-up
  }
  if (backend) return backend.state;
  return "inactive";
}

function authorized() {
  return Boolean(state.auth && state.auth.authenticated && !state.auth.needsAuth);
}

function streamFor(id) {
  let best = null;
  for (const s of state.streams.values()) {
    if (s.engagement_id !== id) continue;
    const live = RUNNING.has(s.state);
    if (!best || (live && !RUNNING.has(best.state)) || (live === RUNNING.has(best.state) && s.updated_at > best.updated_at)) {
      best = s;
    }
  }
  return best;
}

function streamRunning(id) {
  const s = streamFor(id);
  if (s && RUNNING.has(s.state)) return true;
  return Boolean(state.requested && state.requested.engagementId === id && state.requested.action === "start");
}

function visibleLine(line) {
  if (!line.engagement_id) return true;
  const id = currentEngagementId();
  if (id) return line.engagement_id === id;
  return state.inZoom !== true;
}

// ---------- rendering ----------

function renderWhere() {
  if (state.inZoom === null) {
    setState("where", "pending", "Connecting to Zoom…");
  } else if (state.inZoom) {
    const ctx = state.runningContext === "inContactCenter" ? "Zoom Contact Center" : `Zoom (${state.runningContext || "unknown"})`;
    setState("where", "zoom", `In ${ctx}`);
  } else {
    setState("where", "outside", "Outside Zoom · webhooks");
  }
  show("demo-banner", state.mode === "demo");
}

function renderLive() {
  const text = {
    connecting: "Live: connecting",
    open: "Live",
    reconnecting: "Live: reconnecting…",
    closed: "Live: offline, retrying",
    "signed-out": "Live: sign in to see your engagements",
  }[state.live] || state.live;
  setState("live", state.live, text);
}

function renderAuth() {
  const a = state.auth;
  let s = "unknown";
  let text = "Checking authorization…";
  let detail = "";
  if (a && a.error) {
    s = "error";
    text = "Authorization status unavailable";
    detail = a.error;
  } else if (a) {
    if (authorized()) {
      s = "ok";
      text = "Authorized with Zoom";
      detail = [a.accountId && `account ${a.accountId}`, a.userId && `user ${a.userId}`].filter(Boolean).join(" · ");
    } else {
      s = "needs";
      text = a.needsAuth && a.authenticated ? "Zoom authorization expired" : "Not connected to Zoom";
      detail = "Connect the app to your Zoom account to start RTMS.";
    }
  }
  if (state.session && !detail) detail = `Zoom user ${state.session.userId}`;
  setState("auth-state", s, text);
  setText("auth-detail", detail);
  const connect = $("connect");
  if (a && a.installUrl) connect.href = a.installUrl;
  connect.hidden = !(a && !a.error && !authorized());
  connect.setAttribute("aria-disabled", String(state.authorizing));
  connect.textContent = state.authorizing ? "Connecting…" : "Connect to Zoom";
}

function renderEngagement() {
  const id = currentEngagementId();
  const st = engagementState(id);
  setText("engagement-id", id || "No engagement");
  setState("engagement-state", st, st === "none" ? "none" : st);
  let source = "";
  if (state.inZoom && state.sdkEngagement) source = "From the Zoom client.";
  else if (state.inZoom === false) source = "From Zoom webhooks (this page is not running inside Zoom).";
  else if (state.inZoom && !id) source = "Waiting for an engagement in Zoom Contact Center…";
  setText("engagement-source", source);

  // Outside Zoom: let the agent pick among active webhook engagements.
  const active = [...state.engagements.values()].filter((e) => e.state === "active");
  const pickable = state.inZoom !== true && active.length > 1;
  show("engagement-pick-label", pickable);
  if (pickable) {
    const sel = $("engagement-pick");
    const ids = active.map((e) => e.engagement_id);
    if ([...sel.options].map((o) => o.value).join() !== ids.join()) {
      sel.replaceChildren(...ids.map((v) => new Option(v, v)));
    }
    sel.value = id || "";
  }
  renderControls();
}

function renderControls() {
  const id = currentEngagementId();
  const active = engagementState(id) === "active";
  const ok = authorized();
  const running = id ? streamRunning(id) : false;
  const can = active && ok && !state.pending;
  $("start").disabled = !can || running;
  $("stop").disabled = !can || !running;
  show("pending", Boolean(state.pending));
  setText("pending-text", state.pending === "start" ? "Starting RTMS…" : state.pending === "stop" ? "Stopping RTMS…" : "");
  let hint = "";
  if (!id) hint = "Start/Stop need an active engagement.";
  else if (!active) hint = "The engagement is not active.";
  else if (!ok) hint = "Connect to Zoom to control RTMS for this engagement.";
  setText("controls-hint", hint);
}

/** Who speaks on a channel of an engagement's stream, when known. */
function roleOf(id, channelId) {
  const s = streamFor(id);
  const ch = s && (s.channels || []).find((c) => String(c.channel_id) === String(channelId));
  return (ch && ch.role) || "";
}

const recordings = new Recordings(roleOf, meta("zcc-recordings") === "on");

function renderMedia() {
  const id = currentEngagementId();
  if (signedIn()) recordings.follow(id);
  const s = id ? streamFor(id) : null;
  const streamState = s ? s.state : "idle";
  setState("stream-state", streamState, streamState);
  setText("frames-total", count(s ? s.frames : 0));
  setText("stream-id", s ? `Stream ${s.rtms_stream_id}` : "");
  const seen = new Set();
  const live = s && RUNNING.has(s.state);
  for (const ch of (s && s.channels) || []) {
    const role = ch.role === "caller" || ch.role === "agent" ? ch.role : `ch-${ch.channel_id}`;
    seen.add(role);
    renderChannel(role, ch, live, ch.role ? null : `Channel ${ch.channel_id}`);
  }
  for (const role of ["caller", "agent"]) {
    if (!seen.has(role)) renderChannel(role, { frames: 0, level: 0, peak: 0 }, false);
  }
  for (const el of [...$("channels").children]) {
    if (!seen.has(el.dataset.role) && el.dataset.role !== "caller" && el.dataset.role !== "agent") el.remove();
  }
}

function channelRow(role, label) {
  let row = $(`channel-${role}`);
  if (row) return row;
  row = $("channel-caller").cloneNode(true);
  row.id = `channel-${role}`;
  row.dataset.role = role;
  row.querySelector(".channel-name").textContent = label;
  row.querySelector(".meter").id = `meter-${role}`;
  row.querySelector(".channel-db").id = `db-${role}`;
  row.querySelector(".channel-frames").id = `frames-${role}`;
  $("channels").append(row);
  return row;
}

function renderChannel(role, ch, live, label) {
  const row = channelRow(role, label || role);
  const level = live ? Number(ch.level) || 0 : 0;
  const peak = live ? Number(ch.peak) || 0 : 0;
  const meter = row.querySelector(".meter");
  meter.dataset.level = level.toFixed(4);
  // CSSOM, not style attributes: allowed by style-src 'self'.
  const fraction = meterFraction(level);
  const fill = row.querySelector(".meter-fill");
  fill.style.width = `${(fraction * 100).toFixed(1)}%`;
  // Stretch the gradient to the whole track, so colour means loudness.
  fill.style.backgroundSize = fraction > 0 ? `${(100 / fraction).toFixed(1)}% 100%` : "";
  const peakMark = row.querySelector(".meter-peak");
  peakMark.hidden = !(peak > 0);
  peakMark.style.left = `${(meterFraction(peak) * 100).toFixed(1)}%`;
  row.querySelector(".channel-db").textContent = dbText(level);
  row.querySelector(".channel-frames").textContent = count(ch.frames);
}

function statusItem(line) {
  const li = document.createElement("li");
  li.className = "line";
  li.dataset.type = line.type || "info";
  const time = document.createElement("time");
  time.dateTime = line.timestamp;
  time.textContent = clock(line.timestamp);
  const msg = document.createElement("span");
  msg.className = "msg";
  msg.textContent = line.message;
  li.append(time, msg);
  return li;
}

function renderStatus() {
  const lines = state.status.filter(visibleLine);
  const list = $("status");
  if (!lines.length) {
    const li = document.createElement("li");
    li.className = "line empty";
    li.textContent = "Waiting for events…";
    list.replaceChildren(li);
    return;
  }
  list.replaceChildren(...lines.map(statusItem));
}

function addStatus(line) {
  if (state.status.some((l) => l.id === line.id)) return;
  state.status.unshift(line);
  state.status.length = Math.min(state.status.length, MAX_LINES);
  if (!visibleLine(line)) return;
  const list = $("status");
  if (list.firstElementChild && list.firstElementChild.classList.contains("empty")) list.replaceChildren();
  list.prepend(statusItem(line));
  while (list.children.length > MAX_LINES) list.lastElementChild.remove();
}

function renderTranscript() {
  const id = currentEngagementId();
  const lines = state.transcripts.filter((t) => !id || t.engagement_id === id).slice(0, 50);
  show("transcript-card", lines.length > 0);
  $("transcript").replaceChildren(
    ...lines.map((t) => {
      const li = document.createElement("li");
      li.dataset.role = t.role || "";
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = t.role || `channel ${t.channel_id}`;
      const text = document.createElement("span");
      text.textContent = t.text;
      li.append(who, text);
      return li;
    }),
  );
}

function renderAll() {
  renderWhere();
  renderLive();
  renderAuth();
  renderEngagement();
  renderMedia();
  renderStatus();
  renderTranscript();
}

// ---------- live feed ----------

const feed = new LiveFeed({
  state(s) {
    state.live = s;
    renderLive();
    if (s === "open") clearAlert("live");
    else if (s === "closed") alert("live", "Live updates are disconnected; retrying. Check your network if this stays.", "warning");
  },
  snapshot(snap) {
    // A (re)connect: the snapshot replaces what the feed told us before.
    state.status = (snap.status || []).slice(0, MAX_LINES);
    state.engagements = new Map((snap.engagements || []).map((e) => [e.engagement_id, e]));
    state.streams = new Map((snap.streams || []).map((s) => [s.rtms_stream_id, s]));
    state.transcripts = (snap.transcripts || []).slice(0, MAX_LINES);
    pickEngagement();
    renderEngagement();
    renderMedia();
    renderStatus();
    renderTranscript();
  },
  status(line) {
    addStatus(line);
  },
  engagement(e) {
    state.engagements.set(e.engagement_id, e);
    pickEngagement();
    renderEngagement();
    renderMedia();
  },
  stream(s) {
    state.streams.set(s.rtms_stream_id, s);
    if (state.requested && state.requested.engagementId === s.engagement_id) state.requested = null;
    renderMedia();
    renderControls();
  },
  transcript(t) {
    state.transcripts.unshift(t);
    state.transcripts.length = Math.min(state.transcripts.length, MAX_LINES);
    renderTranscript();
  },
});

/** Outside Zoom: follow the newest active webhook engagement unless one is picked. */
function pickEngagement() {
  if (state.inZoom === true && state.sdkEngagement) return;
  const picked = state.picked && state.engagements.get(state.picked);
  if (picked && picked.state === "active") return;
  const active = [...state.engagements.values()]
    .filter((e) => e.state === "active")
    .sort((a, b) => String(b.started_at).localeCompare(String(a.started_at)));
  if (active.length) state.picked = active[0].engagement_id;
  else if (!picked) state.picked = null;
}

function followFeed() {
  // In Zoom with a known engagement: only that engagement's events.
  const id = state.inZoom && state.sdkEngagement ? state.sdkEngagement.engagementId : "";
  feed.follow(id);
}

// ---------- auth and session ----------

async function refreshAuth() {
  try {
    state.auth = await getJSON("/api/auth/status");
    if (authorized()) clearAlert("auth");
    if (state.live === "signed-out" && signedIn()) startFeed();
  } catch (e) {
    state.auth = { error: e instanceof ApiError ? e.reason : "network error" };
  }
  renderAuth();
  renderControls();
}

async function bindAppContext(sdk) {
  let token;
  try {
    const r = await sdk.getAppContext();
    token = r && r.context;
  } catch (e) {
    alert("context", `Zoom did not provide an app context (${e.message}). Reopen the app from the Zoom client.`);
    return;
  }
  if (!token) {
    alert("context", "Zoom did not provide an app context. Reopen the app from the Zoom client.");
    return;
  }
  try {
    state.session = await getJSON(`/api/context?token=${encodeURIComponent(token)}`);
    clearAlert("context");
    if (state.live === "signed-out") startFeed();
  } catch (e) {
    state.session = null;
    const reason = e instanceof ApiError ? e.reason : e.message;
    alert(
      "context",
      `Zoom app context refused: ${reason}. Reopen the app from the Zoom client; if this keeps happening, the app's client secret may be wrong.`,
      "error",
      { label: "Retry", run: () => bindAppContext(sdk).then(refreshAuth) },
    );
  }
}

/** Inside Zoom: in-client OAuth, no new tab. Outside: the install page. */
function connectZoom() {
  if (state.zoom && canAuthorizeInClient(state.zoom.config)) connectInClient();
  else window.open($("connect").href, "_blank", "noopener");
}

async function connectInClient() {
  if (state.authorizing) return;
  state.authorizing = true;
  renderAuth();
  try {
    const challenge = await getJSON("/api/auth/challenge");
    const granted = await authorizeInClient(state.zoom.sdk, challenge);
    await postJSON("/api/auth/exchange", granted);
    clearAlert("auth");
  } catch (e) {
    const reason = e instanceof ApiError ? e.reason : e.message;
    alert("auth", `Couldn't connect to Zoom: ${reason}.`, "error", { label: "Retry", run: connectZoom });
  } finally {
    state.authorizing = false;
    await refreshAuth();
  }
}

$("connect").addEventListener("click", (e) => {
  if (!state.zoom || !canAuthorizeInClient(state.zoom.config)) return; // the link opens the install page
  e.preventDefault();
  connectInClient();
});

// ---------- Start / Stop ----------

async function control(action) {
  const engagementId = currentEngagementId();
  if (!engagementId || state.pending) return;
  state.pending = action;
  renderControls();
  try {
    await postJSON("/api/zoom/rtms/control", { engagementId, action });
    state.requested = { engagementId, action };
    clearAlert("control");
  } catch (e) {
    const reason = e instanceof ApiError ? e.reason : "the server could not be reached";
    if (e instanceof ApiError && e.needsAuth) {
      state.auth = { ...(state.auth || {}), authenticated: true, needsAuth: true };
      alert("control", `Couldn't ${action} RTMS: ${reason}. Connect to Zoom again, then retry.`, "error", {
        label: "Connect to Zoom",
        run: connectZoom,
      });
      renderAuth();
    } else {
      alert("control", `Couldn't ${action} RTMS: ${reason}.`, "error", {
        label: "Retry",
        run: () => control(action),
      });
    }
  } finally {
    state.pending = null;
    renderControls();
  }
}

$("start").addEventListener("click", () => control("start"));
$("stop").addEventListener("click", () => control("stop"));
$("engagement-pick").addEventListener("change", (e) => {
  state.picked = e.target.value;
  renderAll();
});
// Back from the install tab: check again (an event, not polling).
window.addEventListener("focus", () => {
  if (!authorized()) refreshAuth();
});

// ---------- start-up ----------

/** The feed carries only the caller's own engagements, so it needs a
 * session (or demo mode, which is open): opened once we know who we are. */
function signedIn() {
  return state.mode === "demo" || Boolean(state.session) || Boolean(state.auth && state.auth.userId);
}

function startFeed() {
  if (signedIn()) {
    followFeed();
  } else {
    state.live = "signed-out";
    renderLive();
  }
}

async function start() {
  renderAll();
  let zoom = null;
  try {
    zoom = await connect(meta("zcc-apps-sdk"));
  } catch (e) {
    state.inZoom = false;
    document.documentElement.dataset.zoom = "outside";
    document.documentElement.dataset.zoomReason = e && e.message ? e.message : String(e);
  }
  if (zoom) {
    state.inZoom = true;
    state.zoom = zoom;
    document.documentElement.dataset.zoom = "inside";
    state.runningContext = zoom.config.runningContext;
    await bindAppContext(zoom.sdk);
    const tracker = new EngagementTracker((current, switched) => {
      state.sdkEngagement = current;
      if (switched) state.requested = null;
      if (signedIn()) followFeed();
      renderEngagement();
      renderMedia();
      if (switched) {
        renderStatus();
        renderTranscript();
      }
    });
    await followEngagement(zoom.sdk, tracker);
  }
  renderAll();
  await refreshAuth();
  startFeed();
  document.documentElement.dataset.ready = "true";
}

start();

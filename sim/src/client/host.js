// The simulated Zoom web client: frames the app and answers the Apps SDK's
// postMessage bridge (docs/zoom-platform.md §3.5) from the simulator's state.
"use strict";

const params = new URLSearchParams(location.search);
const appUrl = params.get("app") || "";
const userParam = params.get("user") || "";
const contextMode = params.get("context") || "";

const SUPPORTED = [
  "getRunningContext", "getSupportedJsApis", "getAppContext", "getUserContext",
  "getEngagementContext", "getEngagementStatus", "openUrl", "authorize",
  "onEngagementStatusChange", "onEngagementContextChange", "onAuthorized",
];
// Dotted digits, as Zoom's clients report it: the SDK compares it with the
// versions in its compatibility tables and rejects config() otherwise.
const CLIENT_VERSION = "6.4.10.59312";

const frame = document.getElementById("app");
const callsEl = document.getElementById("calls");
let capabilities = null; // Set, once the app called config
let current = null; // the engagement shown to the app, as last told to it
let user = null;

function logCall(text, isError) {
  const li = document.createElement("li");
  li.textContent = text;
  if (isError) li.className = "err";
  callsEl.prepend(li);
  while (callsEl.children.length > 50) callsEl.lastChild.remove();
}

function render() {
  document.getElementById("engagement-id").textContent = current ? current.engagementId : "none";
  document.getElementById("engagement-state").textContent = current ? current.state : "none";
  document.getElementById("user").textContent = "agent " + (userParam || (user && user.user_id) || "unknown");
}

// The refusal of an API the app did not list in config(), in the form of
// the Zoom client's permission errors ("No Permission for this API. [code:…,
// reason:…]"); the code for this case is the simulator's choice.
function noPermission() {
  return apiError(80002, "No Permission for this API. [code:80002, reason:no_permission]");
}

function apiError(code, message) {
  const e = new Error(message);
  e.code = String(code);
  return e;
}

function iso(ms) {
  return ms ? new Date(ms).toISOString() : undefined;
}

function engagementContext(e) {
  return {
    engagementId: e.engagementId,
    startTime: iso(e.startedAt),
    acceptTime: iso(e.startedAt),
    queueId: "sim-queue",
    queueName: "Simulated voice queue",
    isTransfer: "false",
  };
}

function engagementStatus(e) {
  const status = {
    engagementId: e.engagementId,
    state: e.state,
    channel: "voice",
    source: "",
    isConference: "false",
    assignedAgentId: user ? user.user_id : undefined,
    consumers: [{ consumerDisplayName: "Simulated caller", consumerNumber: "+15550100" }],
  };
  if (e.state === "end") status.endTime = iso(e.endedAt);
  return status;
}

async function handle(apiName, data) {
  if (apiName === "config") {
    const wanted = (data && data.js_api_lists) || [];
    capabilities = new Set(wanted);
    return {
      runningContext: "inContactCenter",
      auth: { status: "authorized", upgradable: false },
      unsupportedApis: wanted.filter((c) => !SUPPORTED.includes(c)),
      clientVersion: CLIENT_VERSION,
      browserVersion: "chromium/sim",
      userAgent: navigator.userAgent,
      product: "web",
      launchContext: { origin: "contactCenter", openBy: "user" },
    };
  }
  if (!capabilities) throw apiError(10001, "must call zoomSdk.config before using other API methods");
  if (!capabilities.has(apiName)) throw noPermission();
  // Results as the client sends them; the SDK maps some (a bare running
  // context becomes {context}, a bare message {message}).
  switch (apiName) {
    case "getRunningContext":
      return "inContactCenter";
    case "getSupportedJsApis":
      return { supportedApis: SUPPORTED };
    case "getUserContext":
      return { status: "authorized", screenName: "Simulated agent", role: "agent" };
    case "getAppContext": {
      const q = new URLSearchParams();
      if (userParam) q.set("user", userParam);
      if (contextMode) q.set("mode", contextMode);
      const res = await fetch("/sim/client/context?" + q);
      if (!res.ok) throw apiError(10118, "Failed to get app context");
      const body = await res.json();
      return { context: body.context };
    }
    case "getEngagementContext":
      if (!current) throw apiError(10243, "not available outside Engagement context");
      return { engagementContext: engagementContext(current) };
    case "getEngagementStatus":
      if (!current) throw apiError(10243, "not available outside Engagement context");
      return { engagementStatus: engagementStatus(current) };
    case "openUrl":
      if (data && data.url) window.open(data.url, "_blank", "noopener");
      return "success";
    case "authorize":
      authorizeInClient(data);
      return "success";
    default:
      throw apiError(10003, `${apiName} is not supported by the simulated client`);
  }
}

// In-client OAuth: the code comes later, in onAuthorized (bound to the
// app's page URL, which the app then uses as the redirect URI).
async function authorizeInClient(data) {
  const codeChallenge = (data && data.codeChallenge) || "";
  const redirectUri = frame.src;
  try {
    const res = await fetch("/sim/client/authorize", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ codeChallenge, redirectUri, user: userParam }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
    emit("onAuthorized", { code: body.code, redirectUri, result: true, state: data && data.state });
  } catch (e) {
    logCall(`authorize failed: ${e.message}`, true);
    emit("onAuthorized", { result: false, state: data && data.state });
  }
}

function reply(jsCallId, result, errorCode, errorMessage) {
  const data = { jsCallId, result };
  if (errorCode) {
    data.errorCode = errorCode;
    data.errorMessage = errorMessage;
  }
  frame.contentWindow.postMessage({ type: "apiResponse", data }, "*");
}

window.addEventListener("message", async (ev) => {
  if (ev.source !== frame.contentWindow) return;
  let msg;
  try {
    msg = typeof ev.data === "string" ? JSON.parse(ev.data) : ev.data;
  } catch {
    return;
  }
  if (!msg || !msg.jsCallId || !msg.apiName) return;
  try {
    const result = await handle(msg.apiName, msg.data);
    logCall(`${msg.apiName} ok`);
    reply(msg.jsCallId, result);
  } catch (e) {
    logCall(`${msg.apiName} ${e.code || "10000"} ${e.message}`, true);
    reply(msg.jsCallId, undefined, e.code || "10000", e.message || "error");
  }
});

function emit(name, data) {
  if (!capabilities || !capabilities.has(name)) return;
  frame.contentWindow.postMessage({ type: "event", name, data: { ...data, timestamp: Date.now() } }, "*");
  // Never show an authorization code in the bridge log.
  const shown = name === "onAuthorized" ? { result: data.result } : data;
  logCall(`event ${name} ${JSON.stringify(shown)}`);
}

// Reconcile the simulator's state with what the app was last told, and push
// only what changed (the real client sends partial updates).
function reconcile(state) {
  user = state.user;
  const agent = userParam || (user && user.user_id) || "";
  // Only this agent's engagements (older simulators do not say whose).
  const list = (state.engagements || []).filter((e) => !e.user_id || !agent || e.user_id === agent);
  const newestActive = list
    .filter((e) => e.state === "active")
    .sort((a, b) => b.started_at_ms - a.started_at_ms)[0];
  if (current) {
    const now = list.find((e) => e.engagement_id === current.engagementId);
    if ((!now || now.state !== "active") && current.state === "active") {
      current = { ...current, state: "end", endedAt: (now && now.ended_at_ms) || Date.now() };
      emit("onEngagementStatusChange", {
        engagementId: current.engagementId, state: "end", endTime: iso(current.endedAt),
      });
    }
  }
  if (newestActive && (!current || newestActive.engagement_id !== current.engagementId)) {
    current = {
      engagementId: newestActive.engagement_id,
      state: "active",
      startedAt: newestActive.started_at_ms,
    };
    emit("onEngagementContextChange", engagementContext(current));
    emit("onEngagementStatusChange", engagementStatus(current));
  }
  render();
}

// The app is framed once the first state is known, so its first calls
// already see the current engagement.
const events = new EventSource("/sim/client/events");
events.addEventListener("state", (e) => {
  reconcile(JSON.parse(e.data));
  if (appUrl && !frame.src) frame.src = appUrl;
});

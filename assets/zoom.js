// The Zoom Apps SDK: load it, config() it, read the running context, the app
// context and the engagement, and follow engagement changes. Any failure
// means "outside Zoom" and the page carries on from webhooks.

export const CAPABILITIES = [
  "getEngagementContext",
  "getEngagementStatus",
  "getAppContext",
  "onEngagementStatusChange",
  "onEngagementContextChange",
  "authorize",
  "onAuthorized",
];

const AUTHORIZE_TIMEOUT_MS = 120000;

const LOAD_TIMEOUT_MS = 8000;

// Resolves with nothing: Zoom's SDK object is a Proxy that turns any unknown
// property into an API call, `then` included, so a promise resolved with it
// would call `zoomSdk.then(…)` and never settle. Read window.zoomSdk after.
function loadScript(url) {
  if (window.zoomSdk) return Promise.resolve();
  if (!url) return Promise.reject(new Error("no Apps SDK URL configured"));
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    const timer = setTimeout(() => reject(new Error("the Apps SDK did not load in time")), LOAD_TIMEOUT_MS);
    script.src = url;
    script.async = true;
    script.addEventListener("load", () => {
      clearTimeout(timer);
      if (window.zoomSdk) resolve();
      else reject(new Error("the Apps SDK loaded but defines no zoomSdk"));
    });
    script.addEventListener("error", () => {
      clearTimeout(timer);
      reject(new Error("the Apps SDK could not be loaded"));
    });
    document.head.append(script);
  });
}

/** Load and configure the SDK. Resolves `{sdk, config}` or rejects. */
export async function connect(url) {
  await loadScript(url);
  const sdk = window.zoomSdk;
  // The real SDK may throw synchronously outside Zoom; treat it like a rejection.
  const config = await Promise.resolve().then(() =>
    sdk.config({ capabilities: CAPABILITIES, version: "0.16" }),
  );
  return { sdk, config };
}

/** The engagement as the SDK tells it, merged from partial updates. */
export class EngagementTracker {
  constructor(onChange) {
    this.current = null;
    this.onChange = onChange;
  }

  merge(partial) {
    if (!partial || typeof partial !== "object") return;
    const { timestamp, ...fields } = partial;
    const switched = fields.engagementId && (!this.current || fields.engagementId !== this.current.engagementId);
    this.current = switched ? { ...fields } : { ...(this.current || {}), ...fields };
    this.onChange(this.current, Boolean(switched));
  }
}

/** Read the engagement and subscribe to its changes. */
export async function followEngagement(sdk, tracker) {
  sdk.onEngagementContextChange((e) => {
    const ctx = e && (e.engagementContext || e);
    const before = tracker.current && tracker.current.engagementId;
    tracker.merge(ctx);
    // A switch to another engagement: ask for its state.
    if (ctx && ctx.engagementId && ctx.engagementId !== before) {
      sdk.getEngagementStatus({ engagementId: ctx.engagementId })
        .then((r) => tracker.merge(r && r.engagementStatus))
        .catch(() => {});
    }
  });
  sdk.onEngagementStatusChange((e) => tracker.merge(e && (e.engagementStatus || e)));
  let engagementId;
  try {
    const r = await sdk.getEngagementContext();
    const ctx = r && r.engagementContext;
    if (ctx) {
      engagementId = ctx.engagementId;
      tracker.merge(ctx);
    }
  } catch {
    // Not in an engagement yet, or not supported by this client.
  }
  try {
    const r = await sdk.getEngagementStatus(engagementId ? { engagementId } : undefined);
    if (r && r.engagementStatus) tracker.merge(r.engagementStatus);
  } catch {
    // Same as above; webhooks still tell us.
  }
}

/** Whether this client offers in-client OAuth (`authorize` + `onAuthorized`). */
export function canAuthorizeInClient(config) {
  const unsupported = (config && config.unsupportedApis) || [];
  return !unsupported.includes("authorize") && !unsupported.includes("onAuthorized");
}

/**
 * In-client OAuth: `authorize` with the server's PKCE challenge, then the
 * code arrives in `onAuthorized` (matched by `state`). Resolves
 * `{code, state, redirectUri}`; rejects on refusal or after two minutes.
 */
export function authorizeInClient(sdk, challenge) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sdk.removeEventListener("onAuthorized", onAuthorized);
      reject(new Error("Zoom did not complete the authorization"));
    }, AUTHORIZE_TIMEOUT_MS);
    function onAuthorized(e) {
      if (!e || e.state !== challenge.state) return;
      clearTimeout(timer);
      sdk.removeEventListener("onAuthorized", onAuthorized);
      if (e.result === false || !e.code) reject(new Error("the authorization was not granted"));
      else resolve({ code: e.code, state: e.state, redirectUri: e.redirectUri || location.href });
    }
    sdk.addEventListener("onAuthorized", onAuthorized);
    sdk.authorize({ codeChallenge: challenge.codeChallenge, state: challenge.state }).catch((e) => {
      clearTimeout(timer);
      sdk.removeEventListener("onAuthorized", onAuthorized);
      reject(e);
    });
  });
}

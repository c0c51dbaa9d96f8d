/* Stand-in for the Zoom Apps SDK (https://appssdk.zoom.us/sdk.min.js), served
 * by the zcc-rtms simulator. Same global (`zoomSdk`) and the same web-client
 * transport as the real SDK (docs/zoom-platform.md §3.5): JSON-string requests
 * `{jsCallId, apiName, data}` posted to window.parent, object replies
 * `{type:"apiResponse", data:{jsCallId, result, errorCode?, errorMessage?}}`
 * and events `{type:"event", name, data}`. Outside a frame it is "not
 * supported by this browser", like the real one. */
(function () {
  "use strict";

  var API_NAMES = [
    "getRunningContext", "getSupportedJsApis", "getAppContext", "getUserContext",
    "getEngagementContext", "getEngagementStatus", "getEngagementVariableValue",
    "getAppVariableList", "authorize", "promptAuthorize",
  ];
  var EVENT_NAMES = [
    "onEngagementStatusChange", "onEngagementContextChange",
    "onEngagementVariableValueChange", "onAuthorized", "onRunningContextChange",
    "onMyUserContextChange",
  ];

  var framed = (function () {
    try {
      return window.parent !== window;
    } catch (e) {
      return true;
    }
  })();
  var timeoutMs = 10000;
  var configured = false;
  var pending = new Map();
  var listeners = new Map();

  function ZoomApiError(message, code, requestId) {
    var e = new Error(message);
    e.name = "ZoomApiError";
    e.code = code;
    e.requestId = requestId;
    return e;
  }

  function notSupported() {
    return new Error("The Zoom Apps SDK is not supported by this browser");
  }

  function newCallId() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return "id" + Array.prototype.map.call(b, function (x) {
      return x.toString(16).padStart(2, "0");
    }).join("");
  }

  // The real SDK's output mapping (0.16) for the calls covered here: the
  // client answers some with a bare value.
  function wrapMessage(v) {
    return typeof v === "string" ? { message: v } : v;
  }
  var MAP_OUTPUT = {
    getRunningContext: function (v) { return { context: v }; },
    openUrl: wrapMessage,
    authorize: wrapMessage,
    promptAuthorize: wrapMessage,
  };

  function dispatch(name, data) {
    var set = listeners.get(name);
    if (!set) return;
    set.forEach(function (fn) {
      try {
        fn(data);
      } catch (e) {
        setTimeout(function () { throw e; });
      }
    });
  }

  if (framed) {
    window.addEventListener("message", function (ev) {
      if (ev.source !== window.parent) return;
      var msg = ev.data;
      if (!msg || typeof msg !== "object") return;
      if (msg.type === "apiResponse" && msg.data && pending.has(msg.data.jsCallId)) {
        var call = pending.get(msg.data.jsCallId);
        pending.delete(msg.data.jsCallId);
        clearTimeout(call.timer);
        var d = msg.data;
        if (d.errorCode || d.errorMessage) {
          call.reject(ZoomApiError(d.errorMessage || "error", d.errorCode, d.jsCallId));
        } else {
          call.resolve(d.result);
        }
      } else if (msg.type === "event" && typeof msg.name === "string") {
        dispatch(msg.name, msg.data);
      }
    });
  }

  function send(apiName, data, wait) {
    if (!framed) return Promise.reject(notSupported());
    return new Promise(function (resolve, reject) {
      var id = newCallId();
      var timer = setTimeout(function () {
        pending.delete(id);
        reject(ZoomApiError(apiName + " took longer than " + wait + "ms to respond", "timeout", id));
      }, wait);
      pending.set(id, { resolve: resolve, reject: reject, timer: timer });
      var msg = { jsCallId: id, apiName: apiName };
      if (data !== undefined) msg.data = data;
      window.parent.postMessage(JSON.stringify(msg), "*");
    });
  }

  function callZoomApi(apiName, data) {
    if (!framed) return Promise.reject(notSupported());
    if (!configured) {
      return Promise.reject(new Error("must call zoomSdk.config before using other API methods"));
    }
    if (apiName === "authorize" && !(data && typeof data.codeChallenge === "string" && data.codeChallenge)) {
      return Promise.reject(new Error("codeChallenge is required for zoomSdk.authorize"));
    }
    var map = MAP_OUTPUT[apiName] || function (v) { return v; };
    return send(apiName, data, timeoutMs).then(map);
  }

  var sdk = {
    version: "0.16-sim",
    config: function (options) {
      options = options || {};
      if (!framed) return Promise.reject(notSupported());
      if (typeof options.timeout === "number" && options.timeout > 0) timeoutMs = options.timeout;
      var data = {
        js_api_lists: options.capabilities || [],
        size: options.popoutSize || options.size,
        version: options.version || "0.14",
      };
      return send("config", data, timeoutMs).then(function (res) {
        if (!res || typeof res.clientVersion !== "string") {
          throw new Error("config failed: the client sent no clientVersion");
        }
        // Like the real SDK, which compares it with its version tables.
        if (!/^\d+(\.\d+)*$/.test(res.clientVersion)) {
          throw new Error("Invalid version format for currentVersion or requiredVersion");
        }
        configured = true;
        return res;
      });
    },
    callZoomApi: callZoomApi,
    addEventListener: function (name, fn) {
      if (!listeners.has(name)) listeners.set(name, new Set());
      listeners.get(name).add(fn);
    },
    removeEventListener: function (name, fn) {
      var set = listeners.get(name);
      if (set) set.delete(fn);
    },
    openUrl: function (options) {
      if (!configured) return callZoomApi("openUrl", options);
      // Like the real SDK: does not wait for the client's answer.
      send("openUrl", options, timeoutMs).catch(function () {});
      return Promise.resolve({ message: "success" });
    },
  };
  API_NAMES.forEach(function (name) {
    sdk[name] = function (options) {
      return callZoomApi(name, options);
    };
  });
  EVENT_NAMES.forEach(function (name) {
    sdk[name] = function (fn) {
      sdk.addEventListener(name, fn);
    };
  });

  // Like the real SDK, a Proxy that turns any unknown property into an API
  // call (or an event subscription for on*), with a warning. So even `then`
  // is "defined": resolving a promise with the SDK calls `sdk.then(...)`,
  // which never settles it.
  window.zoomSdk = new Proxy(sdk, {
    get: function (target, prop) {
      var name = String(prop);
      if (name.charAt(0) === "_" || name === "default" || target[name]) return target[name];
      console.warn("Method " + name + " is not available in this version of Zoom Apps SDK and might not work correctly. Please, update your version of Zoom Apps SDK");
      if (/^on/.test(name)) {
        return function (fn) { target.addEventListener(name, fn); };
      }
      return function (options) { return callZoomApi(name, options); };
    },
  });
})();

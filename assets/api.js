// JSON over fetch, same origin (the session cookie rides along).

export class ApiError extends Error {
  constructor(status, body) {
    const reason = (body && (body.error || body.reason)) || `HTTP ${status}`;
    super(reason);
    this.name = "ApiError";
    this.status = status;
    this.reason = reason;
    this.needsAuth = Boolean(body && body.needsAuth);
  }
}

async function parse(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (!res.ok) throw new ApiError(res.status, body);
  return body || {};
}

export async function getJSON(url) {
  const res = await fetch(url, { headers: { accept: "application/json" }, cache: "no-store" });
  return parse(res);
}

export async function postJSON(url, body) {
  const res = await fetch(url, {
    method: "POST",
    headers: { accept: "application/json", "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return parse(res);
}

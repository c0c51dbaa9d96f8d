// Small DOM and formatting helpers; no state.

export const $ = (id) => document.getElementById(id);

export function setText(id, text) {
  const el = $(id);
  if (el && el.textContent !== text) el.textContent = text;
}

export function show(id, visible) {
  const el = $(id);
  if (el) el.hidden = !visible;
}

export function setState(id, state, text) {
  const el = $(id);
  if (!el) return;
  el.dataset.state = state;
  if (text !== undefined && el.textContent !== text) el.textContent = text;
}

/** `12:34:56.789` in local time, from an RFC 3339 string or ms. */
export function clock(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts || "");
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** RMS level (0..1 of full scale) to dBFS, floored at -90. */
export function dbfs(level) {
  if (!(level > 0)) return -Infinity;
  return Math.max(-90, 20 * Math.log10(level));
}

/** A meter position 0..1 for a level: -60 dBFS .. 0 dBFS. */
export function meterFraction(level) {
  const db = dbfs(level);
  if (db === -Infinity) return 0;
  return Math.min(1, Math.max(0, (db + 60) / 60));
}

export function dbText(level) {
  const db = dbfs(level);
  return db === -Infinity ? "−∞ dB" : `${db.toFixed(0)} dB`;
}

export function count(n) {
  return Number(n || 0).toLocaleString("en-US");
}

// The current engagement's call recordings (when the server records calls):
// a download link per channel. Asks the server when the engagement changes
// and every few seconds while one is shown; never asks when the server
// records nothing (the page's `zcc-recordings` meta tag).
import { getJSON } from "./api.js";
import { $, clock, show } from "./view.js";

const REFRESH_MS = 5000;

export class Recordings {
  constructor(roleOf, on) {
    this.roleOf = roleOf; // (engagementId, channelId) -> "caller" | "agent" | ""
    this.id = null;
    this.off = !on;
    this.timer = null;
    this.shown = "";
  }

  /** Show `id`'s recordings (null: none). Cheap when nothing changed. */
  follow(id) {
    if (this.off || id === this.id) return;
    this.id = id;
    clearInterval(this.timer);
    this.timer = null;
    this.render([]);
    if (!id) return;
    this.refresh();
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  async refresh() {
    const id = this.id;
    if (!id) return;
    try {
      const res = await getJSON(`/api/recordings?engagement_id=${encodeURIComponent(id)}`);
      if (id === this.id) this.render(res.recordings || []);
    } catch {
      // Not visible (yet) to this caller, or the server is unreachable.
      if (id === this.id) this.render([]);
    }
  }

  render(list) {
    const key = JSON.stringify(list.map((r) => [r.file, r.duration_ms]));
    if (key === this.shown) return;
    this.shown = key;
    show("recordings-card", list.length > 0);
    $("recordings").replaceChildren(
      ...list.map((r) => {
        const role = this.roleOf(this.id, r.channel);
        const name = role === "caller" ? "Caller" : role === "agent" ? "Agent" : `Channel ${r.channel}`;
        const a = document.createElement("a");
        a.href = r.url;
        a.download = r.file;
        a.textContent = `${name} · from ${clock(r.started_ms)} · ${Math.round(r.duration_ms / 1000)} s`;
        const li = document.createElement("li");
        li.append(a);
        return li;
      }),
    );
  }
}

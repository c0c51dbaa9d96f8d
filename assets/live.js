// The live feed: Server-Sent Events from /api/events, per engagement when
// one is known. EventSource reconnects by itself; the server then starts
// with a fresh snapshot. If the browser gives up (the stream is CLOSED), we
// open a new one after a growing delay. No polling.

const MAX_RETRY_MS = 10000;

export class LiveFeed {
  constructor(handlers) {
    this.handlers = handlers;
    this.source = null;
    this.engagementId = undefined;
    this.retryMs = 500;
    this.timer = null;
  }

  /** Follow `engagementId` (or everything when empty); no-op if unchanged. */
  follow(engagementId) {
    const id = engagementId || "";
    if (this.source && id === this.engagementId) return;
    this.engagementId = id;
    this.open();
  }

  open() {
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    const url = this.engagementId
      ? `/api/events?engagement_id=${encodeURIComponent(this.engagementId)}`
      : "/api/events";
    const source = new EventSource(url);
    this.source = source;
    this.handlers.state("connecting");
    source.addEventListener("open", () => {
      this.retryMs = 500;
      this.handlers.state("open");
    });
    source.addEventListener("error", () => {
      if (source !== this.source) return;
      if (source.readyState === EventSource.CLOSED) {
        this.handlers.state("closed");
        this.timer = setTimeout(() => this.open(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
      } else {
        this.handlers.state("reconnecting");
      }
    });
    for (const kind of ["snapshot", "status", "engagement", "stream", "transcript"]) {
      source.addEventListener(kind, (e) => {
        if (source !== this.source) return;
        let data;
        try {
          data = JSON.parse(e.data);
        } catch {
          return;
        }
        this.handlers[kind](data);
      });
    }
  }
}

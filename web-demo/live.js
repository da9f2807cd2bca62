// The live connection: one WebSocket for every workflow the page follows. A socket cannot carry
// headers, so the page trades its key for a one-minute ticket each time it (re)connects: the key
// never goes into a URL. Commands sent over it are matched to their answers by `requestId`.

import { requestId } from "./api.js";

export class Live {
  /**
   * @param api the page's API (`createApi`)
   * @param on `{ state(msg), gap(msg), error(msg), status(text, ok) }`
   */
  constructor(api, on) {
    this.api = api;
    this.on = on;
    this.ws = null;
    this.backoff = 500;
    this.pending = new Map(); // requestId → { resolve }
    this.followed = null; // { workflowId, token, since() }
  }

  async connect() {
    const r = await this.api.call("POST", "/v3/auth/ticket");
    if (!r.ok || !r.body || !r.body.ticket) return this.retry();
    const url = `${location.origin.replace(/^http/, "ws")}/v3/ws?ticket=${encodeURIComponent(r.body.ticket)}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 500;
      this.on.status("live: connected", true);
      if (this.followed) this.subscribe(this.followed);
    };
    ws.onclose = () => {
      if (this.ws === ws) this.retry();
    };
    ws.onmessage = (ev) => this.receive(JSON.parse(ev.data));
  }

  retry() {
    this.on.status("live: reconnecting…", false);
    setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, 5000);
  }

  /** Drops the socket (it reconnects by itself, and catches up from the last state seen). */
  drop() {
    if (this.ws) this.ws.close();
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /**
   * Sends a command; resolves with the first message of a type in `answers` (or an `error`)
   * that names its request id: a start's `ack`, an execute-node's `result` (its `ack` comes first).
   */
  request(msg, answers = ["ack"]) {
    const id = requestId();
    return new Promise((resolve) => {
      this.pending.set(id, { resolve, answers: [...answers, "error"] });
      this.send({ ...msg, requestId: id });
    });
  }

  /**
   * Follows one workflow (and stops following the previous one); again after every reconnect.
   * `subscribed`: the socket follows it already (it started it).
   */
  follow(followed, subscribed = false) {
    this.unfollow();
    this.followed = followed;
    if (!subscribed) this.subscribe(followed);
  }

  unfollow() {
    if (this.followed) this.send({ type: "unsubscribe", workflowId: this.followed.workflowId });
    this.followed = null;
  }

  subscribe({ workflowId, token, since }) {
    if (workflowId) this.send({ type: "subscribe", workflowId, token, since: since() || undefined });
  }

  receive(m) {
    const waiting = m.requestId && this.pending.get(m.requestId);
    if (waiting && waiting.answers.includes(m.type)) {
      this.pending.delete(m.requestId);
      waiting.resolve(m);
      return;
    }
    if (m.type === "state") this.on.state(m);
    else if (m.type === "gap") this.on.gap(m);
    else if (m.type === "error") this.on.error(m); // a resume refused: answered by request id
  }
}

// ../../clients/typescript/src/common.ts
var DriftError = class extends Error {
  status;
  code;
  details;
  /** Seconds the gateway asked to wait before trying again (429, 503). */
  retryAfter;
  constructor(status, body, retryAfter) {
    super(body?.message ?? `HTTP ${status}`);
    this.name = "DriftError";
    this.status = status;
    this.code = body?.code ?? (status === 0 ? "network" : "http_error");
    this.details = body?.details ?? void 0;
    this.retryAfter = retryAfter;
  }
};
var TERMINAL = /* @__PURE__ */ new Set(["COMPLETED", "FAILED", "TERMINATED"]);
var RETRYABLE = /* @__PURE__ */ new Set([0, 429, 503, 504]);
var MAX_BUFFERED = 1024;
var isTerminal = (s) => TERMINAL.has(s.workflowStatus);
var newId = () => globalThis.crypto?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
var sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
});
var backoff = (attempt) => Math.min(250 * 2 ** attempt, 5e3) * (0.5 + Math.random() / 2);

// ../../clients/typescript/src/live.ts
function socketClass(t) {
  const WS = t.WebSocket ?? globalThis.WebSocket;
  if (!WS) throw new Error("no WebSocket here: pass `WebSocket` to createClient (Node 20: the `ws` package)");
  return WS;
}
var socketUrl = (t, query) => `${t.base.replace(/^http/, "ws")}/v3/ws${query}`;
var Follow = class {
  constructor(workflowId, o, t) {
    this.workflowId = workflowId;
    this.o = o;
    this.t = t;
    this.since = o.since;
    void this.run();
  }
  workflowId;
  o;
  t;
  snapshot = { done: false };
  listeners = /* @__PURE__ */ new Set();
  buffered = [];
  wake;
  stop = new AbortController();
  since;
  /** Registers a listener called on every change; returns the function that removes it. */
  subscribe = (listener) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };
  getSnapshot = () => this.snapshot;
  /** Stops following (the iterator ends after what it has already received). */
  close() {
    this.stop.abort();
    this.update({ done: true });
  }
  async *[Symbol.asyncIterator]() {
    for (; ; ) {
      const next = this.buffered.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.snapshot.error) throw this.snapshot.error;
      if (this.snapshot.done) return;
      await new Promise((resolve) => this.wake = resolve);
    }
  }
  update(change) {
    this.snapshot = { ...this.snapshot, ...change };
    this.listeners.forEach((l) => l());
    const wake = this.wake;
    this.wake = void 0;
    wake?.();
  }
  /** A state from either transport: delivered once, in order; true when it is the last. */
  state(s) {
    if (this.since !== void 0 && s.seq <= this.since) return false;
    this.since = s.seq;
    if (this.buffered.length >= MAX_BUFFERED) this.buffered.shift();
    this.buffered.push(s);
    const last = isTerminal(s);
    this.update({ state: s, done: last });
    return last;
  }
  gap(g) {
    this.o.onGap?.(g);
    this.update({ gap: g });
  }
  async run() {
    const limit = this.o.attempts ?? 10;
    let failures = 0;
    while (!this.stop.signal.aborted && !this.snapshot.done) {
      const seen = this.since;
      let ended;
      try {
        ended = this.o.transport === "ws" ? await this.overSocket() : await this.overEvents();
      } catch (e) {
        ended = this.stop.signal.aborted ? "done" : e instanceof DriftError ? e : "retry";
      }
      if (ended instanceof DriftError && RETRYABLE.has(ended.status)) ended = "retry";
      if (ended === "done") break;
      if (ended instanceof DriftError) return this.update({ error: ended, done: true });
      failures = this.since !== seen ? 0 : failures + 1;
      if (failures >= limit) {
        const error = new DriftError(0, { code: "network", message: `gave up after ${failures} attempts` });
        return this.update({ error, done: true });
      }
      await sleep(backoff(failures), this.stop.signal);
    }
    if (!this.snapshot.done) this.update({ done: true });
  }
  async overEvents() {
    const extra = {
      accept: "text/event-stream",
      "last-event-id": this.since === void 0 ? void 0 : String(this.since)
    };
    const headers = await this.t.headers(extra, this.o.streamToken);
    const path = `/v3/workflow/${encodeURIComponent(this.workflowId)}/events`;
    const r = await this.t.doFetch(`${this.t.base}${path}`, { headers, signal: this.stop.signal });
    if (r.status === 204) return "done";
    if (!r.ok || !r.body) {
      const body = await r.json().catch(() => void 0);
      return new DriftError(r.status, body, Number(r.headers.get("retry-after")) || void 0);
    }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (; ; ) {
      const { value, done } = await reader.read();
      if (done) return "retry";
      buf += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let event = "message";
        let data = "";
        for (const line of frame.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(5).replace(/^ /, "");
        }
        if (!data) continue;
        if (event === "gap") this.gap(JSON.parse(data));
        else if (event === "state" && this.state(JSON.parse(data))) {
          await reader.cancel().catch(() => void 0);
          return "done";
        }
      }
    }
  }
  async overSocket() {
    const WS = socketClass(this.t);
    const token = this.o.streamToken;
    const query = token ? "" : `?ticket=${encodeURIComponent(await this.t.ticket())}`;
    const ws = new WS(socketUrl(this.t, query));
    return await new Promise((resolve) => {
      const finish = (e) => {
        this.stop.signal.removeEventListener("abort", abort);
        ws.onclose = ws.onmessage = ws.onerror = null;
        if (ws.readyState <= 1) ws.close();
        resolve(e);
      };
      const abort = () => finish("done");
      this.stop.signal.addEventListener("abort", abort, { once: true });
      const subscribe = { type: "subscribe", workflowId: this.workflowId, since: this.since, token };
      ws.onopen = () => ws.send(JSON.stringify(subscribe));
      ws.onerror = () => finish("retry");
      ws.onclose = () => finish("retry");
      ws.onmessage = (ev) => {
        const m = JSON.parse(String(ev.data));
        if ("workflowId" in m && m.workflowId !== this.workflowId) return;
        if (m.type === "gap") this.gap({ after: m.after, latest: m.latest });
        else if (m.type === "state" && this.state(m.state)) finish("done");
        else if (m.type === "error") finish(new DriftError(m.status, m));
      };
    });
  }
};
var ANSWER_WITHIN_MS = 3e4;
var Socket = class {
  constructor(t, events = {}) {
    this.t = t;
    this.events = events;
    this.WS = socketClass(t);
    this.reset();
    void this.open();
  }
  t;
  events;
  ws;
  pending = /* @__PURE__ */ new Map();
  followed = /* @__PURE__ */ new Map();
  opened;
  markOpen;
  closed = false;
  failures = 0;
  WS;
  /** Follows a workflow (again after every reconnect) from after `since`. */
  follow(workflowId, o = {}) {
    this.followed.set(workflowId, { since: o.since, token: o.token });
    this.send({ type: "subscribe", workflowId, since: o.since, token: o.token });
  }
  unfollow(workflowId) {
    if (this.followed.delete(workflowId)) this.send({ type: "unsubscribe", workflowId });
  }
  /** Starts a workflow, which this socket then follows; resolves with its id and stream token. */
  async start(workflow, params = {}, o = {}) {
    const requestId = o.requestId ?? newId();
    const msg = {
      type: "start",
      requestId,
      workflow,
      params,
      version: o.version,
      workflowId: o.workflowId,
      mode: o.mode,
      callbackUrl: o.callbackUrl,
      idempotencyKey: o.idempotencyKey ?? requestId
    };
    const ack = await this.request(requestId, msg, "ack");
    this.followed.set(ack.workflowId, {});
    return { workflowId: ack.workflowId, streamToken: ack.streamToken ?? "", requestId };
  }
  /** Answers the current screen; resolves with the state that answers it. */
  async resume(workflowId, viewResponse, o = {}) {
    const requestId = o.requestId ?? newId();
    const msg = { type: "resume", requestId, workflowId, viewResponse, seq: o.seq, token: o.token };
    const answer = await this.request(requestId, msg, "state");
    const state = answer.state;
    return state;
  }
  /** Returns to the previous screen; resolves with the state at it (see the client's `back`). */
  async back(workflowId, o = {}) {
    const requestId = o.requestId ?? newId();
    const msg = { type: "back", requestId, workflowId, seq: o.seq, token: o.token };
    const state = (await this.request(requestId, msg, "state")).state;
    return state;
  }
  /** Runs an HTTP or SCRIPT node of the workflow that no edge leads to. */
  async executeNode(workflowId, node, parameters, o = {}) {
    const requestId = o.requestId ?? newId();
    const msg = { type: "execute-node", requestId, workflowId, node, parameters };
    const { workflowId: id, node: ran, status, response } = await this.request(requestId, msg, "result");
    const result = { workflowId: id, node: ran, status, response };
    return result;
  }
  /** Drops the connection (it reopens by itself and catches up): for tests and demos. */
  drop() {
    this.ws?.close();
  }
  close() {
    this.closed = true;
    this.ws?.close();
    this.failAll("the socket was closed");
  }
  reset() {
    this.opened = new Promise((resolve) => this.markOpen = resolve);
  }
  async open() {
    if (this.closed) return;
    let ticket;
    try {
      ticket = await this.t.ticket();
    } catch (e) {
      if (e instanceof DriftError && !RETRYABLE.has(e.status)) return this.failAll(e.message, e);
      return this.retry();
    }
    const ws = new this.WS(socketUrl(this.t, `?ticket=${encodeURIComponent(ticket)}`));
    this.ws = ws;
    ws.onopen = () => {
      this.failures = 0;
      for (const [workflowId, f] of this.followed)
        this.send({ type: "subscribe", workflowId, since: f.since, token: f.token });
      this.markOpen?.();
      this.events.status?.(true);
    };
    ws.onmessage = (ev) => this.receive(JSON.parse(String(ev.data)));
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = void 0;
      this.reset();
      this.failAll("the connection was lost; send again with the same requestId");
      this.events.status?.(false);
      this.retry();
    };
  }
  retry() {
    if (this.closed) return;
    setTimeout(() => void this.open(), backoff(this.failures++));
  }
  send(msg) {
    if (this.ws?.readyState === 1) this.ws.send(JSON.stringify(msg));
  }
  /** Sends once the socket is open; settles with the first `answer` (or `error`) naming it. */
  async request(requestId, msg, answer) {
    let opening;
    const within = new Promise((_, reject) => {
      const late = () => reject(new DriftError(0, { code: "network", message: "the socket did not open" }));
      opening = setTimeout(late, ANSWER_WITHIN_MS);
    });
    try {
      await Promise.race([this.opened, within]);
    } finally {
      clearTimeout(opening);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(
          new DriftError(0, { code: "network", message: "no answer in time; send again with the same requestId" })
        );
      }, ANSWER_WITHIN_MS);
      this.pending.set(requestId, { answer, resolve: (m) => resolve(m), reject, timer });
      this.send(msg);
    });
  }
  /** Settles the request `requestId` names, when `m` is its answer or an error. */
  settle(requestId, m) {
    const p = requestId ? this.pending.get(requestId) : void 0;
    if (!requestId || !p || m.type !== p.answer && m.type !== "error") return;
    this.pending.delete(requestId);
    clearTimeout(p.timer);
    if (m.type === "error") p.reject(new DriftError(m.status, m));
    else p.resolve(m);
  }
  failAll(message, error) {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(error ?? new DriftError(0, { code: "network", message }));
      this.pending.delete(id);
    }
  }
  receive(m) {
    if (m.type === "state") {
      const f = this.followed.get(m.workflowId);
      if (f && (f.since === void 0 || m.seq > f.since)) f.since = m.seq;
      this.events.state?.(m.state, m.workflowId);
      this.settle(m.state.requestId, m);
    } else if (m.type === "gap") {
      this.events.gap?.({ after: m.after, latest: m.latest }, m.workflowId);
    } else if (m.type !== "pong") {
      this.settle(m.requestId, m);
    }
  }
};

// ../../clients/typescript/src/index.ts
function createClient(options) {
  const base = options.baseUrl.replace(/\/+$/, "");
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const attempts = Math.max(1, options.attempts ?? 3);
  async function credential() {
    const t = options.token;
    return typeof t === "function" ? await t() : t;
  }
  async function headers(extra = {}, bearer) {
    const h = { accept: "application/json" };
    const token = bearer ?? await credential();
    if (token) h.authorization = `Bearer ${token}`;
    for (const [k, v] of Object.entries(extra)) if (v !== void 0) h[k] = v;
    return h;
  }
  async function call(method, path, body, extra = {}, signal) {
    const text = body === void 0 ? void 0 : JSON.stringify(body);
    if (text !== void 0) extra = { "content-type": "application/json", ...extra };
    let last;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await sleep(last?.retryAfter ? last.retryAfter * 1e3 : backoff(attempt), signal);
      signal?.throwIfAborted();
      let r;
      try {
        r = await doFetch(`${base}${path}`, { method, headers: await headers(extra), body: text, signal });
      } catch (e) {
        if (signal?.aborted) throw e;
        last = new DriftError(0, { code: "network", message: `cannot reach ${base}: ${e.message}` });
        continue;
      }
      const raw = await r.text();
      let parsed = raw || void 0;
      try {
        parsed = raw ? JSON.parse(raw) : void 0;
      } catch {
      }
      if (r.ok) return { status: r.status, body: parsed };
      if (typeof parsed !== "object") parsed = { message: String(parsed ?? "").slice(0, 200) || void 0 };
      const retryAfter = Number(r.headers.get("retry-after")) || void 0;
      last = new DriftError(r.status, parsed, retryAfter);
      if (!RETRYABLE.has(r.status)) break;
    }
    throw last;
  }
  const prefer = (wait) => {
    const w = wait ?? options.wait;
    return w === void 0 ? void 0 : `wait=${w}`;
  };
  const answer = (r) => ({ ...r.body, accepted: r.status === 202 });
  const workflowPath = (id, tail = "") => `/v3/workflow/${encodeURIComponent(id)}${tail}`;
  async function start(workflow, params = {}, o = {}) {
    const requestId = o.requestId ?? newId();
    const body = {
      workflow,
      params,
      requestId,
      version: o.version,
      workflowId: o.workflowId,
      mode: o.mode,
      callbackUrl: o.callbackUrl
    };
    const extra = { prefer: prefer(o.wait), "idempotency-key": o.idempotencyKey ?? requestId };
    return answer(await call("POST", "/v3/workflow/start", body, extra, o.signal));
  }
  async function resume(id, viewResponse, o = {}) {
    const body = {
      viewResponse,
      seq: o.seq,
      requestId: o.requestId ?? newId(),
      mode: o.mode,
      callbackUrl: o.callbackUrl
    };
    const path = `/v3/workflow/resume/${encodeURIComponent(id)}`;
    return answer(await call("PUT", path, body, { prefer: prefer(o.wait) }, o.signal));
  }
  async function back(id, o = {}) {
    const body = { seq: o.seq, requestId: o.requestId ?? newId() };
    return answer(
      await call("POST", workflowPath(id, "/back"), body, { prefer: prefer(o.wait) }, o.signal)
    );
  }
  async function executeNode(id, node, parameters, o = {}) {
    const body = { node, parameters, requestId: o.requestId ?? newId() };
    const path = workflowPath(id, "/disconnected-node/execute");
    return answer(await call("POST", path, body, { prefer: prefer(o.wait) }, o.signal));
  }
  async function get(id, o = {}) {
    return (await call("GET", workflowPath(id), void 0, {}, o.signal)).body;
  }
  async function terminate(id, o = {}) {
    const path = `/v3/workflow/terminate/${encodeURIComponent(id)}`;
    return (await call("DELETE", path, void 0, {}, o.signal)).body;
  }
  async function createLink(id, body = {}, o = {}) {
    return (await call("POST", workflowPath(id, "/links"), body, {}, o.signal)).body;
  }
  async function revokeLinks(id, o = {}) {
    await call("DELETE", workflowPath(id, "/links"), void 0, {}, o.signal);
  }
  async function ticket() {
    return (await call("POST", "/v3/auth/ticket")).body.ticket;
  }
  function connect(events = {}) {
    return new Socket({ base, doFetch, headers, ticket, WebSocket: options.WebSocket }, events);
  }
  function follow(id, o = {}) {
    return new Follow(id, o, { base, doFetch, headers, ticket, WebSocket: options.WebSocket });
  }
  return { start, resume, back, executeNode, get, terminate, createLink, revokeLinks, ticket, follow, connect, call };
}
export {
  DriftError,
  Follow,
  MAX_BUFFERED,
  RETRYABLE,
  Socket,
  TERMINAL,
  backoff,
  createClient,
  isTerminal,
  newId,
  sleep
};

// Drift's client: the `/v3` calls with safe retries and typed errors, and `follow`, which
// keeps a workflow's latest state live over SSE or a WebSocket through reconnects. Request and
// response types come from the gateway's OpenAPI document (`src/openapi.ts`, generated).

import type { components } from "./openapi.js";

type Schemas = components["schemas"];
export type WorkflowState = Schemas["WorkflowState"];
export type WorkflowStatus = Schemas["WorkflowStatus"];
export type View = Schemas["View"];
export type Started = Schemas["Started"];
export type Accepted = Schemas["Accepted"];
export type NodeResult = Schemas["NodeResult"];
export type ErrorBody = Schemas["ErrorBody"];
export type StartBody = Schemas["StartBody"];
export type ResumeBody = Schemas["ResumeBody"];
export type Mode = Schemas["Mode"];

/** A credential: an API key or a JWT, or a function returning a fresh one for each call. */
export type Token = string | (() => string | Promise<string>);

export interface ClientOptions {
  /** The gateway, e.g. `http://localhost:8080` (in a browser, `location.origin` works). */
  baseUrl: string;
  token?: Token;
  /** Seconds a sync call waits for the next screen (`Prefer: wait=N`); the gateway caps it. */
  wait?: number;
  /** Attempts per call when the gateway is unreachable or answers 429, 503 or 504 (default 3). */
  attempts?: number;
  fetch?: typeof fetch;
  /** A WebSocket class, where there is no global one (Node 20 without `--experimental-websocket`). */
  WebSocket?: typeof WebSocket;
}

/** A refused call: the gateway's `code`, the HTTP `status`, and per-widget `details`. */
export class DriftError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details?: unknown;
  /** Seconds the gateway asked to wait before trying again (429, 503). */
  readonly retryAfter?: number;

  constructor(status: number, body: Partial<ErrorBody> | undefined, retryAfter?: number) {
    super(body?.message ?? `HTTP ${status}`);
    this.name = "DriftError";
    this.status = status;
    this.code = body?.code ?? (status === 0 ? "network" : "http_error");
    this.details = body?.details ?? undefined;
    this.retryAfter = retryAfter;
  }
}

/** An answer that is a state (`accepted: false`) or a 202 saying where to look (`accepted: true`). */
export type Answer<S> = (S & { accepted: false }) | (Accepted & { accepted: true });

export interface CallOptions {
  /** Safe retries: the same id gets the same answer (default: generated per call). */
  requestId?: string;
  /** Overrides the client's `wait` for this call. */
  wait?: number;
  signal?: AbortSignal;
}

export interface DeliveryOptions extends CallOptions {
  /** `async` answers 202 at once; later states go to `callbackUrl` as signed webhooks. */
  mode?: Mode;
  callbackUrl?: string;
}

export interface StartOptions extends DeliveryOptions {
  version?: string;
  workflowId?: string;
  /** A retried start with the same key names the same workflow (default: the request id). */
  idempotencyKey?: string;
}

export interface ResumeOptions extends DeliveryOptions {
  /** The `seq` of the screen answered: an answer to an older screen is refused (409). */
  seq?: number;
}

export interface FollowOptions {
  /** Resume after this seq (only later states are delivered). */
  since?: number;
  transport?: "sse" | "ws";
  /** A start's `streamToken`: reads this workflow without the client's credential. */
  streamToken?: string;
  /** Called when the history no longer reaches back to `since`; the latest state follows. */
  onGap?: (gap: Gap) => void;
  /** Consecutive failed connection attempts before giving up (default 10). */
  attempts?: number;
}

export interface Gap {
  after: number;
  latest: number;
}

/** What `getSnapshot` returns: the same object until something changes. */
export interface FollowSnapshot {
  state?: WorkflowState;
  /** The last gap seen. */
  gap?: Gap;
  /** Set when following stopped on an error (refused, or the gateway unreachable for good). */
  error?: DriftError;
  /** Ended: the terminal state was seen, or `close()` was called, or an error stopped it. */
  done: boolean;
}

const TERMINAL: ReadonlySet<string> = new Set(["COMPLETED", "FAILED", "TERMINATED"]);
const RETRYABLE: ReadonlySet<number> = new Set([0, 429, 503, 504]);
const MAX_BUFFERED = 1024;

export const isTerminal = (s: Pick<WorkflowState, "workflowStatus">) => TERMINAL.has(s.workflowStatus);

const newId = () =>
  globalThis.crypto?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });
const backoff = (attempt: number) => Math.min(250 * 2 ** attempt, 5000) * (0.5 + Math.random() / 2);

export type DriftClient = ReturnType<typeof createClient>;

export function createClient(options: ClientOptions) {
  const base = options.baseUrl.replace(/\/+$/, "");
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const attempts = Math.max(1, options.attempts ?? 3);

  async function credential(): Promise<string | undefined> {
    const t = options.token;
    return typeof t === "function" ? await t() : t;
  }

  async function headers(extra: Record<string, string | undefined> = {}, bearer?: string) {
    const h: Record<string, string> = { accept: "application/json" };
    const token = bearer ?? (await credential());
    if (token) h.authorization = `Bearer ${token}`;
    for (const [k, v] of Object.entries(extra)) if (v !== undefined) h[k] = v;
    return h;
  }

  /**
   * One call, retried with the same body (and so the same request id) while the gateway is
   * unreachable or busy: the gateway answers a retried id as it answered the first.
   */
  async function call(
    method: string,
    path: string,
    body?: unknown,
    extra: Record<string, string | undefined> = {},
    signal?: AbortSignal,
  ): Promise<{ status: number; body: any }> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    if (text !== undefined) extra = { "content-type": "application/json", ...extra };
    let last: DriftError | undefined;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await sleep(last?.retryAfter ? last.retryAfter * 1000 : backoff(attempt), signal);
      signal?.throwIfAborted();
      let r: Response;
      try {
        r = await doFetch(`${base}${path}`, { method, headers: await headers(extra), body: text, signal });
      } catch (e) {
        if (signal?.aborted) throw e;
        last = new DriftError(0, { code: "network", message: `cannot reach ${base}: ${(e as Error).message}` });
        continue;
      }
      const raw = await r.text();
      let parsed: any = raw || undefined;
      try {
        parsed = raw ? JSON.parse(raw) : undefined;
      } catch {
        // Not JSON (a graph's SVG, or a proxy's error page): the text as it is.
      }
      if (r.ok) return { status: r.status, body: parsed };
      if (typeof parsed !== "object") parsed = { message: String(parsed ?? "").slice(0, 200) || undefined };
      const retryAfter = Number(r.headers.get("retry-after")) || undefined;
      last = new DriftError(r.status, parsed, retryAfter);
      if (!RETRYABLE.has(r.status)) break;
    }
    throw last;
  }

  const prefer = (wait?: number) => {
    const w = wait ?? options.wait;
    return w === undefined ? undefined : `wait=${w}`;
  };
  const answer = <S>(r: { status: number; body: any }): Answer<S> => ({ ...r.body, accepted: r.status === 202 });
  const workflowPath = (id: string, tail = "") => `/v3/workflow/${encodeURIComponent(id)}${tail}`;

  /** Starts a workflow; sync by default (the first screen, or the end), `async` answers 202. */
  async function start(workflow: string, params: unknown = {}, o: StartOptions = {}) {
    const requestId = o.requestId ?? newId();
    const body: StartBody = {
      workflow,
      params,
      requestId,
      version: o.version,
      workflowId: o.workflowId,
      mode: o.mode,
      callbackUrl: o.callbackUrl,
    };
    const extra = { prefer: prefer(o.wait), "idempotency-key": o.idempotencyKey ?? requestId };
    return answer<Started>(await call("POST", "/v3/workflow/start", body, extra, o.signal));
  }

  /** Answers the current screen (`viewResponse`: `{ selectedOptions: { widget: value } }`). */
  async function resume(id: string, viewResponse: unknown, o: ResumeOptions = {}) {
    const body: ResumeBody = {
      viewResponse,
      seq: o.seq,
      requestId: o.requestId ?? newId(),
      mode: o.mode,
      callbackUrl: o.callbackUrl,
    };
    const path = `/v3/workflow/resume/${encodeURIComponent(id)}`;
    return answer<WorkflowState>(await call("PUT", path, body, { prefer: prefer(o.wait) }, o.signal));
  }

  /** Runs an HTTP or SCRIPT node of the workflow that no edge leads to. */
  async function executeNode(id: string, node: string, parameters?: unknown, o: CallOptions = {}) {
    const body = { node, parameters, requestId: o.requestId ?? newId() };
    const path = workflowPath(id, "/disconnected-node/execute");
    return answer<NodeResult>(await call("POST", path, body, { prefer: prefer(o.wait) }, o.signal));
  }

  /** The workflow's latest state. */
  async function get(id: string, o: { signal?: AbortSignal } = {}): Promise<WorkflowState> {
    return (await call("GET", workflowPath(id), undefined, {}, o.signal)).body;
  }

  /** Ends the workflow. */
  async function terminate(id: string, o: { signal?: AbortSignal } = {}): Promise<WorkflowState> {
    const path = `/v3/workflow/terminate/${encodeURIComponent(id)}`;
    return (await call("DELETE", path, undefined, {}, o.signal)).body;
  }

  /** A one-minute, one-use ticket to open a WebSocket as the client's credential. */
  async function ticket(): Promise<string> {
    return (await call("POST", "/v3/auth/ticket")).body.ticket;
  }

  /** Follows a workflow live; see `Follow`. */
  function follow(id: string, o: FollowOptions = {}): Follow {
    return new Follow(id, o, { base, doFetch, headers, ticket, WebSocket: options.WebSocket });
  }

  return { start, resume, executeNode, get, terminate, ticket, follow, call };
}

interface Transport {
  base: string;
  doFetch: typeof fetch;
  headers: (extra?: Record<string, string | undefined>, bearer?: string) => Promise<Record<string, string>>;
  ticket: () => Promise<string>;
  WebSocket?: typeof WebSocket;
}

/** Why a connection ended: the workflow ended, the stream broke (reconnect), or it was refused. */
type Ended = "done" | "retry" | DriftError;

/**
 * A workflow followed live: an async iterable of its states (ending after the terminal one)
 * and an external store (`subscribe`, `getSnapshot`) for React's `useSyncExternalStore`. It
 * reconnects with backoff and catches up from the last state seen; states are never repeated.
 */
export class Follow implements AsyncIterable<WorkflowState> {
  private snapshot: FollowSnapshot = { done: false };
  private readonly listeners = new Set<() => void>();
  private readonly buffered: WorkflowState[] = [];
  private wake?: () => void;
  private readonly stop = new AbortController();
  private since?: number;

  constructor(
    readonly workflowId: string,
    private readonly o: FollowOptions,
    private readonly t: Transport,
  ) {
    this.since = o.since;
    void this.run();
  }

  /** Registers a listener called on every change; returns the function that removes it. */
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): FollowSnapshot => this.snapshot;

  /** Stops following (the iterator ends after what it has already received). */
  close(): void {
    this.stop.abort();
    this.update({ done: true });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WorkflowState> {
    for (;;) {
      const next = this.buffered.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.snapshot.error) throw this.snapshot.error;
      if (this.snapshot.done) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private update(change: Partial<FollowSnapshot>) {
    this.snapshot = { ...this.snapshot, ...change };
    this.listeners.forEach((l) => l());
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** A state from either transport: delivered once, in order; true when it is the last. */
  private state(s: WorkflowState): boolean {
    if (this.since !== undefined && s.seq <= this.since) return false;
    this.since = s.seq;
    if (this.buffered.length >= MAX_BUFFERED) this.buffered.shift();
    this.buffered.push(s);
    const last = isTerminal(s);
    this.update({ state: s, done: last });
    return last;
  }

  private gap(g: Gap) {
    this.o.onGap?.(g);
    this.update({ gap: g });
  }

  private async run() {
    const limit = this.o.attempts ?? 10;
    let failures = 0;
    while (!this.stop.signal.aborted && !this.snapshot.done) {
      const seen = this.since;
      let ended: Ended;
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

  private async overEvents(): Promise<Ended> {
    const token = this.o.streamToken;
    const query = token ? `?token=${encodeURIComponent(token)}` : "";
    const extra = {
      accept: "text/event-stream",
      "last-event-id": this.since === undefined ? undefined : String(this.since),
    };
    const headers = await this.t.headers(extra, token);
    if (token) delete headers.authorization;
    const path = `/v3/workflow/${encodeURIComponent(this.workflowId)}/events${query}`;
    const r = await this.t.doFetch(`${this.t.base}${path}`, { headers, signal: this.stop.signal });
    if (r.status === 204) return "done"; // ended at or before the last state seen
    if (!r.ok || !r.body) {
      const body = await r.json().catch(() => undefined);
      return new DriftError(r.status, body, Number(r.headers.get("retry-after")) || undefined);
    }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "retry";
      buf += value.replace(/\r\n?/g, "\n");
      let end: number;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let event = "message";
        let data = "";
        for (const line of frame.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(5).replace(/^ /, "");
        }
        if (!data) continue; // a keep-alive comment
        if (event === "gap") this.gap(JSON.parse(data));
        else if (event === "state" && this.state(JSON.parse(data))) {
          await reader.cancel().catch(() => undefined);
          return "done";
        }
      }
    }
  }

  private async overSocket(): Promise<Ended> {
    const WS = this.t.WebSocket ?? globalThis.WebSocket;
    if (!WS) throw new Error("no WebSocket here: pass `WebSocket` to createClient (Node 20: the `ws` package)");
    const token = this.o.streamToken;
    // A socket cannot carry headers: the credential is traded for a one-use ticket, so it never
    // goes into a URL. With a stream token, the socket opens as nobody and subscribes with it.
    const query = token ? "" : `?ticket=${encodeURIComponent(await this.t.ticket())}`;
    const ws = new WS(`${this.t.base.replace(/^http/, "ws")}/v3/ws${query}`);
    return await new Promise<Ended>((resolve) => {
      const finish = (e: Ended) => {
        this.stop.signal.removeEventListener("abort", abort);
        ws.onclose = ws.onmessage = ws.onerror = null;
        if (ws.readyState <= 1) ws.close();
        resolve(e);
      };
      const abort = () => finish("done");
      this.stop.signal.addEventListener("abort", abort, { once: true });
      ws.onopen = () =>
        ws.send(JSON.stringify({ type: "subscribe", workflowId: this.workflowId, since: this.since, token }));
      ws.onerror = () => finish("retry");
      ws.onclose = () => finish("retry");
      ws.onmessage = (ev) => {
        const m = JSON.parse(String(ev.data));
        if (m.workflowId !== undefined && m.workflowId !== this.workflowId) return;
        if (m.type === "gap") this.gap({ after: m.after, latest: m.latest });
        else if (m.type === "state" && this.state(m.state)) finish("done");
        else if (m.type === "error") finish(new DriftError(m.status, m));
      };
    });
  }
}

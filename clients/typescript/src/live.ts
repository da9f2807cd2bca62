// Following workflows live: `Follow` (one workflow, SSE or WebSocket) and `Socket` (one
// WebSocket driving many workflows). Both reconnect with backoff and resume after the last state
// seen, so no state is lost or repeated.

import {
  DriftError,
  MAX_BUFFERED,
  RETRYABLE,
  backoff,
  isTerminal,
  newId,
  sleep,
  type FollowOptions,
  type FollowSnapshot,
  type Gap,
  type NodeResult,
  type StartOptions,
  type ResumeOptions,
  type WorkflowState,
} from "./common.js";
import type { components as Live } from "./asyncapi.js";

type M = Live["schemas"];
/** A message the gateway sends over the WebSocket (types generated from `/v3/asyncapi.json`). */
export type ServerMessage =
  M["ServerState"] | M["ServerAck"] | M["ServerResult"] | M["ServerError"] | M["ServerGap"] | M["ServerPong"];
/** A message a client sends over the WebSocket. */
export type ClientMessage =
  | M["ClientStart"]
  | M["ClientResume"]
  | M["ClientBack"]
  | M["ClientExecuteNode"]
  | M["ClientSubscribe"]
  | M["ClientUnsubscribe"]
  | M["ClientPing"];
/** The server messages that answer a command. */
type Answering = "state" | "ack" | "result";
type AnswerTo<T extends Answering> = Extract<ServerMessage, { type: T }>;

/** An SSE `state` event's data, and a `gap` event's. */
export type SseState = M["SseState"];
export type SseGap = M["SseGap"];

export interface Transport {
  base: string;
  doFetch: typeof fetch;
  headers: (extra?: Record<string, string | undefined>, bearer?: string) => Promise<Record<string, string>>;
  ticket: () => Promise<string>;
  WebSocket?: typeof WebSocket;
}

/** The WebSocket class to use: the one given to `createClient`, else the global one. */
function socketClass(t: Transport): typeof WebSocket {
  const WS = t.WebSocket ?? globalThis.WebSocket;
  if (!WS) throw new Error("no WebSocket here: pass `WebSocket` to createClient (Node 20: the `ws` package)");
  return WS;
}

const socketUrl = (t: Transport, query: string) => `${t.base.replace(/^http/, "ws")}/v3/ws${query}`;

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
    const extra = {
      accept: "text/event-stream",
      "last-event-id": this.since === undefined ? undefined : String(this.since),
    };
    // A stream token, when given, is the bearer (fetch can set headers, unlike EventSource).
    const headers = await this.t.headers(extra, this.o.streamToken);
    const path = `/v3/workflow/${encodeURIComponent(this.workflowId)}/events`;
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
        if (event === "gap") this.gap(JSON.parse(data) as SseGap);
        else if (event === "state" && this.state(JSON.parse(data) as SseState)) {
          await reader.cancel().catch(() => undefined);
          return "done";
        }
      }
    }
  }

  private async overSocket(): Promise<Ended> {
    const WS = socketClass(this.t);
    const token = this.o.streamToken;
    // A socket cannot carry headers: the credential is traded for a one-use ticket, so it never
    // goes into a URL. With a stream token, the socket opens as nobody and subscribes with it.
    const query = token ? "" : `?ticket=${encodeURIComponent(await this.t.ticket())}`;
    const ws = new WS(socketUrl(this.t, query));
    return await new Promise<Ended>((resolve) => {
      const finish = (e: Ended) => {
        this.stop.signal.removeEventListener("abort", abort);
        ws.onclose = ws.onmessage = ws.onerror = null;
        if (ws.readyState <= 1) ws.close();
        resolve(e);
      };
      const abort = () => finish("done");
      this.stop.signal.addEventListener("abort", abort, { once: true });
      const subscribe: ClientMessage = { type: "subscribe", workflowId: this.workflowId, since: this.since, token };
      ws.onopen = () => ws.send(JSON.stringify(subscribe));
      ws.onerror = () => finish("retry");
      ws.onclose = () => finish("retry");
      ws.onmessage = (ev) => {
        const m = JSON.parse(String(ev.data)) as ServerMessage;
        if ("workflowId" in m && m.workflowId !== this.workflowId) return;
        if (m.type === "gap") this.gap({ after: m.after, latest: m.latest });
        else if (m.type === "state" && this.state(m.state)) finish("done");
        else if (m.type === "error") finish(new DriftError(m.status, m));
      };
    });
  }
}

/** What a `Socket` reports that no request of its own is waiting for. */
export interface SocketEvents {
  /** A state of a followed workflow (also the ones that answer this socket's own resumes). */
  state?: (state: WorkflowState, workflowId: string) => void;
  /** The history no longer reaches back to the last state seen; the latest follows. */
  gap?: (gap: Gap, workflowId: string) => void;
  /** The socket opened (`true`) or was lost and is being reopened (`false`). */
  status?: (connected: boolean) => void;
}

interface Pending {
  answer: Answering;
  resolve: (m: ServerMessage) => void;
  reject: (e: DriftError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** How long a command waits for its answer before it is failed (the caller may retry it). */
const ANSWER_WITHIN_MS = 30_000;

/**
 * One WebSocket for many workflows: `start`, `resume`, `back` and `executeNode` over it (each answered
 * by its request id), and the states of every workflow it follows pushed to `events.state`.
 * It opens with a one-use ticket (the credential never goes into a URL), and after a drop it
 * reopens with a fresh one and subscribes again after each workflow's last state seen. Commands
 * in flight when it drops fail with `code: "network"`; sending them again with the same
 * `requestId` is safe.
 */
export class Socket {
  private ws?: WebSocket;
  private readonly pending = new Map<string, Pending>();
  private readonly followed = new Map<string, { since?: number; token?: string }>();
  private opened?: Promise<void>;
  private markOpen?: () => void;
  private closed = false;
  private failures = 0;

  private readonly WS: typeof WebSocket;

  constructor(
    private readonly t: Transport,
    private readonly events: SocketEvents = {},
  ) {
    this.WS = socketClass(t);
    this.reset();
    void this.open();
  }

  /** Follows a workflow (again after every reconnect) from after `since`. */
  follow(workflowId: string, o: { since?: number; token?: string } = {}): void {
    this.followed.set(workflowId, { since: o.since, token: o.token });
    this.send({ type: "subscribe", workflowId, since: o.since, token: o.token });
  }

  unfollow(workflowId: string): void {
    if (this.followed.delete(workflowId)) this.send({ type: "unsubscribe", workflowId });
  }

  /** Starts a workflow, which this socket then follows; resolves with its id and stream token. */
  async start(workflow: string, params: unknown = {}, o: StartOptions = {}) {
    const requestId = o.requestId ?? newId();
    const msg: ClientMessage = {
      type: "start",
      requestId,
      workflow,
      params,
      version: o.version,
      workflowId: o.workflowId,
      mode: o.mode,
      callbackUrl: o.callbackUrl,
      idempotencyKey: o.idempotencyKey ?? requestId,
    };
    const ack = await this.request(requestId, msg, "ack");
    this.followed.set(ack.workflowId, {});
    return { workflowId: ack.workflowId, streamToken: ack.streamToken ?? "", requestId };
  }

  /** Answers the current screen; resolves with the state that answers it. */
  async resume(workflowId: string, viewResponse: unknown, o: ResumeOptions & { token?: string } = {}) {
    const requestId = o.requestId ?? newId();
    const msg: ClientMessage = { type: "resume", requestId, workflowId, viewResponse, seq: o.seq, token: o.token };
    const answer = await this.request(requestId, msg, "state");
    const state: WorkflowState = answer.state;
    return state;
  }

  /** Returns to the previous screen; resolves with the state at it (see the client's `back`). */
  async back(workflowId: string, o: { seq?: number; requestId?: string; token?: string } = {}) {
    const requestId = o.requestId ?? newId();
    const msg: ClientMessage = { type: "back", requestId, workflowId, seq: o.seq, token: o.token };
    const state: WorkflowState = (await this.request(requestId, msg, "state")).state;
    return state;
  }

  /** Runs an HTTP or SCRIPT node of the workflow that no edge leads to. */
  async executeNode(workflowId: string, node: string, parameters?: unknown, o: { requestId?: string } = {}) {
    const requestId = o.requestId ?? newId();
    const msg: ClientMessage = { type: "execute-node", requestId, workflowId, node, parameters };
    const { workflowId: id, node: ran, status, response } = await this.request(requestId, msg, "result");
    const result: NodeResult = { workflowId: id, node: ran, status, response };
    return result;
  }

  /** Drops the connection (it reopens by itself and catches up): for tests and demos. */
  drop(): void {
    this.ws?.close();
  }

  close(): void {
    this.closed = true;
    this.ws?.close();
    this.failAll("the socket was closed");
  }

  private reset() {
    this.opened = new Promise((resolve) => (this.markOpen = resolve));
  }

  private async open() {
    if (this.closed) return;
    let ticket: string;
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
    ws.onmessage = (ev) => this.receive(JSON.parse(String(ev.data)) as ServerMessage);
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.reset();
      this.failAll("the connection was lost; send again with the same requestId");
      this.events.status?.(false);
      this.retry();
    };
  }

  private retry() {
    if (this.closed) return;
    setTimeout(() => void this.open(), backoff(this.failures++));
  }

  private send(msg: ClientMessage) {
    if (this.ws?.readyState === 1) this.ws.send(JSON.stringify(msg));
  }

  /** Sends once the socket is open; settles with the first `answer` (or `error`) naming it. */
  private async request<T extends Answering>(requestId: string, msg: ClientMessage, answer: T): Promise<AnswerTo<T>> {
    let opening: ReturnType<typeof setTimeout> | undefined;
    const within = new Promise<never>((_, reject) => {
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
          new DriftError(0, { code: "network", message: "no answer in time; send again with the same requestId" }),
        );
      }, ANSWER_WITHIN_MS);
      // `settle` resolves only with a message of the `answer` type.
      this.pending.set(requestId, { answer, resolve: (m) => resolve(m as AnswerTo<T>), reject, timer });
      this.send(msg);
    });
  }

  /** Settles the request `requestId` names, when `m` is its answer or an error. */
  private settle(requestId: string | null | undefined, m: ServerMessage) {
    const p = requestId ? this.pending.get(requestId) : undefined;
    if (!requestId || !p || (m.type !== p.answer && m.type !== "error")) return;
    this.pending.delete(requestId);
    clearTimeout(p.timer);
    if (m.type === "error") p.reject(new DriftError(m.status, m));
    else p.resolve(m);
  }

  private failAll(message: string, error?: DriftError) {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(error ?? new DriftError(0, { code: "network", message }));
      this.pending.delete(id);
    }
  }

  private receive(m: ServerMessage) {
    if (m.type === "state") {
      const f = this.followed.get(m.workflowId);
      if (f && (f.since === undefined || m.seq > f.since)) f.since = m.seq;
      this.events.state?.(m.state, m.workflowId);
      // A state answers the resume whose request id it carries.
      this.settle(m.state.requestId, m);
    } else if (m.type === "gap") {
      this.events.gap?.({ after: m.after, latest: m.latest }, m.workflowId);
    } else if (m.type !== "pong") {
      this.settle(m.requestId, m);
    }
  }
}

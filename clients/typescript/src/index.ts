// Drift's client: the `/v3` calls with safe retries and typed errors; `follow`, which keeps a
// workflow's latest state live over SSE or a WebSocket through reconnects; and `connect`, one
// WebSocket that starts, answers and follows many workflows. Request and response types come
// from the gateway's OpenAPI document (`src/openapi.ts`, generated).

import {
  DriftError,
  RETRYABLE,
  backoff,
  newId,
  sleep,
  type Answer,
  type BackBody,
  type BackOptions,
  type CallOptions,
  type ClientOptions,
  type FollowOptions,
  type IssuedLink,
  type LinkBody,
  type NodeResult,
  type ResumeBody,
  type ResumeOptions,
  type StartBody,
  type StartOptions,
  type Started,
  type WorkflowState,
} from "./common.js";
import { Follow, Socket, type SocketEvents } from "./live.js";

export * from "./common.js";
export {
  Follow,
  Socket,
  type SocketEvents,
  type ServerMessage,
  type ClientMessage,
  type SseState,
  type SseGap,
} from "./live.js";

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

  /**
   * Returns to the previous screen (a new state with the next `seq`, its earlier answer in
   * `previousAnswer`); refused with 409 `cannot_go_back` when the state says `canGoBack` is not
   * so (`backBlockedBy` names what is in the way).
   */
  async function back(id: string, o: BackOptions = {}) {
    const body: BackBody = { seq: o.seq, requestId: o.requestId ?? newId() };
    return answer<WorkflowState>(
      await call("POST", workflowPath(id, "/back"), body, { prefer: prefer(o.wait) }, o.signal),
    );
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

  /**
   * An answer link to the screen the workflow waits on: a URL a person with no credential opens
   * to answer it once (send it by email or chat). `assignee` is shown and recorded with the
   * answer; `ttlSecs` defaults to 72 hours.
   */
  async function createLink(id: string, body: LinkBody = {}, o: { signal?: AbortSignal } = {}): Promise<IssuedLink> {
    return (await call("POST", workflowPath(id, "/links"), body, {}, o.signal)).body;
  }

  /** Closes every answer link made so far for the workflow. */
  async function revokeLinks(id: string, o: { signal?: AbortSignal } = {}): Promise<void> {
    await call("DELETE", workflowPath(id, "/links"), undefined, {}, o.signal);
  }

  /** A one-minute, one-use ticket to open a WebSocket as the client's credential. */
  async function ticket(): Promise<string> {
    return (await call("POST", "/v3/auth/ticket")).body.ticket;
  }

  /** One WebSocket that starts, answers and follows many workflows; see `Socket`. */
  function connect(events: SocketEvents = {}): Socket {
    return new Socket({ base, doFetch, headers, ticket, WebSocket: options.WebSocket }, events);
  }

  /** Follows a workflow live; see `Follow`. */
  function follow(id: string, o: FollowOptions = {}): Follow {
    return new Follow(id, o, { base, doFetch, headers, ticket, WebSocket: options.WebSocket });
  }

  return { start, resume, back, executeNode, get, terminate, createLink, revokeLinks, ticket, follow, connect, call };
}

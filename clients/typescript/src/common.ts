// What the client's modules share: the API's types (from the generated `openapi.ts`), the
// error a refused call throws, and the retry helpers.

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
export type BackBody = Schemas["BackBody"];
export type Mode = Schemas["Mode"];
export type LinkBody = Schemas["LinkBody"];
export type IssuedLink = Schemas["IssuedLink"];
/**
 * Why a call was refused: every code the gateway answers with (its API document's
 * `ErrorCode`), and the client's own, `network` (the gateway unreachable) and `http_error` (an
 * answer with no error body).
 */
export type ErrorCode = Schemas["ErrorCode"] | "network" | "http_error";

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
  readonly code: ErrorCode;
  readonly details?: unknown;
  /** Seconds the gateway asked to wait before trying again (429, 503). */
  readonly retryAfter?: number;

  constructor(
    status: number,
    body: (Partial<Omit<ErrorBody, "code">> & { code?: ErrorCode }) | undefined,
    retryAfter?: number,
  ) {
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

export interface BackOptions extends CallOptions {
  /** The `seq` of the screen left: Back from an older screen is refused (409 `stale_screen`). */
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

export const TERMINAL: ReadonlySet<string> = new Set(["COMPLETED", "FAILED", "TERMINATED"]);
export const RETRYABLE: ReadonlySet<number> = new Set([0, 429, 503, 504]);
export const MAX_BUFFERED = 1024;

export const isTerminal = (s: Pick<WorkflowState, "workflowStatus">) => TERMINAL.has(s.workflowStatus);

export const newId = () =>
  globalThis.crypto?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });
export const backoff = (attempt: number) => Math.min(250 * 2 ** attempt, 5000) * (0.5 + Math.random() / 2);

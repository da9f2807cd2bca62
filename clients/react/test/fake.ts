// An in-memory stand-in for `createClient`'s client: the calls the kit makes, recorded, with
// answers the test decides, and a follow whose states the test pushes. For the kit's unit tests
// only; the browser tests drive the kit against a real gateway.

import { DriftError, type DriftClient, type FollowSnapshot, type WorkflowState } from "@drift/client";

const links = { self: "/w", events: "/e", resume: "/r", terminate: "/t" };

export const tag = (t: string) => ({ values: [t] });
export const choices = (...vs: string[]) => vs.map((v) => ({ displayValue: v.toUpperCase(), value: v }));

export function screen(
  seq: number,
  layoutId: string,
  inputOptions: unknown[],
  extra: Partial<WorkflowState> = {},
): WorkflowState {
  return {
    workflowId: "wf-1",
    workflowStatus: "WAITING",
    seq,
    node: layoutId,
    view: { layoutId, node: layoutId, inputOptions } as WorkflowState["view"],
    links,
    ...extra,
  } as WorkflowState;
}

export function end(seq: number, message: string): WorkflowState {
  return { workflowId: "wf-1", workflowStatus: "COMPLETED", seq, disposition: { message }, links } as WorkflowState;
}

type Reply = WorkflowState | DriftError;

export interface Call {
  op: string;
  args: unknown[];
}

class FakeFollow {
  private snap: FollowSnapshot = { done: false };
  private listeners = new Set<() => void>();
  closed = false;
  constructor(readonly since: number | undefined) {}
  subscribe = (l: () => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };
  getSnapshot = () => this.snap;
  close() {
    this.closed = true;
  }
  push(state: WorkflowState) {
    this.snap = { ...this.snap, state };
    this.listeners.forEach((l) => l());
  }
}

/** A client whose every call is recorded; `replies` answers start, resume, back and get in turn. */
export function fakeClient(replies: Reply[], nodeResult: unknown = { node: "n", status: "SUCCESS", response: {} }) {
  const calls: Call[] = [];
  const follows: FakeFollow[] = [];
  const next = async (op: string, args: unknown[]) => {
    calls.push({ op, args });
    const r = replies.shift();
    if (!r) throw new Error(`no reply left for ${op}`);
    if (r instanceof DriftError) throw r;
    return { ...r, accepted: false as const };
  };
  const client = {
    start: (...args: unknown[]) => next("start", args).then((s) => ({ ...s, streamToken: "st" })),
    resume: (...args: unknown[]) => next("resume", args),
    back: (...args: unknown[]) => next("back", args),
    get: (...args: unknown[]) => next("get", args),
    executeNode: async (...args: unknown[]) => {
      calls.push({ op: "executeNode", args });
      return { ...(nodeResult as object), accepted: false };
    },
    follow: (_id: string, o: { since?: number }) => {
      const f = new FakeFollow(o.since);
      follows.push(f);
      return f;
    },
  } as unknown as DriftClient;
  return { client, calls, follows };
}

export const refusal = (status: number, code: string, details?: unknown) =>
  new DriftError(status, { code, message: `refused: ${code}`, details } as never);

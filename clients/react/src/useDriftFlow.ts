// useDriftFlow: one workflow as React state. It starts the workflow (or takes one already
// running), keeps its latest state (live over SSE or a WebSocket, or from sync answers), holds
// what the person has entered on the current screen, and answers it with the client's safe
// retries. Everything it shows comes from the core (`@drift/client/screen`), so a screen here
// is the screen the demo and the hosted page show.

import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { DriftError, isTerminal, newId } from "@drift/client";
import type { DriftClient, NodeResult, WorkflowState } from "@drift/client";
import {
  answerOf,
  emptyDraft,
  screenActions,
  screenModel,
  setValue as setDraftValue,
  type Draft,
  type ScreenModel,
  type ScreenOptions,
} from "@drift/client/screen";

/** `live`: every state pushed (SSE or WebSocket) as it happens; `sync`: each call answers with
 * the next screen, and the flow listens only while the run is between screens (a timer). */
export type FlowMode = "live" | "sync";

interface Delivery {
  mode?: FlowMode;
  transport?: "sse" | "ws";
}

/** A workflow to start (by `start()`, or at once with `autoStart`), or one already running. */
export type FlowTarget =
  | (Delivery & { workflow: string; params?: unknown; version?: string; autoStart?: boolean })
  | (Delivery & { workflowId: string; streamToken?: string });

export interface FlowOptions extends ScreenOptions {
  /** Check an answer as the workflow will (required, allowed values) before sending it, so a
   * person hears at once (default true). The workflow checks again either way. */
  checkBeforeSending?: boolean;
}

/** Where the flow is: nothing yet, starting, a screen to answer, between screens, ended. */
export type FlowStatus = "idle" | "starting" | "screen" | "waiting" | "ended";

export interface DriftFlow {
  workflowId?: string;
  state?: WorkflowState;
  /** The current state as a screen, with what has been entered and the last refusal's errors. */
  screen?: ScreenModel;
  status: FlowStatus;
  /** The last failure not tied to a widget (a refused start, the gateway unreachable). */
  error?: DriftError;
  /** A call is in flight. */
  pending: boolean;
  /** `live` only: whether states are being pushed now (false while reconnecting). */
  following: boolean;
  /** Starts the target's workflow (with `params`, else the target's). */
  start(params?: unknown): Promise<void>;
  /** Sets one widget's value in the draft (dependent choices follow). */
  setValue(widgetId: string, value: unknown): void;
  /** Answers the screen with the draft, `also` set on top (a pressed button's value). */
  submit(also?: Record<string, unknown>): Promise<void>;
  /** Answers the screen with exactly these values. */
  answer(selectedOptions: Record<string, unknown>): Promise<void>;
  back(): Promise<void>;
  /** Runs a node the screen offers; its parameters default to the answers entered so far. */
  executeNode(node: string, parameters?: unknown): Promise<NodeResult | undefined>;
}

const asError = (e: unknown) =>
  e instanceof DriftError ? e : new DriftError(0, { code: "network", message: String((e as Error)?.message ?? e) });

export function useDriftFlow(client: DriftClient, target: FlowTarget, options: FlowOptions = {}): DriftFlow {
  const mode = target.mode ?? "live";
  const transport = target.transport ?? "sse";
  const given = "workflowId" in target ? target.workflowId : undefined;
  const [state, setState] = useState<WorkflowState>();
  const [workflowId, setWorkflowId] = useState(given);
  const [streamToken, setStreamToken] = useState("workflowId" in target ? target.streamToken : undefined);
  const [draft, setDraft] = useState<{ seq: number; draft: Draft }>({ seq: -1, draft: emptyDraft() });
  const [error, setError] = useState<DriftError>();
  const [pending, setPending] = useState(0);
  const [starting, setStarting] = useState(false);
  const [awaiting, setAwaiting] = useState(false);
  const [following, setFollowing] = useState(false);
  const current = useRef<WorkflowState | undefined>(undefined);

  // A state is taken only if it is newer than the one shown: answers, pushes and catch-ups may
  // race, and each state is shown once, in order.
  const accept = useCallback((s: WorkflowState) => {
    const now = current.current;
    if (now && now.workflowId === s.workflowId && s.seq <= now.seq) return;
    current.current = s;
    setState(s);
    setAwaiting(false);
  }, []);

  useEffect(() => {
    if (given === undefined) return;
    current.current = undefined;
    setWorkflowId(given);
    setState(undefined);
  }, [given]);

  const busy = useCallback(async <T>(work: () => Promise<T>): Promise<T | undefined> => {
    setPending((n) => n + 1);
    try {
      return await work();
    } finally {
      setPending((n) => n - 1);
    }
  }, []);

  const workflow = "workflow" in target ? target.workflow : undefined;
  const version = "workflow" in target ? target.version : undefined;
  const targetParams = "workflow" in target ? target.params : undefined;
  const start = useCallback(
    async (params?: unknown) => {
      if (workflow === undefined) return;
      setError(undefined);
      setStarting(true);
      current.current = undefined;
      setState(undefined);
      await busy(async () => {
        try {
          const r = await client.start(workflow, params ?? targetParams ?? {}, { version });
          setWorkflowId(r.workflowId);
          if ("streamToken" in r && typeof r.streamToken === "string") setStreamToken(r.streamToken);
          if (r.accepted) setAwaiting(true);
          else accept(r);
        } catch (e) {
          setError(asError(e));
        } finally {
          setStarting(false);
        }
      });
    },
    [client, workflow, version, targetParams, busy, accept],
  );

  const autoStart = "workflow" in target && target.autoStart === true;
  useEffect(() => {
    if (autoStart) void start();
    // Once per workflow named: a re-render must not start another run.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [autoStart, workflow]);

  const ended = state !== undefined && isTerminal(state);
  const onScreen = state?.workflowStatus === "WAITING" && !!state.view;
  // Sync callers listen only while there is no screen to answer (a timer, a 202 answer).
  const listen =
    workflowId !== undefined && !ended && (mode === "live" || awaiting || (state !== undefined && !onScreen));
  useEffect(() => {
    if (!listen || workflowId === undefined) return;
    const since = current.current?.workflowId === workflowId ? current.current.seq : undefined;
    const f = client.follow(workflowId, { since, transport, streamToken });
    setFollowing(true);
    const off = f.subscribe(() => {
      const snap = f.getSnapshot();
      if (snap.state) accept(snap.state);
      if (snap.error) setError(snap.error);
      if (snap.done) setFollowing(false);
    });
    return () => {
      off();
      f.close();
      setFollowing(false);
    };
  }, [client, workflowId, listen, transport, streamToken, accept]);

  const actions = useMemo(() => (state ? screenActions(client, state, newId) : undefined), [client, state]);
  const currentDraft = state && draft.seq === state.seq ? draft.draft : emptyDraft();
  const screen = useMemo(
    () => (state ? screenModel(state, currentDraft, options) : undefined),
    // The options object is usually written inline: its contents decide.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [state, currentDraft, options.idPrefix, JSON.stringify(options.templates ?? {})],
  );

  const setValue = useCallback((widgetId: string, value: unknown) => {
    const s = current.current;
    if (!s) return;
    setDraft((d) => ({
      seq: s.seq,
      draft: setDraftValue(s, d.seq === s.seq ? d.draft : emptyDraft(), widgetId, value),
    }));
  }, []);

  const refuse = useCallback((s: WorkflowState, refusal: Draft["refusal"], values: Record<string, unknown>) => {
    setDraft((d) => ({
      seq: s.seq,
      draft: { values: { ...(d.seq === s.seq ? d.draft.values : {}), ...values }, refusal },
    }));
  }, []);

  /** After a call is refused: the screen's errors, or the newer state, or the flow's error. */
  const refused = useCallback(
    async (s: WorkflowState, e: unknown, values: Record<string, unknown>) => {
      const err = asError(e);
      if (err.code === "invalid_answer" || err.code === "cannot_go_back") {
        refuse(s, { message: err.message, details: err.details }, values);
        return;
      }
      if (err.code === "stale_screen" || err.code === "not_waiting") {
        // The run moved on elsewhere: show where it is now.
        try {
          accept(await client.get(s.workflowId));
          return;
        } catch {
          // fall through: say what was refused
        }
      }
      setError(err);
    },
    [client, accept, refuse],
  );

  const answer = useCallback(
    async (selectedOptions: Record<string, unknown>) => {
      const s = current.current;
      if (!s || !actions) return;
      setError(undefined);
      await busy(async () => {
        try {
          const r = await actions.answer(selectedOptions);
          if (r.accepted) setAwaiting(true);
          else accept(r);
        } catch (e) {
          await refused(s, e, selectedOptions);
        }
      });
    },
    [actions, busy, accept, refused],
  );

  const checkFirst = options.checkBeforeSending !== false;
  const submit = useCallback(
    async (also: Record<string, unknown> = {}) => {
      const s = current.current;
      if (!s) return;
      const values = { ...currentDraft.values, ...also };
      const { selectedOptions, errors } = answerOf(s, { values });
      if (checkFirst && errors.length) {
        refuse(s, { message: "Some answers need another look.", details: errors }, values);
        return;
      }
      // Sent as entered, so the workflow's own check speaks when this one was skipped.
      const sent = checkFirst
        ? selectedOptions
        : Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined && v !== ""));
      await answer(sent);
    },
    [currentDraft, checkFirst, refuse, answer],
  );

  const back = useCallback(async () => {
    const s = current.current;
    if (!s || !actions) return;
    setError(undefined);
    await busy(async () => {
      try {
        const r = await actions.back();
        if (r.accepted) setAwaiting(true);
        else accept(r);
      } catch (e) {
        await refused(s, e, {});
      }
    });
  }, [actions, busy, accept, refused]);

  const executeNode = useCallback(
    async (node: string, parameters?: unknown) => {
      const s = current.current;
      if (!s || !actions) return undefined;
      const params = parameters ?? answerOf(s, { values: currentDraft.values }).selectedOptions;
      return busy(async () => {
        try {
          const r = await actions.executeNode(node, params);
          return r as NodeResult;
        } catch (e) {
          setError(asError(e));
          return undefined;
        }
      });
    },
    [actions, busy, currentDraft],
  );

  const status: FlowStatus = starting
    ? "starting"
    : !state
      ? workflowId && !error
        ? "waiting"
        : "idle"
      : ended
        ? "ended"
        : onScreen && !awaiting
          ? "screen"
          : "waiting";

  return {
    workflowId,
    state,
    screen,
    status,
    error,
    pending: pending > 0,
    following,
    start,
    setValue,
    submit,
    answer,
    back,
    executeNode,
  };
}

// <DriftScreen>: the flow's current screen, drawn from the core's view model with the kit's
// widgets (or a registry's). Accessible by construction: every control labelled and tied to its
// text and error, the focus on the first control of a new screen and on the first error of a
// refusal, changes announced, everything reachable from the keyboard. Styled only through class
// names and CSS custom properties (drift.css), so a design system can take over.

import { useEffect, useId, useRef, useState, type FormEvent, type ReactNode } from "react";
import type { NodeResult } from "@drift/client";
import { firstError, timeLeft, type NodeAction, type ScreenModel } from "@drift/client/screen";
import type { DriftFlow } from "./useDriftFlow.js";
import { widgetFor, type WidgetRegistry } from "./widgets.js";

export interface DriftScreenProps {
  flow: DriftFlow;
  /** Widgets by tag, over the kit's own. */
  widgets?: WidgetRegistry;
  /** How a node's result reads (default: its status and response). */
  nodeResult?: (result: NodeResult) => ReactNode;
  /** How the end reads (default: the status and the disposition's `message`, or the error). */
  ended?: (screen: ScreenModel) => ReactNode;
  /** Words the kit says; each may be replaced (another language). */
  words?: Partial<typeof WORDS>;
  className?: string;
}

const WORDS = {
  submit: "Continue",
  back: "Back",
  sending: "Sending…",
  waiting: "Working on it… the next screen will appear by itself.",
  timer: "Waiting on a timer… the next screen will appear by itself.",
  starting: "Starting…",
  running: "Running",
  timeLeft: "Time left to answer:",
  timeUp: "Time is up: the run goes on by itself.",
};

const cls = (...names: (string | false | undefined)[]) => names.filter(Boolean).join(" ");

function defaultEnded(screen: ScreenModel): ReactNode {
  const end = screen.end;
  const d = end?.disposition as { message?: unknown } | undefined;
  const message = end?.message ?? (typeof d?.message === "string" ? d.message : undefined);
  return message ? `${end?.status}: ${message}` : end?.status;
}

function defaultNodeResult(r: NodeResult): ReactNode {
  return `${r.node}: ${r.status} ${JSON.stringify(r.response)}`;
}

/** A timed screen's time left, each second; silent to screen readers but when it is up. */
function Deadline({ screen, say }: { screen: ScreenModel; say: typeof WORDS }) {
  const [now, setNow] = useState(() => Date.now());
  const left = timeLeft(screen, now);
  const up = left?.up ?? true;
  useEffect(() => {
    if (up) return;
    const tick = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(tick);
  }, [up]);
  if (!left) return null;
  return left.up ? (
    <p className="drift-deadline drift-deadline--up" role="status">
      {say.timeUp}
    </p>
  ) : (
    <p className="drift-deadline" role="timer" aria-label={`${say.timeLeft} ${left.text}`}>
      {say.timeLeft} <span className="drift-deadline-left">{left.text}</span>
    </p>
  );
}

export function DriftScreen({ flow, widgets = {}, nodeResult, ended, words, className }: DriftScreenProps) {
  const say = { ...WORDS, ...words };
  const screen = flow.screen;
  const form = useRef<HTMLFormElement>(null);
  const titleId = useId();
  const [results, setResults] = useState<{ seq: number; byNode: Record<string, ReactNode> }>({ seq: -1, byNode: {} });

  // A new screen: the focus to its first control, as a person would start there (once the
  // call that brought it has ended, so its buttons are enabled again).
  const seq = screen?.phase === "screen" ? screen.seq : undefined;
  const focusedSeq = useRef<number>(undefined);
  useEffect(() => {
    if (seq === undefined || flow.pending || focusedSeq.current === seq) return;
    focusedSeq.current = seq;
    const first = form.current?.querySelector<HTMLElement>("input, select, textarea, button:not([disabled])");
    first?.focus();
  }, [seq, flow.pending]);

  // A refusal: the focus to the first widget in error (its message is tied to it and announced).
  const refused = screen ? firstError(screen) : undefined;
  const refusedKey = refused ? `${screen?.seq} ${refused.id} ${refused.error}` : undefined;
  useEffect(() => {
    if (!refused) return;
    document.getElementById(refused.ids.input)?.focus();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [refusedKey]);

  const root = (phase: string, children: ReactNode) => (
    <section className={cls("drift", `drift--${phase}`, className)} aria-busy={flow.pending || undefined}>
      {flow.error && (
        <p className="drift-error drift-flow-error" role="alert">
          {flow.error.message}
        </p>
      )}
      {children}
    </section>
  );

  if (!screen) {
    const text = flow.status === "starting" ? say.starting : flow.status === "waiting" ? say.waiting : "";
    return root("idle", text && <p role="status">{text}</p>);
  }
  if (screen.phase === "ended") {
    const ok = screen.end?.status === "COMPLETED";
    return root(
      "ended",
      <div
        className={cls("drift-end", ok ? "drift-end--completed" : "drift-end--failed")}
        role="status"
        data-testid="drift-end"
      >
        {(ended ?? defaultEnded)(screen)}
      </div>,
    );
  }
  if (screen.phase !== "screen" || flow.status === "waiting") {
    return root(screen.phase, <p role="status">{screen.phase === "timer" ? say.timer : say.waiting}</p>);
  }

  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    if (!flow.pending) void flow.submit();
  };
  const run = async (a: NodeAction) => {
    const r = await flow.executeNode(a.node);
    const shown = r ? (nodeResult ?? defaultNodeResult)(r) : undefined;
    setResults((old) => ({
      seq: screen.seq,
      byNode: { ...(old.seq === screen.seq ? old.byNode : {}), [a.node]: shown },
    }));
  };
  const shownResults = results.seq === screen.seq ? results.byNode : {};

  return root(
    "screen",
    <form
      ref={form}
      className="drift-screen"
      data-layout={screen.layoutId}
      aria-labelledby={titleId}
      noValidate
      onSubmit={onSubmit}
    >
      <h2 className="drift-title" id={titleId}>
        {screen.title}
      </h2>
      <Deadline key={screen.seq} screen={screen} say={say} />
      <p className="drift-error drift-form-error" role="alert">
        {screen.error ?? ""}
      </p>
      {screen.widgets.map((w) => {
        const Widget = widgetFor(w, widgets);
        const describedBy = w.input ? [w.text ? w.ids.text : "", w.ids.error].filter(Boolean).join(" ") : "";
        return (
          <div
            key={w.id}
            className={cls("drift-widget", `drift-widget--${w.kind}`, w.error && "drift-widget--invalid")}
            data-widget={w.id}
          >
            {w.text && w.input && (
              <p className="drift-hint" id={w.ids.text}>
                {w.text}
              </p>
            )}
            <Widget
              widget={w}
              describedBy={describedBy}
              disabled={flow.pending}
              onChange={(v) => flow.setValue(w.id, v)}
              onAnswer={(v) => {
                if (!flow.pending) void flow.submit({ [w.id]: v });
              }}
            />
            {w.input && (
              <p className="drift-error" id={w.ids.error} role="alert">
                {w.error ?? ""}
              </p>
            )}
          </div>
        );
      })}
      {screen.nodes.length > 0 && (
        <div className="drift-nodes">
          {screen.nodes.map((a) => (
            <div key={a.node} className="drift-node">
              <button
                type="button"
                className="drift-button drift-button--secondary"
                onClick={() => void run(a)}
                disabled={flow.pending}
              >
                {a.label}
              </button>
              <span className="drift-node-result" role="status" data-node={a.node}>
                {shownResults[a.node]}
              </span>
            </div>
          ))}
        </div>
      )}
      <div className="drift-actions">
        {screen.needsSubmit && (
          <button type="submit" className="drift-button drift-button--primary" disabled={flow.pending}>
            {say.submit}
          </button>
        )}
        {screen.canGoBack ? (
          <button
            type="button"
            className="drift-button drift-button--secondary"
            onClick={() => void flow.back()}
            disabled={flow.pending}
          >
            {say.back}
          </button>
        ) : (
          screen.backBlocked &&
          screen.backBlocked.reason !== "first" && <p className="drift-note">{screen.backBlocked.message}</p>
        )}
      </div>
      <p className="drift-visually-hidden" role="status">
        {flow.pending ? say.sending : ""}
      </p>
    </form>,
  );
}

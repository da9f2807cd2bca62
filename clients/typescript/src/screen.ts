// The screen kit's core, free of any UI framework: from a workflow state, the screen as a view
// model (each widget with its kind, label, options, value, rules and the last refusal's errors),
// and the answer a draft makes, checked by the same rules the workflow applies. Pure functions
// of their inputs, so React, the demo and the hosted answer page render the same screen.

import type { WorkflowState } from "./common.js";
import type { components } from "./openapi.js";

type Widget = components["schemas"]["Widget"];
type Instruction = components["schemas"]["Instruction"];

/** How a widget renders; `other` is a tag no widget of the kit knows (a registry may). */
export type WidgetKind = "text" | "complete" | "buttons" | "dropdown" | "free_text" | "date" | "other";

/** The DSL's widget tags, and the kind each renders as (the first known tag of a widget wins). */
export const WIDGET_TAGS: Readonly<Record<string, WidgetKind>> = {
  "ui.static_text": "text",
  "ui.complete": "complete",
  "ui.button": "buttons",
  "ui.dropdown": "dropdown",
  "ui.free_text": "free_text",
  "ui.date_picker": "date",
};

/** One choice of a dropdown or a button group. */
export interface Choice {
  label: string;
  value: unknown;
  /** The value as text (its JSON), for `<option value>` and keys. */
  key: string;
  /** The choice given before (the screen was returned to with Back). */
  earlier: boolean;
}

export interface WidgetModel {
  id: string;
  kind: WidgetKind;
  /** The tag the kind came from (`ui.dropdown`), or the first tag for `other`. */
  tag: string;
  tags: string[];
  label: string;
  /** The widget's text, its instructions filled in (see `ScreenOptions.templates`). */
  text: string;
  instructions: Instruction[];
  /** Takes an answer (everything but static text and the completion banner). */
  input: boolean;
  required: boolean;
  /** The choices now: a dependent widget's follow its parent's current value. */
  choices: Choice[];
  /** Choices are the only values accepted (a dropdown or button group with values). */
  closed: boolean;
  parentId?: string;
  /** The draft's value, else the earlier answer after Back; undefined when empty. */
  value: unknown;
  /** The earlier answer (after Back), for marking it. */
  earlier?: unknown;
  /** The last refusal's message for this widget (or a check before sending). */
  error?: string;
  /** Element ids that tie label, input, hint and error together (`aria-describedby`). */
  ids: { input: string; label: string; text: string; error: string };
}

/** Why Back is not offered, when it is not. */
export interface BackBlocked {
  reason: "first" | "crossed" | "forbidden" | "dropped";
  /** The node in the way (`crossed`), or the screen itself. */
  node?: string;
  message: string;
}

/** A node the screen offers to run on its own (no edge leads to it): an instruction's variable
 * named `…Node` (`"verifyNode": "verify_account"`) names it, and the part before `Node` labels it. */
export interface NodeAction {
  node: string;
  label: string;
  /** The widget whose instruction offers it. */
  widgetId: string;
}

export interface ScreenModel {
  workflowId: string;
  seq: number;
  /** `screen`: a form to answer; `timer`: waiting on a durable timer; `ended`; `running`. */
  phase: "screen" | "timer" | "ended" | "running";
  status: WorkflowState["workflowStatus"];
  node?: string;
  layoutId?: string;
  title?: string;
  widgets: WidgetModel[];
  /** No button group answers the screen: a submit button is needed. */
  needsSubmit: boolean;
  /** Nodes the screen offers to run (with the answers so far as their parameters). */
  nodes: NodeAction[];
  canGoBack: boolean;
  backBlocked?: BackBlocked;
  /** A screen with a timeout: when it stops waiting (RFC 3339); the run then goes on by itself. */
  expiresAt?: string;
  /** A refusal not about one widget. */
  error?: string;
  /** Ended: the outcome. */
  end?: { status: WorkflowState["workflowStatus"]; message?: string; disposition?: unknown };
}

/** What a person has entered so far, and the last refusal of it. */
export interface Draft {
  values: Record<string, unknown>;
  refusal?: Refusal;
}

/** A refused answer as the gateway gives it (422 `invalid_answer`, or any other error). */
export interface Refusal {
  message?: string;
  details?: unknown;
}

export interface ScreenOptions {
  /** Text for `templateId`s, with `{variable}` slots; others show as `templateId: k = v`. */
  templates?: Record<string, string>;
  /** Prefix of element ids, to keep two screens on one page apart. */
  idPrefix?: string;
}

/** Refusal messages for people. */
const MESSAGES: Record<string, string> = { required: "This field is required." };

export const emptyDraft = (): Draft => ({ values: {} });

/** The screen a state shows, with a draft's values and errors. */
export function screenModel(
  state: WorkflowState,
  draft: Draft = emptyDraft(),
  options: ScreenOptions = {},
): ScreenModel {
  const base = {
    workflowId: state.workflowId,
    seq: state.seq,
    status: state.workflowStatus,
    node: state.node ?? undefined,
    widgets: [] as WidgetModel[],
    needsSubmit: false,
    nodes: [] as NodeAction[],
    canGoBack: false,
  };
  const s = state.workflowStatus;
  if (s === "COMPLETED" || s === "FAILED" || s === "TERMINATED") {
    const message = state.errorMessage ?? undefined;
    return { ...base, phase: "ended", end: { status: s, message, disposition: state.disposition ?? undefined } };
  }
  if (s === "SCHEDULER_WAITING") return { ...base, phase: "timer" };
  const view = state.view;
  if (!view) return { ...base, phase: "running" };
  const earlier = isObject(state.previousAnswer) ? state.previousAnswer : {};
  const values = { ...earlierValues(view.inputOptions, earlier), ...draft.values };
  const { byWidget, general } = refusalErrors(draft.refusal);
  const widgets = view.inputOptions.map((w) => widgetModel(w, values, earlier, byWidget[w.id], options));
  const model: ScreenModel = {
    ...base,
    phase: "screen",
    layoutId: view.layoutId,
    title: view.layoutId.replace(/[_.]/g, " "),
    widgets,
    needsSubmit: !widgets.some((w) => w.kind === "buttons" && w.input),
    nodes: nodeActions(widgets),
    canGoBack: state.canGoBack === true,
    backBlocked: state.canGoBack ? undefined : backBlocked(state),
    expiresAt: state.expiresAt ?? undefined,
    error: general,
  };
  return model;
}

function nodeActions(widgets: WidgetModel[]): NodeAction[] {
  const out: NodeAction[] = [];
  for (const w of widgets) {
    for (const i of w.instructions) {
      const vars = isObject(i.templateVariables) ? i.templateVariables : {};
      for (const [k, v] of Object.entries(vars)) {
        const m = /^(\w+)Node$/.exec(k);
        if (!m || typeof v !== "string" || out.some((a) => a.node === v)) continue;
        out.push({ node: v, label: m[1].charAt(0).toUpperCase() + m[1].slice(1), widgetId: w.id });
      }
    }
  }
  return out;
}

/** The earlier answer's values for the widgets that are still on the screen. */
function earlierValues(widgets: Widget[], earlier: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const w of widgets) if (w.id in earlier && isInput(w)) out[w.id] = earlier[w.id];
  return out;
}

function refusalErrors(r?: Refusal): { byWidget: Record<string, string>; general?: string } {
  const byWidget: Record<string, string> = {};
  if (!r) return { byWidget };
  const details = Array.isArray(r.details) ? (r.details as { widgetId?: string; message?: string }[]) : [];
  const general: string[] = [];
  for (const d of details) {
    const message = MESSAGES[d.message ?? ""] ?? d.message ?? "not accepted";
    if (d.widgetId) byWidget[d.widgetId] = byWidget[d.widgetId] ? `${byWidget[d.widgetId]} ${message}` : message;
    else general.push(message);
  }
  if (!details.length && r.message) general.push(r.message);
  return { byWidget, general: general.length ? general.join(" ") : undefined };
}

function widgetModel(
  w: Widget,
  values: Record<string, unknown>,
  earlier: Record<string, unknown>,
  error: string | undefined,
  options: ScreenOptions,
): WidgetModel {
  const tags = w.tags?.values ?? [];
  const known = tags.find((t) => t in WIDGET_TAGS);
  const kind: WidgetKind = known ? WIDGET_TAGS[known] : "other";
  const input = isInput(w);
  const choices = choicesOf(w, values).map((c) => ({
    ...c,
    earlier: w.id in earlier && sameValue(earlier[w.id], c.value),
  }));
  const id = domId(`${options.idPrefix ?? "drift-"}${w.id}`);
  const instructions = w.instructions ?? [];
  return {
    id: w.id,
    kind,
    tag: known ?? tags[0] ?? "",
    tags,
    label: w.description || w.id,
    text: instructions.map((i) => fill(i, options.templates)).join(" "),
    instructions,
    input,
    required: input && (w.required ?? true),
    choices,
    closed: choices.length > 0 || (w.possibleValues?.length ?? 0) > 0,
    parentId: w.parentId ?? undefined,
    value: empty(values[w.id]) ? undefined : values[w.id],
    earlier: w.id in earlier ? earlier[w.id] : undefined,
    error,
    ids: { input: id, label: `${id}-label`, text: `${id}-text`, error: `${id}-error` },
  };
}

const isInput = (w: Widget) => {
  const tags = w.tags?.values ?? [];
  return !tags.includes("ui.static_text") && !tags.includes("ui.complete");
};

/** A widget's choices: its `possibleValues`, or, under a parent, the dependent values for the
 * parent's current value (as the workflow looks them up: a string as is, else its JSON). */
function choicesOf(w: Widget, values: Record<string, unknown>): Omit<Choice, "earlier">[] {
  let list: unknown[] = w.possibleValues ?? [];
  if (w.parentId && isObject(w.possibleDependentValues)) {
    const parent = values[w.parentId];
    const key = typeof parent === "string" ? parent : JSON.stringify(parent ?? null);
    const dependent = (w.possibleDependentValues as Record<string, unknown>)[key];
    list = Array.isArray(dependent) ? dependent : [];
  }
  return list.map((item) => {
    const value = isObject(item) && "value" in item ? item.value : item;
    const label = isObject(item) && typeof item.displayValue === "string" ? item.displayValue : String(value);
    return { label, value, key: JSON.stringify(value ?? null) };
  });
}

function backBlocked(state: WorkflowState): BackBlocked | undefined {
  const node = state.node ?? undefined;
  if (state.backBlockedBy && state.backBlockedBy === state.node) {
    return { reason: "forbidden", node, message: "This screen does not allow going back." };
  }
  if (state.backDropped) {
    return {
      reason: "dropped",
      node,
      message: "Back reaches no further: the screens before this one were let go.",
    };
  }
  if (state.backBlockedBy) {
    return {
      reason: "crossed",
      node: state.backBlockedBy,
      message: `Back is not possible: ${state.backBlockedBy} ran before this screen and cannot be undone.`,
    };
  }
  return { reason: "first", node, message: "This is the first screen." };
}

/** An instruction's text: its template with the variables filled in. */
function fill(i: Instruction, templates: Record<string, string> = {}): string {
  const vars = (isObject(i.templateVariables) ? i.templateVariables : {}) as Record<string, unknown>;
  const t = templates[i.templateId];
  const shown = (v: unknown) =>
    v === undefined || v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
  if (t === undefined) {
    const pairs = Object.entries(vars).map(([k, v]) => `${k} = ${shown(v)}`);
    return pairs.length ? `${i.templateId}: ${pairs.join(", ")}` : i.templateId;
  }
  return t.replace(/\{(\w+)\}/g, (_, k: string) => shown(vars[k]));
}

/**
 * The draft with `widgetId` set to `value` (empty text or `undefined` clears it). A parent's
 * change clears its dependents' values that its new choices no longer hold, as a person would
 * expect of a country/city pair. The last refusal's error for the widget goes: it was answered.
 */
export function setValue(state: WorkflowState, draft: Draft, widgetId: string, value: unknown): Draft {
  const values = { ...draft.values };
  if (empty(value)) delete values[widgetId];
  else values[widgetId] = value;
  const widgets = state.view?.inputOptions ?? [];
  const earlier = isObject(state.previousAnswer) ? state.previousAnswer : {};
  // Dependents, in order, so a chain (country → city → street) clears all the way down.
  let changed = [widgetId];
  while (changed.length) {
    const next: string[] = [];
    for (const w of widgets.filter((w) => w.parentId && changed.includes(w.parentId))) {
      const current = w.id in values ? values[w.id] : earlier[w.id];
      const merged = { ...earlierValues(widgets, earlier), ...values };
      if (current !== undefined && !choicesOf(w, merged).some((c) => sameValue(c.value, current))) {
        values[w.id] = undefined;
        next.push(w.id);
      }
    }
    changed = next;
  }
  return { values, refusal: withoutWidget(draft.refusal, widgetId) };
}

function withoutWidget(r: Refusal | undefined, widgetId: string): Refusal | undefined {
  if (!r || !Array.isArray(r.details)) return r;
  const details = (r.details as { widgetId?: string }[]).filter((d) => d.widgetId !== widgetId);
  return details.length ? { ...r, details } : undefined;
}

/** A field that fails the screen's rules, as the workflow would say it. */
export interface FieldError {
  widgetId: string;
  message: string;
}

/**
 * The answer a draft makes (`selectedOptions`: each input widget with a value), and what the
 * workflow would refuse in it: a required widget left empty, a value not among a closed
 * widget's choices. Checked before sending so a person hears at once; the workflow checks again.
 */
export function answerOf(
  state: WorkflowState,
  draft: Draft,
): { selectedOptions: Record<string, unknown>; errors: FieldError[] } {
  const model = screenModel(state, { values: draft.values });
  const selectedOptions: Record<string, unknown> = {};
  const errors: FieldError[] = [];
  for (const w of model.widgets) {
    if (!w.input) continue;
    if (w.value === undefined) {
      if (w.required) errors.push({ widgetId: w.id, message: "required" });
      continue;
    }
    if (w.closed && !w.choices.some((c) => sameValue(c.value, w.value))) {
      errors.push({ widgetId: w.id, message: `${JSON.stringify(w.value)} is not one of the allowed values` });
    }
    selectedOptions[w.id] = w.value;
  }
  return { selectedOptions, errors };
}

/** The time a screen has left at `now` (ms since epoch) as `m:ss` (`h:mm:ss` past an hour), and
 * whether it is up; undefined for a screen without a timeout. */
export function timeLeft(m: Pick<ScreenModel, "expiresAt">, now: number): { text: string; up: boolean } | undefined {
  if (!m.expiresAt) return undefined;
  const at = Date.parse(m.expiresAt);
  if (Number.isNaN(at)) return undefined;
  const s = Math.max(0, Math.ceil((at - now) / 1000));
  const two = (n: number) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  const text = h ? `${h}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}` : `${Math.floor(s / 60)}:${two(s % 60)}`;
  return { text, up: s === 0 };
}

/** The first widget with an error, to move the focus to. */
export const firstError = (m: ScreenModel): WidgetModel | undefined => m.widgets.find((w) => w.error);

const empty = (v: unknown) => v === undefined || v === null || v === "";

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** JSON equality, as the workflow compares values. */
function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Letters, digits, `-` and `_` only: safe in ids and CSS selectors. */
function domId(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, (c) => `_${c.charCodeAt(0).toString(16)}`);
}

/** What the screen's actions need of a client (`createClient`'s, or a socket's). */
export interface ScreenClient<A> {
  resume(id: string, viewResponse: unknown, o?: { seq?: number; requestId?: string }): Promise<A>;
  back(id: string, o?: { seq?: number; requestId?: string }): Promise<A>;
  executeNode(id: string, node: string, parameters?: unknown, o?: { requestId?: string }): Promise<unknown>;
}

/**
 * The calls a screen makes, with safe retries. An answer carries the screen's `seq` (one meant
 * for an older screen is refused, 409 `stale_screen`) and one request id per answer given, so
 * pressing the same answer twice, or a retry after a lost response, is answered once and
 * applied once. A node run is a new request each time (a person may try again).
 */
export function screenActions<A>(client: ScreenClient<A>, state: WorkflowState, newId: () => string) {
  const ids = new Map<string, string>();
  const idFor = (what: string) => {
    const known = ids.get(what);
    if (known) return known;
    const id = newId();
    ids.set(what, id);
    return id;
  };
  const { workflowId: id, seq } = state;
  return {
    answer: (selectedOptions: Record<string, unknown>) =>
      client.resume(id, { selectedOptions }, { seq, requestId: idFor(`answer ${JSON.stringify(selectedOptions)}`) }),
    back: () => client.back(id, { seq, requestId: idFor("back") }),
    executeNode: (node: string, parameters?: unknown) =>
      client.executeNode(id, node, parameters, { requestId: newId() }),
  };
}

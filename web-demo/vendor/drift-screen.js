// ../../clients/typescript/src/screen.ts
var WIDGET_TAGS = {
  "ui.static_text": "text",
  "ui.complete": "complete",
  "ui.button": "buttons",
  "ui.dropdown": "dropdown",
  "ui.free_text": "free_text",
  "ui.date_picker": "date"
};
var MESSAGES = { required: "This field is required." };
var emptyDraft = () => ({ values: {} });
function screenModel(state, draft = emptyDraft(), options = {}) {
  const base = {
    workflowId: state.workflowId,
    seq: state.seq,
    status: state.workflowStatus,
    node: state.node ?? void 0,
    widgets: [],
    needsSubmit: false,
    nodes: [],
    canGoBack: false
  };
  const s = state.workflowStatus;
  if (s === "COMPLETED" || s === "FAILED" || s === "TERMINATED") {
    const message = state.errorMessage ?? void 0;
    return { ...base, phase: "ended", end: { status: s, message, disposition: state.disposition ?? void 0 } };
  }
  if (s === "SCHEDULER_WAITING") return { ...base, phase: "timer" };
  const view = state.view;
  if (!view) return { ...base, phase: "running" };
  const earlier = isObject(state.previousAnswer) ? state.previousAnswer : {};
  const values = { ...earlierValues(view.inputOptions, earlier), ...draft.values };
  const { byWidget, general } = refusalErrors(draft.refusal);
  const widgets = view.inputOptions.map((w) => widgetModel(w, values, earlier, byWidget[w.id], options));
  const model = {
    ...base,
    phase: "screen",
    layoutId: view.layoutId,
    title: view.layoutId.replace(/[_.]/g, " "),
    widgets,
    needsSubmit: !widgets.some((w) => w.kind === "buttons" && w.input),
    nodes: nodeActions(widgets),
    canGoBack: state.canGoBack === true,
    backBlocked: state.canGoBack ? void 0 : backBlocked(state),
    expiresAt: state.expiresAt ?? void 0,
    error: general
  };
  return model;
}
function nodeActions(widgets) {
  const out = [];
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
function earlierValues(widgets, earlier) {
  const out = {};
  for (const w of widgets) if (w.id in earlier && isInput(w)) out[w.id] = earlier[w.id];
  return out;
}
function refusalErrors(r) {
  const byWidget = {};
  if (!r) return { byWidget };
  const details = Array.isArray(r.details) ? r.details : [];
  const general = [];
  for (const d of details) {
    const message = MESSAGES[d.message ?? ""] ?? d.message ?? "not accepted";
    if (d.widgetId) byWidget[d.widgetId] = byWidget[d.widgetId] ? `${byWidget[d.widgetId]} ${message}` : message;
    else general.push(message);
  }
  if (!details.length && r.message) general.push(r.message);
  return { byWidget, general: general.length ? general.join(" ") : void 0 };
}
function widgetModel(w, values, earlier, error, options) {
  const tags = w.tags?.values ?? [];
  const known = tags.find((t) => t in WIDGET_TAGS);
  const kind = known ? WIDGET_TAGS[known] : "other";
  const input = isInput(w);
  const choices = choicesOf(w, values).map((c) => ({
    ...c,
    earlier: w.id in earlier && sameValue(earlier[w.id], c.value)
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
    parentId: w.parentId ?? void 0,
    value: empty(values[w.id]) ? void 0 : values[w.id],
    earlier: w.id in earlier ? earlier[w.id] : void 0,
    error,
    ids: { input: id, label: `${id}-label`, text: `${id}-text`, error: `${id}-error` }
  };
}
var isInput = (w) => {
  const tags = w.tags?.values ?? [];
  return !tags.includes("ui.static_text") && !tags.includes("ui.complete");
};
function choicesOf(w, values) {
  let list = w.possibleValues ?? [];
  if (w.parentId && isObject(w.possibleDependentValues)) {
    const parent = values[w.parentId];
    const key = typeof parent === "string" ? parent : JSON.stringify(parent ?? null);
    const dependent = w.possibleDependentValues[key];
    list = Array.isArray(dependent) ? dependent : [];
  }
  return list.map((item) => {
    const value = isObject(item) && "value" in item ? item.value : item;
    const label = isObject(item) && typeof item.displayValue === "string" ? item.displayValue : String(value);
    return { label, value, key: JSON.stringify(value ?? null) };
  });
}
function backBlocked(state) {
  const node = state.node ?? void 0;
  if (state.backBlockedBy && state.backBlockedBy === state.node) {
    return { reason: "forbidden", node, message: "This screen does not allow going back." };
  }
  if (state.backDropped) {
    return {
      reason: "dropped",
      node,
      message: "Back reaches no further: the screens before this one were let go."
    };
  }
  if (state.backBlockedBy) {
    return {
      reason: "crossed",
      node: state.backBlockedBy,
      message: `Back is not possible: ${state.backBlockedBy} ran before this screen and cannot be undone.`
    };
  }
  return { reason: "first", node, message: "This is the first screen." };
}
function fill(i, templates = {}) {
  const vars = isObject(i.templateVariables) ? i.templateVariables : {};
  const t = templates[i.templateId];
  const shown = (v) => v === void 0 || v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
  if (t === void 0) {
    const pairs = Object.entries(vars).map(([k, v]) => `${k} = ${shown(v)}`);
    return pairs.length ? `${i.templateId}: ${pairs.join(", ")}` : i.templateId;
  }
  return t.replace(/\{(\w+)\}/g, (_, k) => shown(vars[k]));
}
function setValue(state, draft, widgetId, value) {
  const values = { ...draft.values };
  if (empty(value)) delete values[widgetId];
  else values[widgetId] = value;
  const widgets = state.view?.inputOptions ?? [];
  const earlier = isObject(state.previousAnswer) ? state.previousAnswer : {};
  let changed = [widgetId];
  while (changed.length) {
    const next = [];
    for (const w of widgets.filter((w2) => w2.parentId && changed.includes(w2.parentId))) {
      const current = w.id in values ? values[w.id] : earlier[w.id];
      const merged = { ...earlierValues(widgets, earlier), ...values };
      if (current !== void 0 && !choicesOf(w, merged).some((c) => sameValue(c.value, current))) {
        values[w.id] = void 0;
        next.push(w.id);
      }
    }
    changed = next;
  }
  return { values, refusal: withoutWidget(draft.refusal, widgetId) };
}
function withoutWidget(r, widgetId) {
  if (!r || !Array.isArray(r.details)) return r;
  const details = r.details.filter((d) => d.widgetId !== widgetId);
  return details.length ? { ...r, details } : void 0;
}
function answerOf(state, draft) {
  const model = screenModel(state, { values: draft.values });
  const selectedOptions = {};
  const errors = [];
  for (const w of model.widgets) {
    if (!w.input) continue;
    if (w.value === void 0) {
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
function timeLeft(m, now) {
  if (!m.expiresAt) return void 0;
  const at = Date.parse(m.expiresAt);
  if (Number.isNaN(at)) return void 0;
  const s = Math.max(0, Math.ceil((at - now) / 1e3));
  const two = (n) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  const text = h ? `${h}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}` : `${Math.floor(s / 60)}:${two(s % 60)}`;
  return { text, up: s === 0 };
}
var firstError = (m) => m.widgets.find((w) => w.error);
var empty = (v) => v === void 0 || v === null || v === "";
function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
function sameValue(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}
function domId(s) {
  return s.replace(/[^A-Za-z0-9_-]/g, (c) => `_${c.charCodeAt(0).toString(16)}`);
}
function screenActions(client, state, newId) {
  const ids = /* @__PURE__ */ new Map();
  const idFor = (what) => {
    const known = ids.get(what);
    if (known) return known;
    const id2 = newId();
    ids.set(what, id2);
    return id2;
  };
  const { workflowId: id, seq } = state;
  return {
    answer: (selectedOptions) => client.resume(id, { selectedOptions }, { seq, requestId: idFor(`answer ${JSON.stringify(selectedOptions)}`) }),
    back: () => client.back(id, { seq, requestId: idFor("back") }),
    executeNode: (node, parameters) => client.executeNode(id, node, parameters, { requestId: newId() })
  };
}
export {
  WIDGET_TAGS,
  answerOf,
  emptyDraft,
  firstError,
  screenActions,
  screenModel,
  setValue,
  timeLeft
};

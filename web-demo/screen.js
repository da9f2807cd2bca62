// Screens: each state's `view` rendered as a form (widgets by their `ui.*` tags), its answer
// collected back as `selectedOptions` (an earlier answer prefilled after Back), and a refused
// answer's details shown on its widgets. A screen renders into a box; `ns` keeps its element ids
// apart from another box's (the Run tab's screen and the Definitions tab's Try it).

import { $, el, TERMINAL } from "./dom.js";

const TEMPLATES = {
  "refund.summary": "Order {orderId}: {amount} {currency}. What went wrong?",
  "refund.confirm": "Refund {amount} for the reason “{reason}”?",
  "refund.manual_review": "This order ({amount}) is above the automatic refund limit; a colleague will review it.",
  "bank.intro": "Enter your 8-digit account number. Use “Verify” to check it before saving.",
};

function fill(templateId, vars) {
  const t = TEMPLATES[templateId];
  if (!t) {
    const shown = Object.entries(vars || {}).map(([k, v]) => `${k} = ${typeof v === "object" ? JSON.stringify(v) : v}`);
    return `${templateId}: ${shown.join(", ")}`;
  }
  return t.replace(/\{(\w+)\}/g, (_, k) => (vars && vars[k] !== undefined && vars[k] !== null ? vars[k] : ""));
}

const tags = (w) => (w.tags && w.tags.values) || [];

function findVerifyNode(view) {
  for (const w of view.inputOptions) {
    for (const i of w.instructions || []) {
      if (i.templateVariables && i.templateVariables.verifyNode) return i.templateVariables.verifyNode;
    }
  }
  return null;
}

function dropdown(w, id, label, ns) {
  const pv = w.possibleValues || [];
  const sel = el("select", { id, name: w.id, "data-json": "1" });
  const options = () => {
    let list = pv;
    if (w.parentId && w.possibleDependentValues) {
      const parent = document.getElementById(`${ns}w-${w.parentId}`);
      const key = parent ? JSON.parse(parent.value || "null") : null;
      list = w.possibleDependentValues[key] || [];
    }
    const shown = list.map((v) => el("option", { value: JSON.stringify(v.value ?? v) }, v.displayValue ?? v));
    sel.replaceChildren(el("option", { value: "" }, "— choose —"), ...shown);
  };
  options();
  if (w.parentId) {
    // The parent is in the same form, added after this widget when it comes later.
    setTimeout(() => {
      const p = document.getElementById(`${ns}w-${w.parentId}`);
      if (p) p.addEventListener("change", options);
    });
  }
  return [el("label", { for: id }, label), sel];
}

function widget(w, verifyNode, onVerify, ns) {
  const t = tags(w);
  const id = `${ns}w-${w.id}`;
  const wrap = el("div", { class: "widget", "data-widget": w.id });
  const label = w.description || w.id;
  const text = (w.instructions || []).map((i) => fill(i.templateId, i.templateVariables)).join(" ");
  if (t.includes("ui.static_text")) {
    wrap.append(el("p", { class: "static" }, text || label));
    return wrap;
  }
  if (t.includes("ui.complete")) {
    wrap.append(el("div", { class: "banner" }, text || label));
    return wrap;
  }
  if (text) wrap.append(el("p", { class: "muted" }, text));
  if (t.includes("ui.button")) {
    const group = el("div", { role: "group", "aria-label": label });
    for (const v of w.possibleValues || []) {
      const click = (e) => {
        e.currentTarget.form.dataset.clicked = w.id;
        e.currentTarget.form.dataset.value = e.currentTarget.value;
      };
      group.append(
        el("button", { type: "submit", name: w.id, value: JSON.stringify(v.value), onclick: click }, v.displayValue),
      );
    }
    wrap.append(group);
  } else if (t.includes("ui.dropdown")) {
    wrap.append(...dropdown(w, id, label, ns));
  } else if (t.includes("ui.date_picker")) {
    wrap.append(el("label", { for: id }, label), el("input", { id, name: w.id, type: "date" }));
  } else if (t.includes("ui.free_text")) {
    wrap.append(el("label", { for: id }, label), el("input", { id, name: w.id, type: "text", autocomplete: "off" }));
    if (verifyNode && onVerify) {
      const out = el("div", { class: "result", "data-testid": "verify-result", role: "status", "aria-live": "polite" });
      const verify = () => onVerify(verifyNode, w.id, document.getElementById(id).value, out);
      wrap.append(el("button", { type: "button", class: "secondary", onclick: verify }, "Verify"), out);
    }
  } else {
    // Unknown tag: a readable generic input.
    wrap.append(
      el("label", { for: id }, `${label} (${t.join(", ") || "input"})`),
      el("input", { id, name: w.id, type: "text" }),
    );
  }
  wrap.append(el("div", { class: "field-error", id: `${ns}err-${w.id}`, role: "alert" }));
  return wrap;
}

/**
 * Puts an earlier answer back into the form: inputs and dropdowns hold it, its button is marked.
 * Set twice: a parent dropdown's change refills its dependents' options, which the second pass
 * then selects in.
 */
function prefill(form, answer) {
  for (const pass of [1, 2]) {
    for (const [widgetId, value] of Object.entries(answer || {})) {
      const input = form.querySelector(`[data-widget="${CSS.escape(widgetId)}"] :is(select, input)`);
      if (!input) continue;
      input.value = input.dataset.json ? JSON.stringify(value) : String(value);
      if (pass === 1) input.dispatchEvent(new Event("change"));
    }
  }
  for (const [widgetId, value] of Object.entries(answer || {})) {
    const wrap = form.querySelector(`[data-widget="${CSS.escape(widgetId)}"]`);
    if (!wrap) continue;
    for (const b of wrap.querySelectorAll("button[type=submit]")) {
      if (b.value === JSON.stringify(value)) {
        b.classList.add("earlier");
        b.title = "your earlier answer";
      }
    }
  }
}

/** Why Back is not offered on a screen, from its `backBlockedBy` (or `backDropped`). */
function noBack(st) {
  if (st.backDropped)
    return "Back: reaches no further — the screens before this one were let go (Back keeps 32 at most).";
  if (!st.backBlockedBy) return null;
  if (st.backBlockedBy === st.node) return "Back: this screen does not allow going back.";
  return `Back: not from here — ${st.backBlockedBy} ran since the previous screen and is not undone.`;
}

function collect(form) {
  const selected = {};
  for (const e of form.querySelectorAll("select, input")) {
    if (!e.value) continue;
    selected[e.name] = e.dataset.json ? JSON.parse(e.value) : e.value;
  }
  if (form.dataset.clicked) selected[form.dataset.clicked] = JSON.parse(form.dataset.value);
  return selected;
}

/**
 * Shows a state in `box`: its end, a timer's wait, or its screen as a form.
 * `on`: `{ answer(selectedOptions), verify?(node, param, value, out), back?() }`; a Back button
 * where the state says `canGoBack`.
 */
export function render(st, on, box = $("screen"), ns = "") {
  box.replaceChildren();
  if (TERMINAL.includes(st.workflowStatus)) {
    const msg = st.errorMessage || (st.disposition && st.disposition.message) || st.workflowStatus;
    const cls = "banner" + (st.workflowStatus === "COMPLETED" ? "" : " failed");
    const text = msg === st.workflowStatus ? msg : `${st.workflowStatus}: ${msg}`;
    box.append(el("div", { class: cls, role: "status", "data-testid": "complete" }, text));
    if (st.disposition) box.append(el("pre", { class: "muted" }, JSON.stringify(st.disposition, null, 2)));
    return;
  }
  if (st.workflowStatus === "SCHEDULER_WAITING") {
    box.append(el("p", { class: "static" }, "Waiting on a durable timer… the next state will arrive by itself."));
    return;
  }
  if (!st.view) {
    box.append(el("p", { class: "muted" }, `Status ${st.workflowStatus}`));
    return;
  }
  const form = el("form", { id: `${ns}answer`, class: "answer", "data-layout": st.view.layoutId });
  form.append(el("h3", {}, st.view.layoutId.replace(/_/g, " ")));
  const verifyNode = findVerifyNode(st.view);
  for (const w of st.view.inputOptions) form.append(widget(w, verifyNode, on.verify, ns));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    on.answer(collect(form));
  });
  if (!st.view.inputOptions.some((w) => tags(w).includes("ui.button"))) {
    form.append(el("button", { type: "submit" }, "Continue"));
  }
  if (st.canGoBack && on.back) {
    form.append(
      el("button", { type: "button", class: "secondary", "data-testid": "back", onclick: on.back }, "← Back"),
    );
  } else if (noBack(st)) {
    form.append(el("p", { class: "muted", "data-testid": "no-back" }, noBack(st)));
  }
  box.append(form);
  // After the dropdowns' dependent lists are wired (they wait a tick for their parent).
  if (st.previousAnswer) setTimeout(() => prefill(form, st.previousAnswer));
  const first = form.querySelector("select, input, button");
  if (first) first.focus();
}

export function clearFieldErrors(box = $("screen")) {
  for (const e of box.querySelectorAll(".field-error")) e.textContent = "";
}

/** A refused answer: each widget's message beside it, or the message above the screen. */
export function showRefusal(m, box = $("screen"), ns = "") {
  const details = Array.isArray(m.details) ? m.details : [];
  for (const d of details) {
    const e = $(`${ns}err-${d.widgetId}`);
    if (e) e.textContent = d.message === "required" ? "This field is required." : d.message;
  }
  if (!details.length) box.prepend(el("p", { class: "field-error", role: "alert" }, m.message || "error"));
}

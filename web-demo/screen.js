// Screens: each state's `view` rendered as a form through the screen kit's core
// (vendor/drift-screen.js, from clients/typescript/src/screen.ts): the core says what each widget
// is, offers, holds (an earlier answer after Back) and got wrong; this module only draws it and
// reads it back. A screen renders into a box; `ns` keeps its element ids apart from another box's
// (the Run tab's screen and the Definitions tab's Try it).

import { $, el, TERMINAL } from "./dom.js";
import { answerOf, emptyDraft, firstError, screenModel, setValue } from "./drift-screen.js";

const TEMPLATES = {
  "refund.summary": "Order {orderId}: {amount} {currency}. What went wrong?",
  "refund.confirm": "Refund {amount} for the reason “{reason}”?",
  "refund.manual_review": "This order ({amount}) is above the automatic refund limit; a colleague will review it.",
  "bank.intro": "Enter your 8-digit account number. Use “Verify” to check it before saving.",
  "approval.request": "{requester} asks you to approve {amount} {currency} for {purpose}.",
};

/** What each box shows: its state, the draft typed into it, and how its screen is drawn. */
const shown = new WeakMap();

const modelOf = (s) => screenModel(s.st, s.draft, { templates: TEMPLATES, idPrefix: `${s.ns}w-` });

/** The disconnected node a screen's instructions offer to run (the bank example's "Verify"). */
function nodeToRun(view) {
  for (const w of view.inputOptions) {
    for (const i of w.instructions || []) {
      if (i.templateVariables && i.templateVariables.verifyNode) return i.templateVariables.verifyNode;
    }
  }
  return null;
}

/** The input element of a widget model, tied to its label, text and error. */
function control(w, s, onVerify, verifyNode) {
  const described = [w.text ? w.ids.text : null, w.ids.error].filter(Boolean).join(" ");
  const common = { id: w.ids.input, name: w.id, "aria-describedby": described };
  if (w.required) common["aria-required"] = "true";
  const set = (value) => {
    s.draft = setValue(s.st, s.draft, w.id, value);
    sync(s);
  };
  if (w.kind === "dropdown") {
    const sel = el("select", common);
    sel.addEventListener("change", () => set(choiceOf(s, w.id, sel.value)));
    return [el("label", { for: w.ids.input, id: w.ids.label }, w.label), sel];
  }
  const type = w.kind === "date" ? "date" : "text";
  const label = w.kind === "other" ? `${w.label} (${w.tags.join(", ") || "input"})` : w.label;
  const input = el("input", { ...common, type, autocomplete: "off" });
  input.addEventListener("input", () => set(input.value));
  const out = [el("label", { for: w.ids.input, id: w.ids.label }, label), input];
  if (w.kind === "free_text" && verifyNode && onVerify) {
    const result = el("div", {
      class: "result",
      "data-testid": "verify-result",
      role: "status",
      "aria-live": "polite",
    });
    const verify = () => onVerify(verifyNode, w.id, input.value, result);
    out.push(el("button", { type: "button", class: "secondary", onclick: verify }, "Verify"), result);
  }
  return out;
}

/** The value of the choice whose key (its JSON) a select or button holds. */
function choiceOf(s, widgetId, key) {
  const w = modelOf(s).widgets.find((x) => x.id === widgetId);
  const c = w && w.choices.find((x) => x.key === key);
  return c ? c.value : undefined;
}

function widget(w, s, on, verifyNode) {
  const wrap = el("div", { class: "widget", "data-widget": w.id });
  if (w.kind === "text") return (wrap.append(el("p", { class: "static" }, w.text || w.label)), wrap);
  if (w.kind === "complete") return (wrap.append(el("div", { class: "banner" }, w.text || w.label)), wrap);
  if (w.text) wrap.append(el("p", { class: "muted", id: w.ids.text }, w.text));
  if (w.kind === "buttons") {
    const group = el("div", { role: "group", "aria-label": w.label });
    for (const c of w.choices) {
      const press = () => (s.draft = setValue(s.st, s.draft, w.id, c.value));
      group.append(el("button", { type: "submit", name: w.id, value: c.key, onclick: press }, c.label));
    }
    wrap.append(group);
  } else {
    wrap.append(...control(w, s, on.verify, verifyNode));
  }
  wrap.append(el("div", { class: "field-error", id: w.ids.error, role: "alert" }));
  return wrap;
}

/** Brings the form in line with the model: dependent choices, values, earlier answers, errors. */
function sync(s) {
  const m = modelOf(s);
  for (const w of m.widgets) {
    const wrap = s.form.querySelector(`[data-widget="${CSS.escape(w.id)}"]`);
    if (!wrap) continue;
    const input = wrap.querySelector("select, input");
    if (input && input.tagName === "SELECT") {
      const keys = [...input.options].map((o) => o.value).join("\n");
      if (keys !== ["", ...w.choices.map((c) => c.key)].join("\n")) {
        const options = w.choices.map((c) => el("option", { value: c.key }, c.label));
        input.replaceChildren(el("option", { value: "" }, "— choose —"), ...options);
      }
      input.value = w.value === undefined ? "" : JSON.stringify(w.value);
    } else if (input && document.activeElement !== input) {
      input.value = w.value === undefined ? "" : String(w.value);
    }
    for (const b of wrap.querySelectorAll("button[type=submit]")) {
      const earlier = w.choices.some((c) => c.key === b.value && c.earlier);
      b.classList.toggle("earlier", earlier);
      b.title = earlier ? "your earlier answer" : "";
    }
    const error = wrap.querySelector(".field-error");
    if (error) error.textContent = w.error || "";
    if (input) {
      if (w.error) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
  }
  const general = s.form.querySelector(".form-error");
  if (general) general.textContent = m.error || "";
  return m;
}

/**
 * Shows a state in `box`: its end, a timer's wait, or its screen as a form.
 * `on`: `{ answer(selectedOptions), verify?(node, param, value, out), back?() }`; a Back button
 * where the state says `canGoBack`, else why not (but on a first screen).
 */
export function render(st, on, box = $("screen"), ns = "") {
  box.replaceChildren();
  const s = { st, draft: emptyDraft(), ns, form: null };
  shown.set(box, s);
  const m = modelOf(s);
  if (m.phase === "ended" || TERMINAL.includes(st.workflowStatus)) {
    const msg = st.errorMessage || (st.disposition && st.disposition.message) || st.workflowStatus;
    const cls = "banner" + (st.workflowStatus === "COMPLETED" ? "" : " failed");
    const text = msg === st.workflowStatus ? msg : `${st.workflowStatus}: ${msg}`;
    box.append(el("div", { class: cls, role: "status", "data-testid": "complete" }, text));
    if (st.disposition) box.append(el("pre", { class: "muted" }, JSON.stringify(st.disposition, null, 2)));
    return;
  }
  if (m.phase === "timer") {
    box.append(el("p", { class: "static" }, "Waiting on a durable timer… the next state will arrive by itself."));
    return;
  }
  if (m.phase !== "screen") {
    box.append(el("p", { class: "muted" }, `Status ${st.workflowStatus}`));
    return;
  }
  const form = el("form", { id: `${ns}answer`, class: "answer", "data-layout": m.layoutId, novalidate: "" });
  s.form = form;
  form.append(el("h3", {}, m.title), el("p", { class: "field-error form-error", role: "alert" }));
  const verifyNode = nodeToRun(st.view);
  for (const w of m.widgets) form.append(widget(w, s, on, verifyNode));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    // The workflow checks the answer (the page shows its 422 on the widgets).
    on.answer(answerOf(s.st, s.draft).selectedOptions);
  });
  if (m.needsSubmit) form.append(el("button", { type: "submit" }, "Continue"));
  if (m.canGoBack && on.back) {
    form.append(
      el("button", { type: "button", class: "secondary", "data-testid": "back", onclick: on.back }, "← Back"),
    );
  } else if (m.backBlocked && m.backBlocked.reason !== "first") {
    form.append(el("p", { class: "muted", "data-testid": "no-back" }, m.backBlocked.message));
  }
  box.append(form);
  sync(s);
  const first = form.querySelector("select, input, button");
  if (first) first.focus();
}

export function clearFieldErrors(box = $("screen")) {
  const s = shown.get(box);
  if (!s || !s.form) return;
  s.draft = { values: s.draft.values };
  sync(s);
}

/** A refused answer: each widget's message beside it (focus on the first), or above the screen. */
export function showRefusal(m, box = $("screen")) {
  const s = shown.get(box);
  if (!s || !s.form) {
    box.prepend(el("p", { class: "field-error", role: "alert" }, m.message || "error"));
    return;
  }
  s.draft = { values: s.draft.values, refusal: { message: m.message || "error", details: m.details } };
  const model = sync(s);
  const w = firstError(model);
  const input = w && document.getElementById(w.ids.input);
  if (input) input.focus();
}

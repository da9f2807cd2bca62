// The screen kit's core, alone: states in, view models and answers out. No gateway needed
// (`node --test test/screen.test.mjs` after `npm run build`).

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  WIDGET_TAGS,
  answerOf,
  emptyDraft,
  firstError,
  screenActions,
  screenModel,
  setValue,
  timeLeft,
} from "../dist/screen.js";

const links = { self: "/w", events: "/e", resume: "/r", terminate: "/t" };
const waiting = (inputOptions, extra = {}) => ({
  workflowId: "wf-1",
  workflowStatus: "WAITING",
  seq: 3,
  node: "form",
  view: { layoutId: "refund_reason", node: "form", inputOptions },
  links,
  ...extra,
});
const tag = (t) => ({ values: [t] });
const values = (...vs) => vs.map((v) => ({ displayValue: `Say ${v}`, value: v }));

const everyKind = [
  {
    id: "intro",
    tags: tag("ui.static_text"),
    instructions: [{ templateId: "hello", templateVariables: { name: "Ada" } }],
  },
  { id: "done", tags: tag("ui.complete") },
  { id: "reason", description: "Reason", tags: tag("ui.dropdown"), possibleValues: values("damaged", "late") },
  { id: "action", tags: tag("ui.button"), possibleValues: values("confirm", "cancel") },
  { id: "note", description: "A note", tags: tag("ui.free_text"), required: false },
  { id: "when", tags: tag("ui.date_picker") },
  { id: "stars", tags: tag("ui.rating") },
];

test("every widget kind of the DSL has a kind, a label and ids that tie label, text and error together", () => {
  assert.deepEqual(Object.keys(WIDGET_TAGS).sort(), [
    "ui.button",
    "ui.complete",
    "ui.date_picker",
    "ui.dropdown",
    "ui.free_text",
    "ui.static_text",
  ]);
  const m = screenModel(waiting(everyKind), emptyDraft(), { templates: { hello: "Hello {name}." } });
  assert.equal(m.phase, "screen");
  assert.equal(m.title, "refund reason");
  const byId = Object.fromEntries(m.widgets.map((w) => [w.id, w]));
  assert.deepEqual(
    m.widgets.map((w) => [w.id, w.kind, w.input, w.required]),
    [
      ["intro", "text", false, false],
      ["done", "complete", false, false],
      ["reason", "dropdown", true, true],
      ["action", "buttons", true, true],
      ["note", "free_text", true, false],
      ["when", "date", true, true],
      ["stars", "other", true, true],
    ],
  );
  assert.equal(byId.intro.text, "Hello Ada.");
  assert.equal(byId.reason.label, "Reason");
  assert.equal(byId.when.label, "when", "the id when there is no description");
  assert.equal(byId.stars.tag, "ui.rating");
  assert.deepEqual(byId.reason.ids, {
    input: "drift-reason",
    label: "drift-reason-label",
    text: "drift-reason-text",
    error: "drift-reason-error",
  });
  assert.deepEqual(
    byId.reason.choices.map((c) => [c.label, c.value, c.key]),
    [
      ["Say damaged", "damaged", '"damaged"'],
      ["Say late", "late", '"late"'],
    ],
  );
  assert.equal(m.needsSubmit, false, "the button group answers the screen");
  assert.equal(screenModel(waiting(everyKind.slice(2, 3))).needsSubmit, true);
  const other = screenModel(waiting([{ id: "x y", tags: tag("ui.free_text") }]), emptyDraft(), { idPrefix: "try-" });
  assert.equal(other.widgets[0].ids.input, "try-x_20y", "ids stay usable as ids and selectors");
});

const countryCity = [
  { id: "country", tags: tag("ui.dropdown"), possibleValues: values("fr", "de") },
  {
    id: "city",
    parentId: "country",
    tags: tag("ui.dropdown"),
    possibleDependentValues: { fr: values("paris", "lyon"), de: ["berlin"] },
  },
  {
    id: "street",
    parentId: "city",
    tags: tag("ui.dropdown"),
    possibleDependentValues: { paris: ["rivoli"], lyon: ["sala"] },
  },
];

test("a dependent dropdown's choices follow its parent, and a parent's change clears what it no longer allows, down the chain", () => {
  const st = waiting(countryCity);
  let d = emptyDraft();
  assert.deepEqual(screenModel(st, d).widgets[1].choices, [], "no parent value, no choices");
  d = setValue(st, d, "country", "fr");
  assert.deepEqual(
    screenModel(st, d).widgets[1].choices.map((c) => c.value),
    ["paris", "lyon"],
  );
  d = setValue(st, d, "city", "paris");
  d = setValue(st, d, "street", "rivoli");
  d = setValue(st, d, "country", "de");
  const m = screenModel(st, d);
  assert.deepEqual(
    m.widgets.map((w) => w.value),
    ["de", undefined, undefined],
  );
  assert.deepEqual(
    m.widgets[1].choices.map((c) => [c.label, c.value]),
    [["berlin", "berlin"]],
    "plain values are their own label",
  );
});

test("after Back the earlier answer fills the widgets and marks the earlier choice, dependents included", () => {
  const st = waiting(countryCity, { previousAnswer: { country: "fr", city: "lyon", gone: "x" } });
  const m = screenModel(st);
  assert.deepEqual(
    m.widgets.map((w) => w.value),
    ["fr", "lyon", undefined],
  );
  assert.deepEqual(
    m.widgets[1].choices.map((c) => [c.value, c.earlier]),
    [
      ["paris", false],
      ["lyon", true],
    ],
  );
  assert.deepEqual(
    answerOf(st, emptyDraft()).selectedOptions,
    { country: "fr", city: "lyon" },
    "the prefill is the answer",
  );
  const changed = setValue(st, emptyDraft(), "country", "de");
  assert.deepEqual(answerOf(st, changed).selectedOptions, { country: "de" }, "a changed parent drops the earlier city");
});

test("a refusal's details land on their widgets, a general one on the screen, and answering a widget clears its error", () => {
  const st = waiting(everyKind);
  const refusal = {
    message: "the answer does not fit the screen",
    details: [
      { widgetId: "reason", message: "required" },
      { widgetId: "when", message: '"soon" is not one of the allowed values' },
      { widgetId: "", message: 'node "form": the run\'s context would be too large' },
    ],
  };
  let d = { values: {}, refusal };
  let m = screenModel(st, d);
  const errors = Object.fromEntries(m.widgets.filter((w) => w.error).map((w) => [w.id, w.error]));
  assert.deepEqual(errors, { reason: "This field is required.", when: '"soon" is not one of the allowed values' });
  assert.equal(m.error, 'node "form": the run\'s context would be too large');
  assert.equal(firstError(m).id, "reason", "the focus goes to the first widget with an error");
  d = setValue(st, d, "reason", "late");
  m = screenModel(st, d);
  assert.equal(m.widgets.find((w) => w.id === "reason").error, undefined);
  assert.equal(m.widgets.find((w) => w.id === "when").error, '"soon" is not one of the allowed values');
  assert.equal(screenModel(st, { values: {}, refusal: { message: "stale" } }).error, "stale");
});

test("the answer a draft makes is checked as the workflow checks it: required widgets, closed choices, optional ones", () => {
  const st = waiting(everyKind);
  let d = emptyDraft();
  assert.deepEqual(
    answerOf(st, d).errors.map((e) => e.widgetId),
    ["reason", "action", "when", "stars"],
  );
  d = setValue(st, d, "reason", "stolen");
  d = setValue(st, d, "action", "confirm");
  d = setValue(st, d, "when", "2026-12-24");
  d = setValue(st, d, "stars", "5");
  d = setValue(st, d, "note", "");
  const { selectedOptions, errors } = answerOf(st, d);
  assert.deepEqual(errors, [{ widgetId: "reason", message: '"stolen" is not one of the allowed values' }]);
  assert.deepEqual(selectedOptions, { reason: "stolen", action: "confirm", when: "2026-12-24", stars: "5" });
  d = setValue(st, d, "reason", "late");
  assert.deepEqual(answerOf(st, d).errors, []);
});

test("a screen without Back says why: its first screen, a node in the way, its own rule, or screens let go", () => {
  const cases = [
    [{}, "first", "form"],
    [{ backBlockedBy: "fetch_order" }, "crossed", "fetch_order"],
    [{ backBlockedBy: "form" }, "forbidden", "form"],
    [{ backDropped: true }, "dropped", "form"],
  ];
  for (const [extra, reason, node] of cases) {
    const m = screenModel(waiting(everyKind, extra));
    assert.equal(m.canGoBack, false);
    assert.deepEqual([m.backBlocked.reason, m.backBlocked.node], [reason, node], JSON.stringify(extra));
    assert.ok(m.backBlocked.message.length > 10);
  }
  const m = screenModel(waiting(everyKind, { canGoBack: true }));
  assert.deepEqual([m.canGoBack, m.backBlocked], [true, undefined]);
});

test("an end, a timer and a run between states have no form", () => {
  const end = screenModel({
    workflowId: "wf-1",
    workflowStatus: "COMPLETED",
    seq: 4,
    disposition: { refundId: "rf-1" },
    links,
  });
  assert.deepEqual([end.phase, end.end.status, end.end.disposition], ["ended", "COMPLETED", { refundId: "rf-1" }]);
  const failed = screenModel({ workflowId: "wf-1", workflowStatus: "FAILED", seq: 4, errorMessage: "boom", links });
  assert.equal(failed.end.message, "boom");
  assert.equal(screenModel({ workflowId: "w", workflowStatus: "SCHEDULER_WAITING", seq: 2, links }).phase, "timer");
  assert.equal(screenModel({ workflowId: "w", workflowStatus: "RUNNING", seq: 0, links }).phase, "running");
});

test("a screen's actions send its seq, and the same answer twice with the same request id", async () => {
  const calls = [];
  const client = {
    resume: async (id, body, o) => calls.push(["resume", id, body, o]),
    back: async (id, o) => calls.push(["back", id, o]),
    executeNode: async (id, node, p, o) => calls.push(["execute", id, node, p, o]),
  };
  let n = 0;
  const act = screenActions(client, waiting(everyKind), () => `r${++n}`);
  await act.answer({ reason: "late" });
  await act.answer({ reason: "late" });
  await act.answer({ reason: "damaged" });
  await act.back();
  await act.back();
  await act.executeNode("verify_account", { accountNumber: "12345678" });
  await act.executeNode("verify_account", { accountNumber: "12345678" });
  assert.deepEqual(calls, [
    ["resume", "wf-1", { selectedOptions: { reason: "late" } }, { seq: 3, requestId: "r1" }],
    ["resume", "wf-1", { selectedOptions: { reason: "late" } }, { seq: 3, requestId: "r1" }],
    ["resume", "wf-1", { selectedOptions: { reason: "damaged" } }, { seq: 3, requestId: "r2" }],
    ["back", "wf-1", { seq: 3, requestId: "r3" }],
    ["back", "wf-1", { seq: 3, requestId: "r3" }],
    ["execute", "wf-1", "verify_account", { accountNumber: "12345678" }, { requestId: "r4" }],
    ["execute", "wf-1", "verify_account", { accountNumber: "12345678" }, { requestId: "r5" }],
  ]);
});

test("a node an instruction names as …Node is offered once, labelled by the part before Node", () => {
  const intro = (vars) => ({
    id: "intro",
    tags: tag("ui.static_text"),
    instructions: [{ templateId: "t", templateVariables: vars }],
  });
  const m = screenModel(
    waiting([
      intro({ verifyNode: "verify_account", other: "x" }),
      { ...intro({ verifyNode: "verify_account", lookupNode: 7 }), id: "again" },
      { id: "accountNumber", tags: tag("ui.free_text") },
    ]),
  );
  assert.deepEqual(m.nodes, [{ node: "verify_account", label: "Verify", widgetId: "intro" }]);
  assert.deepEqual(screenModel(waiting([{ id: "a", tags: tag("ui.free_text") }])).nodes, []);
});

test("a timed screen says when it stops waiting and how long it has left", () => {
  const m = screenModel(waiting([{ id: "a", tags: tag("ui.free_text") }], { expiresAt: "2026-12-04T10:00:00.000Z" }));
  assert.equal(m.expiresAt, "2026-12-04T10:00:00.000Z");
  const at = Date.parse(m.expiresAt);
  assert.deepEqual(timeLeft(m, at - 65_500), { text: "1:06", up: false });
  assert.deepEqual(timeLeft(m, at - 3_725_000), { text: "1:02:05", up: false });
  assert.deepEqual(timeLeft(m, at + 1), { text: "0:00", up: true });
  assert.equal(timeLeft(screenModel(waiting([])), at), undefined);
});

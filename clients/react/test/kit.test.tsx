// The kit in a DOM (happy-dom), over an in-memory client: each widget, the hook's answers and
// their refusals, Back with prefill, node runs and pushed states. The browser tests drive the
// same kit against a real gateway.

import { afterEach, expect, test } from "vitest";
import { act, cleanup, fireEvent, render, screen as dom, waitFor } from "@testing-library/react";
import { DriftScreen, useDriftFlow, type FlowTarget, type WidgetProps, type WidgetRegistry } from "../src/index.js";
import type { DriftClient } from "@drift/client";
import { choices, end, fakeClient, refusal, screen, tag } from "./fake.js";

afterEach(cleanup);

function App(p: { client: DriftClient; target?: FlowTarget; widgets?: WidgetRegistry; check?: boolean }) {
  const flow = useDriftFlow(p.client, p.target ?? { workflow: "refund", mode: "sync", autoStart: true }, {
    templates: { hello: "Hello {name}." },
    checkBeforeSending: p.check,
  });
  return <DriftScreen flow={flow} widgets={p.widgets} />;
}

const reasonScreen = (seq = 1, extra = {}) =>
  screen(
    seq,
    "refund_reason",
    [
      {
        id: "intro",
        tags: tag("ui.static_text"),
        instructions: [{ templateId: "hello", templateVariables: { name: "Ada" } }],
      },
      { id: "reason", description: "Reason", tags: tag("ui.dropdown"), possibleValues: choices("damaged", "late") },
      { id: "note", description: "A note", tags: tag("ui.free_text"), required: false },
    ],
    extra,
  );
const confirmScreen = (seq = 2, extra = {}) =>
  screen(
    seq,
    "confirm",
    [{ id: "action", tags: tag("ui.button"), possibleValues: choices("confirm", "cancel") }],
    extra,
  );

test("a screen renders every widget labelled, marks the required ones and puts the focus on the first control", async () => {
  const { client } = fakeClient([
    screen(1, "everything", [
      {
        id: "intro",
        tags: tag("ui.static_text"),
        instructions: [{ templateId: "hello", templateVariables: { name: "Ada" } }],
      },
      { id: "banner", description: "All set", tags: tag("ui.complete") },
      { id: "reason", description: "Reason", tags: tag("ui.dropdown"), possibleValues: choices("damaged") },
      { id: "note", description: "A note", tags: tag("ui.free_text"), required: false },
      { id: "when", description: "When", tags: tag("ui.date_picker") },
      { id: "stars", description: "Stars", tags: tag("ui.rating") },
      { id: "go", tags: tag("ui.button"), possibleValues: choices("yes") },
    ]),
  ]);
  render(<App client={client} />);
  const reason = await dom.findByLabelText(/Reason/);
  expect(reason.tagName).toBe("SELECT");
  expect(reason.getAttribute("aria-required")).toBe("true");
  await waitFor(() => expect(document.activeElement).toBe(reason));
  expect(dom.getByText("Hello Ada.")).toBeTruthy();
  expect(dom.getByText("All set").getAttribute("role")).toBe("status");
  expect(dom.getByLabelText("A note").getAttribute("aria-required")).toBeNull();
  expect((dom.getByLabelText(/When/) as HTMLInputElement).type).toBe("date");
  expect(dom.getByLabelText(/Stars \(ui.rating\)/).tagName).toBe("INPUT");
  expect(dom.getByRole("group", { name: "go" })).toBeTruthy();
  expect(dom.getByRole("button", { name: "YES" })).toBeTruthy();
  // A button group answers the screen: no separate submit button.
  expect(dom.queryByRole("button", { name: "Continue" })).toBeNull();
  for (const id of ["reason", "note", "when", "stars"]) {
    const control = document.getElementById(`drift-${id}`)!;
    expect(control.getAttribute("aria-describedby")).toContain(`drift-${id}-error`);
  }
});

test("a registry replaces a widget by its tag and adds one for a tag the kit does not know", async () => {
  const Stars = (p: WidgetProps) => (
    <button type="button" onClick={() => p.onChange(5)} aria-label={`${p.widget.label}: five stars`}>
      ★★★★★ {String(p.widget.value ?? "")}
    </button>
  );
  const Shout = (p: WidgetProps) => <p>{p.widget.text.toUpperCase()}</p>;
  const { client } = fakeClient([
    screen(1, "rate", [
      {
        id: "intro",
        tags: tag("ui.static_text"),
        instructions: [{ templateId: "hello", templateVariables: { name: "Ada" } }],
      },
      { id: "stars", description: "Rating", tags: tag("ui.rating") },
    ]),
  ]);
  render(<App client={client} widgets={{ "ui.rating": Stars, "ui.static_text": Shout }} />);
  fireEvent.click(await dom.findByRole("button", { name: "Rating: five stars" }));
  await dom.findByText(/★★★★★ 5/);
  expect(dom.getByText("HELLO ADA.")).toBeTruthy();
});

test("a dependent dropdown offers its parent's choices and lets go of a value the new parent does not have", async () => {
  const { client } = fakeClient([
    screen(1, "where", [
      { id: "country", description: "Country", tags: tag("ui.dropdown"), possibleValues: choices("fr", "jp") },
      {
        id: "city",
        description: "City",
        parentId: "country",
        tags: tag("ui.dropdown"),
        possibleDependentValues: { fr: choices("paris"), jp: choices("tokyo", "osaka") },
      },
    ]),
  ]);
  render(<App client={client} />);
  const country = (await dom.findByLabelText(/Country/)) as HTMLSelectElement;
  const city = dom.getByLabelText(/City/) as HTMLSelectElement;
  expect(city.options.length).toBe(1);
  fireEvent.change(country, { target: { value: '"jp"' } });
  await waitFor(() => expect([...city.options].map((o) => o.text)).toEqual(["— choose —", "TOKYO", "OSAKA"]));
  fireEvent.change(city, { target: { value: '"osaka"' } });
  await waitFor(() => expect(city.value).toBe('"osaka"'));
  fireEvent.change(country, { target: { value: '"fr"' } });
  await waitFor(() => expect([...city.options].map((o) => o.text)).toEqual(["— choose —", "PARIS"]));
  expect(city.value).toBe("");
});

test("a required widget left empty is refused before sending: its error is tied to it, announced and focused", async () => {
  const { client, calls } = fakeClient([reasonScreen()]);
  render(<App client={client} />);
  await dom.findByLabelText(/Reason/);
  fireEvent.click(dom.getByRole("button", { name: "Continue" }));
  const reason = dom.getByLabelText(/Reason/);
  await waitFor(() => expect(reason.getAttribute("aria-invalid")).toBe("true"));
  const error = document.getElementById("drift-reason-error")!;
  expect(error.textContent).toBe("This field is required.");
  expect(error.getAttribute("role")).toBe("alert");
  await waitFor(() => expect(document.activeElement).toBe(reason));
  expect(calls.map((c) => c.op)).toEqual(["start"]);
});

test("the workflow's 422 lands on its widget, and the value entered stays", async () => {
  const { client, calls } = fakeClient([
    reasonScreen(),
    refusal(422, "invalid_answer", [{ widgetId: "reason", message: '"soon" is not one of the allowed values' }]),
  ]);
  render(<App client={client} check={false} />);
  const note = await dom.findByLabelText("A note");
  fireEvent.change(note, { target: { value: "hello" } });
  fireEvent.click(dom.getByRole("button", { name: "Continue" }));
  await waitFor(() =>
    expect(document.getElementById("drift-reason-error")!.textContent).toMatch(/not one of the allowed/),
  );
  expect(calls[1].op).toBe("resume");
  expect(calls[1].args[1]).toEqual({ selectedOptions: { note: "hello" } });
  await waitFor(() => expect(document.activeElement).toBe(dom.getByLabelText(/Reason/)));
  expect((dom.getByLabelText("A note") as HTMLInputElement).value).toBe("hello");
});

test("an answer carries the screen's seq and one request id, the same when pressed again after a lost reply", async () => {
  const { client, calls } = fakeClient([confirmScreen(4), refusal(0, "network"), end(5, "Refund issued")]);
  render(<App client={client} />);
  fireEvent.click(await dom.findByRole("button", { name: "CONFIRM" }));
  await waitFor(() => expect(document.querySelector(".drift-flow-error")?.textContent).toBe("refused: network"));
  expect(calls.length).toBe(2);
  await waitFor(() => expect((dom.getByRole("button", { name: "CONFIRM" }) as HTMLButtonElement).disabled).toBe(false));
  fireEvent.click(dom.getByRole("button", { name: "CONFIRM" }));
  await dom.findByText("COMPLETED: Refund issued");
  const [first, again] = calls.filter((c) => c.op === "resume").map((c) => c.args);
  expect(first[1]).toEqual({ selectedOptions: { action: "confirm" } });
  expect((first[2] as { seq: number }).seq).toBe(4);
  expect((again[2] as { requestId: string }).requestId).toBe((first[2] as { requestId: string }).requestId);
});

test("Back returns to the earlier screen with its answer prefilled, and says why where it cannot", async () => {
  const { client, calls } = fakeClient([
    confirmScreen(2, { canGoBack: true }),
    reasonScreen(3, { previousAnswer: { reason: "late", note: "twice" } }),
  ]);
  render(<App client={client} />);
  fireEvent.click(await dom.findByRole("button", { name: "Back" }));
  const reason = (await dom.findByLabelText(/Reason/)) as HTMLSelectElement;
  expect(reason.value).toBe('"late"');
  expect([...reason.options].find((o) => o.selected)!.text).toBe("LATE (your earlier answer)");
  expect((dom.getByLabelText("A note") as HTMLInputElement).value).toBe("twice");
  expect((calls[1].args[1] as { seq: number }).seq).toBe(2);

  cleanup();
  const blocked = fakeClient([confirmScreen(2, { backBlockedBy: "issue_refund" })]);
  render(<App client={blocked.client} />);
  await dom.findByText(/Back is not possible: issue_refund ran before this screen and cannot be undone/);
  expect(dom.queryByRole("button", { name: "Back" })).toBeNull();
});

test("a node the screen offers runs with the answers entered so far, and its result is announced", async () => {
  const { client, calls } = fakeClient(
    [
      screen(1, "bank_account", [
        {
          id: "intro",
          tags: tag("ui.static_text"),
          instructions: [{ templateId: "bank.intro", templateVariables: { verifyNode: "verify_account" } }],
        },
        { id: "accountNumber", description: "Account number", tags: tag("ui.free_text") },
        { id: "save", tags: tag("ui.button"), possibleValues: choices("save") },
      ]),
    ],
    { node: "verify_account", status: "SUCCESS", response: { valid: true } },
  );
  render(<App client={client} />);
  fireEvent.change(await dom.findByLabelText(/Account number/), { target: { value: "12345678" } });
  fireEvent.click(dom.getByRole("button", { name: "Verify" }));
  await waitFor(() =>
    expect(document.querySelector('[data-node="verify_account"]')!.textContent).toMatch(/SUCCESS \{"valid":true\}/),
  );
  const run = calls.find((c) => c.op === "executeNode")!;
  expect(run.args.slice(0, 3)).toEqual(["wf-1", "verify_account", { accountNumber: "12345678" }]);
});

test("live, pushed states replace the screen in order and an older one is ignored", async () => {
  const { client, follows } = fakeClient([reasonScreen(1)]);
  render(<App client={client} target={{ workflow: "refund", mode: "live", autoStart: true }} />);
  await dom.findByLabelText(/Reason/);
  await waitFor(() => expect(follows.length).toBe(1));
  expect(follows[0].since).toBe(1);
  act(() => follows[0].push(confirmScreen(2)));
  await dom.findByRole("button", { name: "CONFIRM" });
  act(() => follows[0].push(reasonScreen(1)));
  expect(dom.queryByLabelText(/Reason/)).toBeNull();
  act(() => follows[0].push(end(3, "Refund issued")));
  await dom.findByText("COMPLETED: Refund issued");
  await waitFor(() => expect(follows[0].closed).toBe(true));
});

test("sync, the flow listens only between screens: a timer's state, until the next screen", async () => {
  const timer = { ...end(1, ""), workflowStatus: "SCHEDULER_WAITING", disposition: undefined } as never;
  const { client, follows } = fakeClient([timer]);
  render(<App client={client} />);
  await dom.findByText(/Waiting on a timer/);
  await waitFor(() => expect(follows.length).toBe(1));
  act(() => follows[0].push(reasonScreen(2)));
  await dom.findByLabelText(/Reason/);
  await waitFor(() => expect(follows[0].closed).toBe(true));
});

test("an answer to a screen the run has left shows where the run is now", async () => {
  const { client, calls } = fakeClient([confirmScreen(2), refusal(409, "stale_screen"), end(4, "Refund issued")]);
  render(<App client={client} />);
  fireEvent.click(await dom.findByRole("button", { name: "CANCEL" }));
  await dom.findByText("COMPLETED: Refund issued");
  expect(calls.map((c) => c.op)).toEqual(["start", "resume", "get"]);
});

test("a refused start is shown, and nothing else", async () => {
  const { client } = fakeClient([refusal(404, "not_found")]);
  render(<App client={client} />);
  expect((await dom.findByRole("alert")).textContent).toBe("refused: not_found");
});

test("a timed screen counts down the time it has left, and says when it is up", async () => {
  const soon = new Date(Date.now() + 1_500).toISOString();
  const { client } = fakeClient([confirmScreen(1, { expiresAt: soon })]);
  render(<App client={client} />);
  const timer = await dom.findByRole("timer");
  expect(timer.textContent).toMatch(/^Time left to answer: 0:0[12]$/);
  const up = await dom.findByText("Time is up: the run goes on by itself.", {}, { timeout: 3000 });
  expect(up.getAttribute("role")).toBe("status");
  expect(dom.queryByRole("timer")).toBeNull();
});

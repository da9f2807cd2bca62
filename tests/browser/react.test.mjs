// Browser tests of the screen kit through examples/react: real chromium, real `drift dev`
// (DRIFT_DEMO_URL), the example served by esbuild (DRIFT_EXAMPLE_URL). A person with only a
// keyboard runs the examples; axe-core finds no violation on any screen they see.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SHOTS, accessible, useChromium } from "./chromium.mjs";
import { GATEWAY, api } from "./api.mjs";

const EXAMPLE = process.env.DRIFT_EXAMPLE_URL || "http://127.0.0.1:5173";
const chromium = useChromium();

async function open() {
  const page = await chromium.get().newPage({ viewport: { width: 1000, height: 800 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  // The browser logs every refused call (a 422 the test asks for): those are not the page's errors.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(new Error(m.text()));
  });
  page.errors = errors;
  await page.goto(EXAMPLE + "/");
  await page.locator("#start").waitFor();
  return page;
}


/** The element with the focus: its id, or its tag and text. */
const focused = (page) =>
  page.evaluate(() => {
    const e = document.activeElement;
    return e?.id || `${e?.tagName.toLowerCase()} ${e?.textContent?.trim()}`;
  });

/** Waits until the focus is on `want` (a screen takes it once the call that brought it ends). */
async function focusIs(page, want, why = `the focus on ${want}`) {
  try {
    await page.waitForFunction(
      (want) => {
        const e = document.activeElement;
        return (e?.id || `${e?.tagName.toLowerCase()} ${e?.textContent?.trim()}`) === want;
      },
      want,
      { timeout: 5000 },
    );
  } catch {
    assert.fail(`${why}: it is on ${await focused(page)}`);
  }
}

async function tabTo(page, want, { back = false, limit = 16 } = {}) {
  for (let i = 0; i < limit; i++) {
    await page.keyboard.press(back ? "Shift+Tab" : "Tab");
    if ((await focused(page)) === want) return;
  }
  assert.fail(`Tab never reached ${want} (at ${await focused(page)})`);
}

async function finish(page) {
  assert.deepEqual(page.errors.map(String), [], "no error on the page");
  await page.close();
}


/** Stores, publishes and activates a workflow definition. */
async function publish(def) {
  assert.equal((await api("POST", "/v3/definitions", def)).status, 201);
  assert.equal((await api("POST", `/v3/definitions/${def.id}/publish`)).status, 200);
  assert.equal((await api("POST", `/v3/definitions/${def.id}/activate`, { version: 1 })).status, 200);
}

test("refund end to end with only the keyboard: a missing reason refused on its widget, then confirmed", async () => {
  const page = await open();
  await tabTo(page, "workflow");
  await tabTo(page, "start");
  await page.keyboard.press("Enter");
  const reason = page.locator('form[data-layout="refund_reason"]');
  await reason.waitFor();
  await page.getByText("Order o-1001: 42.5 EUR. What went wrong?").waitFor();
  await focusIs(page, "drift-reason", "a new screen puts the focus on its first control");
  await accessible(page, "the refund reason screen");
  await page.screenshot({ path: SHOTS + "react-refund-1-reason.png", fullPage: true });

  await tabTo(page, "button Continue");
  await page.keyboard.press("Enter");
  await page.locator("#drift-reason-error").getByText("This field is required.").waitFor();
  await focusIs(page, "drift-reason", "the focus goes to the first widget in error");
  assert.equal(await page.getAttribute("#drift-reason", "aria-invalid"), "true");
  assert.match(await page.getAttribute("#drift-reason", "aria-describedby"), /drift-reason-error/);
  await accessible(page, "the refund reason screen with an error");
  await page.screenshot({ path: SHOTS + "react-refund-2-error.png", fullPage: true });

  await page.keyboard.press("ArrowDown");
  await page.waitForFunction(() => document.getElementById("drift-reason").value === '"damaged"');
  await page.locator("#drift-reason-error:empty").waitFor({ state: "attached" });
  await tabTo(page, "drift-comment");
  await page.keyboard.type("box was crushed");
  await tabTo(page, "button Continue");
  await page.keyboard.press("Enter");
  await page.locator('form[data-layout="refund_confirm"]').waitFor();
  await page.getByText("Refund 42.5 for the reason “damaged”?").waitFor();
  await focusIs(page, "button Confirm refund");
  await accessible(page, "the refund confirmation screen");
  await page.screenshot({ path: SHOTS + "react-refund-3-confirm.png", fullPage: true });

  await page.keyboard.press("Enter");
  const done = page.getByTestId("drift-end");
  await done.waitFor();
  assert.equal(await done.textContent(), "COMPLETED: Refund issued");
  await accessible(page, "the refund's end");
  await page.screenshot({ path: SHOTS + "react-refund-4-done.png", fullPage: true });
  await finish(page);
});

test("bank_account over a WebSocket with only the keyboard: the verify node on the same screen, then saved", async () => {
  const page = await open();
  await tabTo(page, "workflow");
  await page.keyboard.press("Control+A");
  await page.keyboard.type("bank_account");
  await tabTo(page, "delivery");
  await page.keyboard.press("ArrowDown");
  await page.waitForFunction(() => document.getElementById("delivery").value === "ws");
  await tabTo(page, "start");
  await page.keyboard.press("Enter");
  await page.locator('form[data-layout="bank_account"]').waitFor();
  await focusIs(page, "drift-accountNumber");
  await page.keyboard.type("1234");
  await tabTo(page, "button Verify");
  await page.keyboard.press("Enter");
  await page.locator('[data-node="verify_account"]').getByText("✗ not a valid account").waitFor();
  await tabTo(page, "drift-accountNumber", { back: true });
  await page.keyboard.press("End");
  await page.keyboard.type("5678");
  await tabTo(page, "button Verify");
  await page.keyboard.press("Enter");
  await page.locator('[data-node="verify_account"]').getByText("✓ valid — Drift Savings Bank").waitFor();
  await accessible(page, "the bank account screen after Verify");
  await page.screenshot({ path: SHOTS + "react-bank-1-verified.png", fullPage: true });
  await page.keyboard.press("Shift+Tab");
  await focusIs(page, "button Save account");
  await page.keyboard.press("Enter");
  const done = page.getByTestId("drift-end");
  await done.waitFor();
  assert.equal(await done.textContent(), "COMPLETED: Bank account saved");
  await page.screenshot({ path: SHOTS + "react-bank-2-saved.png", fullPage: true });
  await finish(page);
});

test("checked only by the workflow, a refused answer's 422 is shown on its widget", async () => {
  const page = await open();
  await page.click("#check-first");
  await page.click("#start");
  await page.locator('form[data-layout="refund_reason"]').waitFor();
  const refused = page.waitForResponse((r) => r.url().includes("/v3/workflow/resume/") && r.status() === 422);
  await page.getByRole("button", { name: "Continue" }).click();
  await refused;
  await page.locator("#drift-reason-error").getByText("This field is required.").waitFor();
  await focusIs(page, "drift-reason");
  await accessible(page, "a screen showing the workflow's 422");
  await finish(page);
});

test("a dependent dropdown follows its parent, and Back returns with both earlier answers selected", async () => {
  const id = `react_dep_${Date.now().toString(36)}`;
  const country = { id: "country", description: "Country", tags: { values: ["ui.dropdown"] },
    possibleValues: [{ displayValue: "France", value: "fr" }, { displayValue: "Japan", value: "jp" }] };
  const city = { id: "city", description: "City", parentId: "country", tags: { values: ["ui.dropdown"] },
    possibleDependentValues: { fr: [{ displayValue: "Paris", value: "paris" }],
      jp: [{ displayValue: "Tokyo", value: "tokyo" }, { displayValue: "Osaka", value: "osaka" }] } };
  const ok = { id: "ok", description: "Sure?", tags: { values: ["ui.button"] }, possibleValues: [{ displayValue: "Yes", value: "yes" }] };
  const def = { id, startNode: "where", states: {
    where: { node: { type: "INSTRUCTION", layoutId: "where", inputOptions: [country, city] }, nextNode: "sure" },
    sure: { node: { type: "INSTRUCTION", layoutId: "sure", inputOptions: [ok] }, nextNode: "done" },
    done: { node: { type: "SUCCESS", disposition: { message: "Done" } } } } };
  await publish(def);

  const page = await open();
  await page.fill("#workflow", id);
  await page.click("#start");
  const where = page.locator('form[data-layout="where"]');
  await where.waitFor();
  assert.deepEqual(await page.locator("#drift-city option").allTextContents(), ["— choose —"]);
  await page.selectOption("#drift-country", { label: "Japan" });
  await page.waitForFunction(() => document.querySelectorAll("#drift-city option").length === 3);
  await page.selectOption("#drift-city", { label: "Osaka" });
  await accessible(page, "a screen with a dependent dropdown");
  await page.screenshot({ path: SHOTS + "react-dependent.png", fullPage: true });
  await where.getByRole("button", { name: "Continue" }).click();
  await page.locator('form[data-layout="sure"]').waitFor();
  await page.getByRole("button", { name: "Back" }).click();
  await where.waitFor();
  await page.waitForFunction(() => document.getElementById("drift-city").value === '"osaka"');
  assert.equal(await page.inputValue("#drift-country"), '"jp"');
  assert.equal(await page.locator("#drift-city option:checked").textContent(), "Osaka (your earlier answer)");
  await page.screenshot({ path: SHOTS + "react-back-prefilled.png", fullPage: true });
  await finish(page);
});

test("a dropped WebSocket is caught up: the screen answered elsewhere meanwhile arrives by itself", async () => {
  const page = await open();
  const sockets = [];
  await page.routeWebSocket(/\/v3\/ws/, (ws) => {
    ws.connectToServer();
    sockets.push(ws);
  });
  await page.selectOption("#delivery", "ws");
  await page.click("#start");
  await page.locator('form[data-layout="refund_reason"]').waitFor();
  await page.waitForFunction(() => /seq \d+ · screen/.test(document.querySelector('[data-testid="run"]')?.textContent ?? ""));
  const workflowId = (await page.getByTestId("run").textContent()).split(" · ")[0];
  while (sockets.length === 0) await new Promise((r) => setTimeout(r, 50));
  await sockets[0].close({ code: 1011, reason: "dropped by the test" });
  const answered = await api("PUT", `/v3/workflow/resume/${encodeURIComponent(workflowId)}`,
    { viewResponse: { selectedOptions: { reason: "wrong_item" } } });
  assert.equal(answered.status, 200);
  await page.locator('form[data-layout="refund_confirm"]').waitFor();
  assert.ok(sockets.length >= 2, "the page opened a second socket");
  await page.getByText("Refund 42.5 for the reason “wrong_item”?").waitFor();
  await finish(page);
});

test("in sync mode, monthly_report's timer is waited out and its end arrives", async () => {
  const page = await open();
  await page.fill("#workflow", "monthly_report");
  await page.selectOption("#delivery", "sync");
  await page.click("#start");
  await page.getByText("Waiting on a timer… the next screen will appear by itself.").waitFor();
  await accessible(page, "a timer's wait");
  const done = page.getByTestId("drift-end");
  await done.waitFor({ timeout: 30_000 });
  assert.equal(await done.textContent(), "COMPLETED");
  await finish(page);
});

test("a timed screen counts down, and when nobody answers the run goes on by itself", async () => {
  const id = `react_timed_${Date.now().toString(36)}`;
  const ok = { id: "ok", description: "Still there?", tags: { values: ["ui.button"] },
    possibleValues: [{ displayValue: "Yes", value: "yes" }] };
  await publish({ id, startNode: "ask", states: {
    ask: { node: { type: "INSTRUCTION", layoutId: "ask", timeoutMs: 4000, onTimeout: "late", inputOptions: [ok] },
      nextNode: "done" },
    done: { node: { type: "SUCCESS", disposition: { message: "Answered" } } },
    late: { node: { type: "SUCCESS", disposition: { message: "Nobody answered in time" } } } } });
  const page = await open();
  await page.fill("#workflow", id);
  await page.click("#start");
  const timer = page.getByRole("timer");
  await timer.waitFor();
  assert.match(await timer.textContent(), /^Time left to answer: 0:0[1-4]$/);
  await accessible(page, "a timed screen");
  await page.screenshot({ path: SHOTS + "react-timed.png", fullPage: true });
  const done = page.getByTestId("drift-end");
  await done.waitFor({ timeout: 15_000 });
  assert.equal(await done.textContent(), "COMPLETED: Nobody answered in time");
  await finish(page);
});

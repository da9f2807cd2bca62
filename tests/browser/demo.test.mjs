// Browser test of the demo page: real chromium, real `drift dev` (URL in DRIFT_DEMO_URL).
import { test } from "node:test";
import assert from "node:assert/strict";
import { SHOTS, accessible, useChromium } from "./chromium.mjs";

const BASE = process.env.DRIFT_DEMO_URL || "http://127.0.0.1:8080";
const chromium = useChromium();

async function open(width = 1280) {
  const page = await chromium.get().newPage({ viewport: { width, height: 900 } });
  page.on("pageerror", (e) => { throw e; });
  await page.goto(BASE + "/");
  await page.getByText("live: connected").waitFor();
  return page;
}

test("the refund flow completes by clicking through its screens, each pushed over the WebSocket", async () => {
  const page = await open();
  await page.selectOption("#workflow", "refund");
  await page.selectOption("#mode", "ws");
  await page.click("#start");
  await page.locator('form[data-layout="refund_reason"]').waitFor();
  await page.evaluate(() => { window.__noReload = "still here"; });
  await page.screenshot({ path: SHOTS + "refund-1-reason.png", fullPage: true });

  // A missing required answer shows the error next to its widget.
  await page.click('form[data-layout="refund_reason"] button[type=submit]');
  await page.locator("#w-reason-error").getByText("required").waitFor();
  await page.screenshot({ path: SHOTS + "refund-2-field-error.png", fullPage: true });

  await page.selectOption("#w-reason", { label: "Arrived damaged" });
  await page.click('form[data-layout="refund_reason"] button[type=submit]');
  await page.locator('form[data-layout="refund_confirm"]').waitFor();
  assert.equal(await page.evaluate(() => window.__noReload), "still here", "the next screen arrived without a reload");
  await page.screenshot({ path: SHOTS + "refund-3-confirm.png", fullPage: true });

  await page.getByRole("button", { name: "Confirm refund" }).click();
  const banner = page.getByTestId("complete");
  await banner.waitFor();
  assert.match(await banner.textContent(), /COMPLETED: Refund issued/);
  assert.ok(await page.locator("#timeline li.COMPLETED").count() >= 1);
  await page.screenshot({ path: SHOTS + "refund-4-completed.png", fullPage: true });
  await page.close();
});

test("after a dropped socket the page reconnects by itself and catches up from since", async () => {
  const page = await open();
  await page.selectOption("#workflow", "refund");
  await page.click("#start");
  await page.locator('form[data-layout="refund_reason"]').waitFor();
  await page.locator("#wfid", { hasText: "workflow " }).waitFor();
  // Drop the socket and answer the screen while it is down (over plain HTTP, outside the page's view).
  const status = await page.evaluate(async () => {
    window.driftDemo.dropSocket();
    const id = document.getElementById("wfid").textContent.replace(/^workflow /, "");
    const r = await fetch(`/v3/workflow/resume/${encodeURIComponent(id)}`, {
      method: "PUT",
      headers: { "content-type": "application/json", authorization: `Bearer ${window.DRIFT_DEMO.apiKey}` },
      body: JSON.stringify({ viewResponse: { selectedOptions: { reason: "wrong_item" } } }),
    });
    return r.status;
  });
  assert.equal(status, 200);
  await page.getByText("live: reconnecting").waitFor().catch(() => {});
  await page.locator('form[data-layout="refund_confirm"]').waitFor();
  await page.getByText("live: connected").waitFor();
  await page.close();
});

test("bank account: the disconnected verify call answers on the same screen", async () => {
  const page = await open();
  await page.selectOption("#workflow", "bank_account");
  await page.click("#start");
  await page.locator('form[data-layout="bank_account"]').waitFor();
  await page.fill("#w-accountNumber", "123");
  await page.getByRole("button", { name: "Verify" }).click();
  await page.getByTestId("verify-result").getByText("not a valid account").waitFor();
  await page.fill("#w-accountNumber", "12345678");
  await page.getByRole("button", { name: "Verify" }).click();
  await page.getByTestId("verify-result").getByText("valid — Drift Savings Bank").waitFor();
  assert.equal(await page.locator('form[data-layout="bank_account"]').count(), 1, "still the same screen");
  await page.screenshot({ path: SHOTS + "bank-verify.png", fullPage: true });
  await page.getByRole("button", { name: "Save account" }).click();
  await page.getByTestId("complete").waitFor();
  await page.close();
});

test("async mode shows webhook deliveries with verified signatures, on a phone-width screen", async () => {
  const page = await open(390);
  await page.selectOption("#workflow", "monthly_report");
  await page.selectOption("#mode", "async");
  await page.click("#start");
  await page.locator("#hooks li.COMPLETED").waitFor({ timeout: 30000 });
  assert.match(await page.locator("#hooks").textContent(), /signature ✓/);
  await page.getByTestId("complete").waitFor();
  await page.screenshot({ path: SHOTS + "async-phone.png", fullPage: true });
  await page.close();
});

test("the running workflow's graph highlights the node of each state and the path taken", async () => {
  const page = await open();
  await page.selectOption("#workflow", "refund");
  await page.selectOption("#mode", "ws");
  await page.click("#start");
  await page.locator('form[data-layout="refund_reason"]').waitFor();
  // The first state: fetch_order (HTTP) → check_amount (branch) → the refund_reason screen.
  await page.locator('#graph g.node.current[data-node="refund_reason"]').waitFor();
  for (const n of ["fetch_order", "check_amount"]) {
    assert.equal(await page.locator(`#graph g.node.visited[data-node="${n}"]`).count(), 1, `${n} is on the path`);
  }
  assert.ok(await page.locator('#graph g.edge.visited[data-from="fetch_order"][data-to="check_amount"]').count() >= 1);
  assert.equal(await page.locator('#graph g.node.visited[data-node="manual_review"]').count(), 0, "a branch not taken stays dark");
  await page.screenshot({ path: SHOTS + "graph-1-reason.png", fullPage: true });

  await page.selectOption("#w-reason", { label: "Arrived damaged" });
  await page.click('form[data-layout="refund_reason"] button[type=submit]');
  await page.locator('#graph g.node.current[data-node="confirm"]').waitFor();
  assert.equal(await page.locator("#graph g.node.current").count(), 1, "one current node");
  await page.screenshot({ path: SHOTS + "graph-2-confirm.png", fullPage: true });

  await page.getByRole("button", { name: "Confirm refund" }).click();
  await page.locator('#graph g.node.current[data-node="refunded"]').waitFor();
  assert.equal(await page.locator('#graph g.node.visited[data-node="issue_refund"]').count(), 1);
  await page.screenshot({ path: SHOTS + "graph-3-completed.png", fullPage: true });
  await page.close();
});

test("the definition editor completes from the schema and marks a misspelt field where it is", async () => {
  const page = await open();
  await page.click("#tab-defs");
  await page.click("#def-new");
  await page.locator("#def-json .cm-content").waitFor();
  // Misspell the new screen's layoutId: the schema (served by the gateway) refuses it.
  await page.evaluate(() => {
    const d = JSON.parse(document.getElementById("def-json").value);
    const n = d.states.ask.node;
    n.layoutID = n.layoutId;
    delete n.layoutId;
    document.getElementById("def-json").value = JSON.stringify(d, null, 2);
  });
  const marked = page.locator("#def-json .cm-lintRange-error");
  await marked.first().waitFor();
  await marked.first().hover(); // the marked text's tooltip says what is wrong
  const tip = page.locator(".cm-tooltip-lint");
  await tip.waitFor();
  assert.match(await tip.textContent(), /layoutID/);
  await page.screenshot({ path: SHOTS + "editor-1-schema-error.png", fullPage: true });

  // Completion: inside a node, Ctrl-Space offers the fields its type allows.
  await page.evaluate(() => {
    const box = document.getElementById("def-json");
    const text = '{"id": "x", "startNode": "a", "states": {"a": {"node": {"type": "INSTRUCTION", ""}}}}';
    box.value = text;
    const at = text.indexOf('""') + 1;
    box.editorView.dispatch({ selection: { anchor: at } });
    box.editorView.focus();
  });
  await page.keyboard.press("Control+Space");
  const options = page.locator(".cm-tooltip-autocomplete li");
  await options.first().waitFor();
  const offered = await options.allTextContents();
  assert.ok(offered.some((o) => o.includes("layoutId")), offered.join(" | "));
  await page.screenshot({ path: SHOTS + "editor-2-completion.png", fullPage: true });
  await page.close();
});

test("the definitions tab shows a validation error next to its node, then publishes, activates and starts a new version", async () => {
  const page = await open();
  await page.click("#tab-defs");
  await page.locator('#def-list button[data-def="refund"]').click();
  await page.locator('#def-graph g.node[data-node="confirm"]').waitFor();
  // Break the SNAPSHOT: the confirm screen now goes nowhere.
  await page.evaluate(() => {
    const d = JSON.parse(document.getElementById("def-json").value);
    d.states.confirm.nextNode = "nowhere";
    document.getElementById("def-json").value = JSON.stringify(d, null, 2);
  });
  await page.click("#def-save");
  const mark = page.locator('#def-graph g.node.invalid[data-node="confirm"] text.node-error');
  await mark.waitFor();
  assert.match(await mark.textContent(), /nextNode/);
  assert.match(await page.locator('#def-errors li[data-node-error="confirm"]').textContent(), /confirm › nextNode: names no state/);
  await page.screenshot({ path: SHOTS + "definitions-1-invalid.png", fullPage: true });

  // A new definition: save, publish, activate, start it.
  const id = `ui_${Date.now().toString(36)}`;
  await page.click("#def-new");
  await page.evaluate((id) => {
    const d = JSON.parse(document.getElementById("def-json").value);
    d.id = id;
    d.states.ask.node.layoutId = "from_the_editor";
    document.getElementById("def-json").value = JSON.stringify(d, null, 2);
  }, id);
  await page.click("#def-save");
  await page.locator(`#def-list button[data-def="${id}"]`).waitFor();
  await page.click("#def-publish");
  await page.getByText("Published as version 1.").waitFor();
  await page.click("#def-activate");
  await page.getByText("Version 1 is ACTIVE").waitFor();
  await page.screenshot({ path: SHOTS + "definitions-2-published.png", fullPage: true });
  await page.click("#def-start");
  await page.locator('form[data-layout="from_the_editor"]').waitFor();
  await page.locator('#graph g.node.current[data-node="ask"]').waitFor();
  await page.screenshot({ path: SHOTS + "definitions-3-started.png", fullPage: true });
  await page.close();
});

test("Back on refund's confirm screen returns to the reason with its answer, and forward goes on", async () => {
  const page = await open();
  await page.selectOption("#workflow", "refund");
  await page.selectOption("#mode", "ws");
  await page.click("#start");
  const reason = page.locator('form[data-layout="refund_reason"]');
  await reason.waitFor();
  // The order was fetched before this screen: no Back, and the page says why.
  assert.equal(await page.getByTestId("back").count(), 0);
  assert.match(await page.getByTestId("no-back").textContent(), /fetch_order ran before this screen and cannot be undone/);
  await page.selectOption("#w-reason", { label: "Arrived damaged" });
  await reason.locator("button[type=submit]").click();
  await page.locator('form[data-layout="refund_confirm"]').waitFor();
  await page.screenshot({ path: SHOTS + "back-1-confirm.png", fullPage: true });

  await page.getByTestId("back").click();
  await reason.waitFor();
  // The earlier answer is back in its widget, and the timeline shows the new state (seq 3).
  await page.waitForFunction(() => document.getElementById("w-reason").value === '"damaged"');
  await page.locator("#timeline li", { hasText: "#3 WAITING" }).filter({ hasText: "(back)" }).waitFor();
  await page.locator('#graph g.node.current[data-node="refund_reason"]').waitFor();
  await page.screenshot({ path: SHOTS + "back-2-reason-again.png", fullPage: true });

  await page.selectOption("#w-reason", { label: "Wrong item" });
  await reason.locator("button[type=submit]").click();
  const confirm = page.locator('form[data-layout="refund_confirm"]');
  await confirm.waitFor();
  assert.match(await confirm.textContent(), /wrong_item/);
  await page.locator("#timeline li", { hasText: "#4 WAITING" }).waitFor();
  await page.getByRole("button", { name: "Confirm refund" }).click();
  await page.getByTestId("complete").waitFor();
  await page.close();
});

test("Back prefills a dependent dropdown: the parent's choice refills it and the earlier value is selected again", async () => {
  const page = await open();
  const id = `dep_${Date.now().toString(36)}`;
  const status = await page.evaluate(async (id) => {
    const call = (method, path, body) =>
      fetch(path, {
        method,
        headers: { "content-type": "application/json", authorization: `Bearer ${window.DRIFT_DEMO.apiKey}` },
        body: body && JSON.stringify(body),
      }).then((r) => r.status);
    const choose = { id: "country", tags: { values: ["ui.dropdown"] },
      possibleValues: [{ displayValue: "France", value: "fr" }, { displayValue: "Japan", value: "jp" }] };
    const city = { id: "city", parentId: "country", tags: { values: ["ui.dropdown"] },
      possibleDependentValues: { fr: [{ displayValue: "Paris", value: "paris" }], jp: [{ displayValue: "Tokyo", value: "tokyo" }] } };
    const ok = { id: "ok", tags: { values: ["ui.button"] }, possibleValues: [{ displayValue: "OK", value: "ok" }] };
    const def = { id, startNode: "where", states: {
      where: { node: { type: "INSTRUCTION", layoutId: "where", inputOptions: [city, choose] }, nextNode: "sure" },
      sure: { node: { type: "INSTRUCTION", layoutId: "sure", inputOptions: [ok] }, nextNode: "done" },
      done: { node: { type: "SUCCESS", disposition: { message: "Done" } } } } };
    return [
      await call("POST", "/v3/definitions", def),
      await call("POST", `/v3/definitions/${id}/publish`),
      await call("POST", `/v3/definitions/${id}/activate`, { version: 1 }),
    ];
  }, id);
  assert.deepEqual(status, [201, 200, 200]);
  await page.reload();
  await page.getByText("live: connected").waitFor();
  await page.selectOption("#workflow", id);
  await page.click("#start");
  const where = page.locator('form[data-layout="where"]');
  await where.waitFor();
  await page.selectOption("#w-country", { label: "Japan" });
  await page.selectOption("#w-city", { label: "Tokyo" });
  await where.locator("button[type=submit]").click();
  await page.locator('form[data-layout="sure"]').waitFor();
  await page.getByTestId("back").click();
  await where.waitFor();
  await page.waitForFunction(() => document.getElementById("w-city").value === '"tokyo"');
  assert.equal(await page.inputValue("#w-country"), '"jp"');
  await where.locator("button[type=submit]").click();
  await page.locator('form[data-layout="sure"]').waitFor();
  await page.close();
});

test("Try it simulates refund on typed answers and stubbed responses and lights the path on the graph", async () => {
  const page = await open();
  await page.click("#tab-defs");
  await page.locator('#def-list button[data-def="refund"]').click();
  await page.locator('#def-graph g.node[data-node="confirm"]').waitFor();
  // The examples' sample responses are filled in; run to the first screen.
  assert.match(await page.inputValue("#try-responses"), /fetch_order/);
  await page.click("#try-run");
  const reason = page.locator('#try-screen form[data-layout="refund_reason"]');
  await reason.waitFor();
  assert.match(await page.textContent("#try-end"), /Waiting at screen refund_reason/);
  await page.locator('#def-graph g.node.visited[data-node="check_amount"]').waitFor();
  await page.locator('#def-graph g.node.current[data-node="refund_reason"]').waitFor();

  // An answer the screen refuses is shown on its widget, the same 422 a real run gives, and not kept.
  await reason.locator("button[type=submit]").click();
  await page.locator("#try-w-reason-error").getByText("required").waitFor();
  assert.equal(await page.locator("#try-answers li").count(), 0);

  await page.selectOption("#try-w-reason", { label: "Arrived damaged" });
  await reason.locator("button[type=submit]").click();
  const confirm = page.locator('#try-screen form[data-layout="refund_confirm"]');
  await confirm.waitFor();
  await confirm.getByRole("button", { name: "Confirm refund" }).click();
  await page.locator('#try-end[data-status="COMPLETED"]').waitFor();
  assert.match(await page.textContent("#try-end"), /Refund issued/);
  assert.deepEqual(
    await page.locator("#try-path li").evaluateAll((l) => l.map((e) => e.dataset.step)),
    ["fetch_order", "check_amount", "refund_reason", "confirm", "decide", "issue_refund", "refunded"],
  );
  assert.equal(await page.locator("#try-answers li").count(), 2);
  await page.locator('#def-graph g.edge.visited[data-from="decide"][data-to="issue_refund"]').waitFor();
  await page.locator('#def-graph g.node.current[data-node="refunded"]').waitFor();
  await page.screenshot({ path: SHOTS + "tryit-1-refunded.png", fullPage: true });

  // A bigger order (an edited stub) takes the other branch: the given answers no longer fit.
  await page.evaluate(() => {
    const box = document.getElementById("try-responses");
    const r = JSON.parse(box.value);
    r.fetch_order.body.amount = 900;
    box.value = JSON.stringify(r);
  });
  await page.click("#try-run");
  await page.locator('#try-end[data-status="STOPPED"]').waitFor();
  assert.match(await page.textContent("#try-end"), /manual_review/);
  await page.click("#try-clear");
  await page.locator('#try-screen form[data-layout="manual_review"]').waitFor();
  await page.locator('#def-graph g.node.current[data-node="manual_review"]').waitFor();
  assert.equal(await page.locator('#def-graph g.node.visited[data-node="issue_refund"]').count(), 0);
  await page.screenshot({ path: SHOTS + "tryit-2-manual-review.png", fullPage: true });
  await page.close();
});

test("the API reference page renders the gateway's OpenAPI document from assets inside the binary", async () => {
  const page = await chromium.get().newPage({ viewport: { width: 1280, height: 900 } });
  const elsewhere = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(BASE)) elsewhere.push(r.url());
  });
  await page.goto(BASE + "/docs/");
  await page.locator(".opblock-summary-path", { hasText: "/v3/workflow/start" }).first().waitFor();
  assert.ok((await page.locator(".opblock").count()) >= 30, "every operation is listed");
  assert.deepEqual(elsewhere, [], "nothing is loaded from another origin");
  await page.screenshot({ path: SHOTS + "docs-1-reference.png" });
  await page.close();
});

test("the Runs tab finds a refund waiting on its reason, shows its timeline and graph, resends a webhook and terminates it, by keyboard", async () => {
  const page = await open();
  // An async refund: its first state goes to the demo's webhook receiver.
  await page.selectOption("#workflow", "refund");
  await page.selectOption("#mode", "async");
  await page.click("#start");
  await page.locator("#hooks li.WAITING").waitFor({ timeout: 30000 });
  const id = (await page.locator("#wfid").textContent()).replace("workflow ", "").trim();

  // To the Runs tab and its filters with the keyboard only.
  await page.focus("#tab-runs");
  await page.keyboard.press("Enter");
  await page.locator("#runs-view").waitFor();
  await page.locator("#runs-msg").filter({ hasNotText: "Loading" }).waitFor();
  await page.focus("#runs-definition");
  await page.keyboard.type("refund");
  await page.keyboard.press("Tab");
  await page.keyboard.type("WAITING");
  await page.keyboard.press("Tab");
  await page.keyboard.type("refund_reason");
  // Temporal's visibility trails a run by a moment: list again until the run is there.
  const row = page.locator(`#runs-list button[data-run="${id}"]`);
  for (let i = 0; i < 40; i++) {
    await page.focus("#runs-waiting-on");
    await page.keyboard.press("Enter");
    await page.locator("#runs-msg").filter({ hasNotText: "Loading" }).waitFor();
    if (await row.count()) break;
  }
  // Every run listed is a refund waiting on its reason (earlier tests left others behind).
  for (const text of await page.locator("#runs-list tr").allTextContents()) {
    assert.match(text, /refund v\d+\s*WAITING\s*refund_reason since/, text);
  }
  assert.equal(await row.count(), 1, "the run is listed");
  assert.match(await page.locator("#runs-list tr", { has: page.locator(`button[data-run="${id}"]`) }).textContent(), /refund v\d+.*WAITING.*refund_reason since/);

  await row.focus();
  await page.keyboard.press("Enter");
  const first = page.locator('#run-timeline li[data-seq="1"]');
  await first.waitFor();
  assert.match(await first.textContent(), /#1 WAITING at refund_reason · start via async/);
  // The demo receiver answered the first attempt (its 204 No Content, as it answers).
  await first.locator("li.attempt.delivered").first().waitFor();
  assert.match(await first.locator(".attempts").textContent(), /attempt 1 · delivered · answered 204/);
  await page.locator('#run-graph g.node.current[data-node="refund_reason"]').waitFor();
  assert.equal(await page.locator('#run-graph g.node.visited[data-node="fetch_order"]').count(), 1, "the path taken");
  await accessible(page, "the Runs tab with a run open");
  await page.screenshot({ path: SHOTS + "runs-1-timeline.png", fullPage: true });

  // Resend state 1: its answer is said, and the timeline shows the resend.
  await first.getByRole("button", { name: "Resend #1" }).focus();
  await page.keyboard.press("Enter");
  await page.locator("#run-msg").getByText(/State #1 sent again to .*: delivered/).waitFor();
  await page.locator('#run-timeline li[data-seq="1"] li.attempt', { hasText: "resend · delivered · answered 204" }).waitFor();

  // Terminate, confirmed: the run's last state is TERMINATED and the action is no longer offered.
  page.once("dialog", (d) => d.accept());
  await page.focus("#run-terminate");
  await page.keyboard.press("Enter");
  await page.locator("#run-timeline li.TERMINATED").waitFor();
  assert.match(await page.locator("#run-timeline li.TERMINATED").textContent(), /#2 TERMINATED · terminate via sync/);
  assert.ok(await page.locator("#run-terminate").isDisabled());
  await accessible(page, "the Runs tab after a terminate");
  await page.screenshot({ path: SHOTS + "runs-2-terminated.png", fullPage: true });
  await page.close();
});

// Browser tests of the hosted answer page: real chromium, real `drift dev` (DRIFT_DEMO_URL). Each
// person opens an answer link in a fresh browser context with no credential, as someone who got
// it by email would; the page runs under its own Content-Security-Policy.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { SHOTS, useChromium } from "./chromium.mjs";
import { GATEWAY, api } from "./api.mjs";

const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
const chromium = useChromium();


/** Refund waiting on its reason screen, and an answer link to it. */
async function refundWithLink(assignee) {
  const started = await api("POST", "/v3/workflow/start", { workflow: "refund", params: { orderId: "o-1" } });
  assert.equal(started.body.workflowStatus, "WAITING", JSON.stringify(started.body));
  const id = started.body.workflowId;
  const link = await api("POST", `/v3/workflow/${id}/links`, assignee ? { assignee } : {});
  assert.equal(link.status, 201, JSON.stringify(link.body));
  return { id, url: link.body.url };
}

/** A page in a context of its own: no cookie, no storage, no credential. */
async function stranger(url, { bypassCSP = false } = {}) {
  const context = await chromium.get().newContext({ viewport: { width: 420, height: 820 }, bypassCSP });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  page.on("console", (m) => {
    // A refused call the test asks for is logged by the browser: not the page's error.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(new Error(m.text()));
  });
  page.errors = errors;
  await page.goto(url);
  return page;
}

async function accessible(url, what) {
  // axe is injected, which the page's own policy forbids: checked in a context that allows it.
  const page = await stranger(url, { bypassCSP: true });
  await page.locator("#screen form, [data-testid=link-status]").first().waitFor();
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () =>
    (await window.axe.run(document, { resultTypes: ["violations"] })).violations.map(
      (v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`,
    ),
  );
  assert.deepEqual(violations, [], `axe-core on ${what}`);
  await page.context().close();
}

const statusOf = (page) => page.getByTestId("link-status");

test("a person with only the link answers refund's reason, the run moves on, and the link then says who answered", async () => {
  const { id, url } = await refundWithLink("ann@example.com");
  const page = await stranger(url);
  await page.locator('form[data-layout="refund_reason"]').waitFor();
  await page.getByText("For ann@example.com").waitFor();
  await page.screenshot({ path: SHOTS + "answer-1-open.png", fullPage: true });
  await accessible(url, "an open answer link");

  // The kit's own check, announced beside the widget.
  await page.click('form[data-layout="refund_reason"] button[type=submit]');
  await page.locator("#w-reason-error").getByText("required").waitFor();
  await page.screenshot({ path: SHOTS + "answer-2-field-error.png", fullPage: true });

  await page.selectOption("#w-reason", { label: "Arrived damaged" });
  await page.click('form[data-layout="refund_reason"] button[type=submit]');
  await statusOf(page).and(page.locator('[data-status="answered"]')).waitFor();
  assert.match(await statusOf(page).textContent(), /answered by ann@example\.com/);
  await page.screenshot({ path: SHOTS + "answer-3-answered.png", fullPage: true });
  assert.deepEqual(page.errors, []);

  const now = await api("GET", `/v3/workflow/${id}`);
  assert.equal(now.body.seq, 2);
  assert.equal(now.body.view.layoutId, "refund_confirm");

  // The same link again, in another fresh browser: answered, and no form to send twice.
  const again = await stranger(url);
  await statusOf(again).and(again.locator('[data-status="answered"]')).waitFor();
  assert.equal(await again.locator("form").count(), 0);
  await accessible(url, "an answered link");
  await again.context().close();
  await page.context().close();
});

test("an open page learns by itself that the run moved on; a revoked link and a tampered one each say so", async () => {
  const moved = await refundWithLink();
  let page = await stranger(moved.url);
  await page.locator('form[data-layout="refund_reason"]').waitFor();
  await page.evaluate(() => {
    window.__noReload = "still here";
  });
  // Answered in the team's own app while the page is open: the page says so, without a reload.
  const r = await api("PUT", `/v3/workflow/resume/${moved.id}`, {
    viewResponse: { selectedOptions: { reason: "wrong_item" } },
  });
  assert.equal(r.status, 200);
  await statusOf(page).and(page.locator('[data-status="moved_on"]')).waitFor();
  assert.equal(await page.evaluate(() => window.__noReload), "still here");
  assert.equal(await page.locator("form").count(), 0);
  await page.screenshot({ path: SHOTS + "answer-4-moved-on.png", fullPage: true });
  await page.context().close();

  const revoked = await refundWithLink();
  assert.equal((await api("DELETE", `/v3/workflow/${revoked.id}/links`)).status, 204);
  page = await stranger(revoked.url);
  await statusOf(page).and(page.locator('[data-status="revoked"]')).waitFor();
  await page.screenshot({ path: SHOTS + "answer-5-revoked.png", fullPage: true });
  await page.context().close();

  page = await stranger(revoked.url.replace(/\/answer\/(.)/, "/answer/A$1"));
  await statusOf(page).getByText("not valid").waitFor();
  assert.equal(await page.locator("form").count(), 0);
  await page.screenshot({ path: SHOTS + "answer-6-invalid.png", fullPage: true });
  await page.context().close();
  // Nothing any of these pages did moved the revoked run.
  assert.equal((await api("GET", `/v3/workflow/${revoked.id}`)).body.seq, 1);
});

// What every browser test file shares: Debian's chromium, launched once per file with the flags
// these machines need, closed after it, and the folder screenshots go to.
import { before, after } from "node:test";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

/** No axe-core violation on the page as it is now (hidden parts are not checked by axe). */
export async function accessible(page, what) {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () =>
    (await window.axe.run(document, { resultTypes: ["violations"] })).violations.map(
      (v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`));
  assert.deepEqual(violations, [], `axe-core on ${what}`);
}

export const SHOTS = process.env.DRIFT_ARTIFACTS || new URL("../../test-artifacts/", import.meta.url).pathname;
mkdirSync(SHOTS, { recursive: true });

/** The file's browser: `browser.get()` once `before` has run. */
export function useChromium() {
  let browser;
  before(async () => {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
             "--no-first-run", "--disable-component-update", "--disable-sync"],
    });
  });
  after(async () => { await browser?.close(); });
  return { get: () => browser };
}

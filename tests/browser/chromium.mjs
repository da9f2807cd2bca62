// What every browser test file shares: Debian's chromium, launched once per file with the flags
// these machines need, closed after it, and the folder screenshots go to.
import { before, after } from "node:test";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

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

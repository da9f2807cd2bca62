// Drift's API as the tests (not the pages) call it: the team's own system, with the dev key.
import { readFileSync } from "node:fs";

export const GATEWAY = process.env.DRIFT_DEMO_URL || "http://127.0.0.1:8080";
export const KEY = readFileSync(process.env.DRIFT_API_KEY_FILE || "../../.drift/dev-api-key", "utf8").trim();

/** One call: `{status, body}`, the body parsed (null when empty). */
export async function api(method, path, body) {
  const r = await fetch(GATEWAY + path, {
    method,
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

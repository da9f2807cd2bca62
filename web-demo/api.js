// The page's calls, all through Drift's TypeScript client (clients/typescript, bundled into
// vendor/drift-client.js): the workflow calls and the live socket directly, the rest (definitions,
// the graph, the demo receiver) through its `call`, as `{ ok, status, body }` values the page shows.

import { createClient, DriftError } from "./drift-client.js";

export { DriftError };

export function createApi(key) {
  const client = createClient({ baseUrl: location.origin, token: key });
  /** `{ ok, status, body }`: the body parsed as JSON when it is, else its text. Never throws. */
  async function call(method, path, body) {
    try {
      const r = await client.call(method, path, body);
      return { ok: true, status: r.status, body: r.body ?? null };
    } catch (e) {
      if (!(e instanceof DriftError)) throw e;
      return { ok: false, status: e.status, body: { code: e.code, message: e.message, details: e.details } };
    }
  }
  return { call, client };
}

// HTTP calls to the gateway: every one authenticated with the page's key, every answer checked
// (status and body), errors as values the caller shows.

let seq = 0;
/** A request id, so a retried or echoed call can be matched to what sent it. */
export const requestId = () => `demo-${Date.now().toString(36)}-${++seq}`;

export function createApi(key) {
  const headers = { "content-type": "application/json", authorization: `Bearer ${key}` };
  /** `{ ok, status, body }`: the body parsed as JSON when it is, else its text. Never throws. */
  async function call(method, path, body) {
    let r;
    try {
      r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      return { ok: false, status: 0, body: { message: `network error: ${e.message}` } };
    }
    const text = await r.text();
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON (an SVG, or a proxy's error page): the text as it is.
    }
    return { ok: r.ok, status: r.status, body: parsed };
  }
  return { call, headers };
}

// The client against a real `drift dev` (DRIFT_URL, DRIFT_API_KEY; scripts/browser-test.sh
// starts one): the examples' refund flow driven sync, async and live, over both transports,
// through dropped connections and lost answers.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient, DriftError } from "../dist/index.js";

const baseUrl = process.env.DRIFT_URL;
const key = process.env.DRIFT_API_KEY;
if (!baseUrl || !key) throw new Error("set DRIFT_URL and DRIFT_API_KEY (a running drift dev and its key)");

const client = createClient({ baseUrl, token: key });
const order = () => ({ orderId: `o-${Math.random().toString(36).slice(2, 8)}` });
const states = async (follow) => {
  const seen = [];
  for await (const s of follow) seen.push(s);
  return seen;
};
/** Answers refund's two screens. */
async function answerRefund(id) {
  const second = await client.resume(id, { selectedOptions: { reason: "damaged" } }, { seq: 1 });
  assert.equal(second.view.layoutId, "refund_confirm");
  const last = await client.resume(id, { selectedOptions: { action: "confirm" } }, { seq: 2 });
  assert.equal(last.workflowStatus, "COMPLETED");
  return last;
}

test("a sync start answers with the first screen and resumes answer with the next, to the end", async () => {
  const first = await client.start("refund", order());
  assert.equal(first.accepted, false);
  assert.equal(first.workflowStatus, "WAITING");
  assert.equal(first.view.layoutId, "refund_reason");
  assert.equal(typeof first.streamToken, "string");
  const { accepted, ...last } = await answerRefund(first.workflowId);
  assert.equal(accepted, false);
  assert.equal(last.seq, 3);
  assert.deepEqual(await client.get(first.workflowId), last);
});

test("refusals are DriftErrors with the gateway's code, status and widget details", async () => {
  const { workflowId } = await client.start("refund", order());
  const refused = await client.resume(workflowId, { selectedOptions: {} }).catch((e) => e);
  assert.ok(refused instanceof DriftError, String(refused));
  assert.equal(refused.status, 422);
  assert.equal(refused.code, "invalid_answer");
  assert.ok(
    refused.details.some((d) => d.widgetId === "reason"),
    JSON.stringify(refused.details),
  );

  const unknown = await client.start("no_such_flow").catch((e) => e);
  assert.equal(unknown.status, 404);
  const stale = await client.resume(workflowId, { selectedOptions: { reason: "damaged" } }, { seq: 9 }).catch((e) => e);
  assert.equal(stale.code, "stale_screen");
  const anonymous = await createClient({ baseUrl })
    .get(workflowId)
    .catch((e) => e);
  assert.equal(anonymous.status, 401);
});

test("a start whose answer was lost is retried with the same request id and starts one workflow", async () => {
  let calls = 0;
  const losing = createClient({
    baseUrl,
    token: async () => key, // a function: asked for a fresh credential on every attempt
    fetch: async (url, init) => {
      const r = await fetch(url, init);
      if (++calls === 1) throw new TypeError("connection reset (the answer was lost)");
      return r;
    },
  });
  const params = order();
  const answer = await losing.start("refund", params, { requestId: `lost-${Date.now()}` });
  assert.equal(calls, 2, "retried once");
  assert.equal(answer.seq, 1, "the retry got the first attempt's workflow, not a second start");
  const again = await client.start("refund", params, { requestId: answer.requestId });
  assert.equal(again.workflowId, answer.workflowId);
  // The same key for another request is refused, not answered with the first one's workflow.
  const reused = await client.start("refund", order(), { requestId: answer.requestId }).catch((e) => e);
  assert.equal(reused.code, "idempotency_key_reused");
});

test("async mode answers 202 with links at once", async () => {
  const a = await client.start("refund", order(), { mode: "async", callbackUrl: `${baseUrl}/demo/webhooks` });
  assert.equal(a.accepted, true);
  assert.equal(a.links.self, `/v3/workflow/${a.workflowId}`);
  await client.terminate(a.workflowId);
});

test("execute-node runs a node of a waiting workflow", async () => {
  const { workflowId } = await client.start("bank_account", {});
  const r = await client.executeNode(workflowId, "verify_account", { accountNumber: "12345678" });
  assert.equal(r.status, "SUCCESS");
  assert.equal(r.response.valid, true);
  await client.terminate(workflowId);
});

for (const transport of ["sse", "ws"]) {
  test(`follow over ${transport} yields every state once, in order, and ends after the terminal one`, async () => {
    const first = await client.start("refund", order());
    const follow = client.follow(first.workflowId, { transport });
    const changes = [];
    follow.subscribe(() => changes.push(follow.getSnapshot()));
    const seen = states(follow);
    await waitFor(() => follow.getSnapshot().state?.seq === 1);
    await answerRefund(first.workflowId);
    assert.deepEqual(
      (await seen).map((s) => s.seq),
      [1, 2, 3],
    );
    const snap = follow.getSnapshot();
    assert.equal(snap.done, true);
    assert.equal(snap.state.workflowStatus, "COMPLETED");
    assert.ok(
      changes.every((c, i) => i === 0 || c !== changes[i - 1]),
      "a new snapshot object per change",
    );
  });

  test(`follow over ${transport} reconnects after a dropped connection and catches up from the last state`, async () => {
    const first = await client.start("refund", order());
    let connections = 0;
    const dropping = createClient({
      baseUrl,
      token: key,
      // Each connection is cut after its first state: the client must reconnect and resume.
      fetch: async (url, init) => {
        const r = await fetch(url, init);
        if (!String(url).includes("/events") || r.status !== 200) return r;
        connections++;
        return new Response(cutAfterFirstEvent(r.body), { status: 200, headers: r.headers });
      },
      WebSocket: class extends WebSocket {
        constructor(url) {
          super(url);
          connections++;
          this.addEventListener("message", (ev) => {
            if (JSON.parse(ev.data).type === "state") setTimeout(() => this.close(), 0);
          });
        }
      },
    });
    const follow = dropping.follow(first.workflowId, { transport });
    const seen = states(follow);
    await waitFor(() => follow.getSnapshot().state?.seq === 1);
    await answerRefund(first.workflowId);
    assert.deepEqual(
      (await seen).map((s) => s.seq),
      [1, 2, 3],
      "no state lost or repeated",
    );
    assert.ok(connections >= 2, `reconnected (${connections} connections)`);
  });

  test(`follow over ${transport} with only a stream token reads that workflow`, async () => {
    const first = await client.start("refund", order());
    const anonymous = createClient({ baseUrl });
    const follow = anonymous.follow(first.workflowId, { transport, streamToken: first.streamToken, since: 0 });
    const seen = states(follow);
    await answerRefund(first.workflowId);
    assert.deepEqual(
      (await seen).map((s) => s.seq),
      [1, 2, 3],
    );

    const other = await client.start("refund", order());
    const refused = anonymous.follow(other.workflowId, { transport, streamToken: first.streamToken });
    await assert.rejects(states(refused), (e) => e instanceof DriftError && e.status === 401);
    await client.terminate(other.workflowId);
  });
}

test("following an ended workflow from its last state ends at once", async () => {
  const first = await client.start("refund", order());
  const last = await answerRefund(first.workflowId);
  const follow = client.follow(first.workflowId, { transport: "sse", since: last.seq });
  assert.deepEqual(await states(follow), []);
  assert.equal(follow.getSnapshot().done, true);
});

async function waitFor(cond, ms = 10_000) {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A body that ends after its first SSE event. */
function cutAfterFirstEvent(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  return new ReadableStream({
    async pull(controller) {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return controller.close();
        text += decoder.decode(value, { stream: true });
        const end = text.indexOf("\n\n");
        if (end >= 0) {
          controller.enqueue(new TextEncoder().encode(text.slice(0, end + 2)));
          await reader.cancel();
          return controller.close();
        }
      }
    },
  });
}

test("one socket starts, answers and follows a workflow; refusals and node results come back by request id", async () => {
  const states = [];
  const status = [];
  const socket = client.connect({ state: (s) => states.push(s.seq), status: (up) => status.push(up) });
  try {
    const { workflowId, streamToken } = await socket.start("bank_account", {});
    assert.equal(typeof streamToken, "string");
    await waitFor(() => states.includes(1));
    const checked = await socket.executeNode(workflowId, "verify_account", { accountNumber: "12345678" });
    assert.equal(checked.response.valid, true);
    const refused = await socket.resume(workflowId, { selectedOptions: { save: "save" } }).catch((e) => e);
    assert.ok(refused instanceof DriftError && refused.status === 422, String(refused));
    assert.equal(refused.details[0].widgetId, "accountNumber");

    // Dropped: it reopens with a fresh ticket and catches up on what it missed.
    socket.drop();
    await client.resume(workflowId, { selectedOptions: { accountNumber: "1", save: "save" } }); // seq 2, over HTTP
    await waitFor(() => states.includes(2));
    assert.deepEqual(status, [true, false, true]);
    const done = await socket.resume(workflowId, { selectedOptions: { accountNumber: "11112222", save: "save" } });
    assert.equal(done.seq, 3);
    assert.deepEqual(states, [1, 2, 3], "each state once, in order");
  } finally {
    socket.close();
  }
});

test("back returns to the previous screen with its answer, over HTTP and over the socket; a blocked one is refused", async () => {
  const first = await client.start("refund", order());
  const id = first.workflowId;
  assert.equal(first.backBlockedBy, "fetch_order");
  const blocked = await client.back(id, { seq: 1 }).catch((e) => e);
  assert.ok(blocked instanceof DriftError && blocked.status === 409, String(blocked));
  assert.equal(blocked.code, "cannot_go_back");
  assert.equal(blocked.details.node, "fetch_order");

  const confirm = await client.resume(id, { selectedOptions: { reason: "damaged" } }, { seq: 1 });
  assert.equal(confirm.canGoBack, true);
  const back = await client.back(id, { seq: 2 });
  assert.equal(back.seq, 3);
  assert.equal(back.view.layoutId, "refund_reason");
  assert.deepEqual(back.previousAnswer, { reason: "damaged" });

  const socket = client.connect();
  try {
    await client.resume(id, { selectedOptions: { reason: "wrong_item" } }, { seq: 3 });
    const again = await socket.back(id, { seq: 4 });
    assert.equal(again.seq, 5);
    assert.deepEqual(again.previousAnswer, { reason: "wrong_item" });
    const refused = await socket.back(id, { seq: 5 }).catch((e) => e);
    assert.ok(refused instanceof DriftError && refused.code === "cannot_go_back", String(refused));
  } finally {
    socket.close();
  }
});

test("an answer link is made for the waiting screen, opens without a credential, and is closed by revoking", async () => {
  const first = await client.start("refund", order());
  const link = await client.createLink(first.workflowId, { assignee: "ann@example.com", ttlSecs: 600 });
  assert.equal(link.seq, 1);
  assert.ok(link.url.startsWith(`${baseUrl.replace(/\/+$/, "")}/answer/`), link.url);
  const open = await (await fetch(`${link.url}/screen`)).json();
  assert.equal(open.status, "open");
  assert.equal(open.view.layoutId, "refund_reason");
  await client.revokeLinks(first.workflowId);
  const closed = await (await fetch(`${link.url}/screen`)).json();
  assert.equal(closed.status, "revoked");
  await assert.rejects(
    client.createLink(first.workflowId, { ttlSecs: 0 }),
    (e) => e instanceof DriftError && e.code === "bad_request",
  );
});

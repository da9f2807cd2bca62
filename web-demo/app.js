// Drift demo page: starts example workflows, renders each screen from its `view`, follows the
// workflow live over one WebSocket (no polling for screens) and lights up its graph as states
// arrive; the Definitions tab edits, publishes and activates definitions; the Runs tab lists runs
// and shows one run's timeline, graph and actions.

import { createApi } from "./api.js";
import { definitionsTab } from "./definitions.js";
import { runsTab } from "./runs.js";
import { $, el, TERMINAL } from "./dom.js";
import { highlight, showGraph } from "./graph.js";
import { sampleParams } from "./samples.js";
import { clearFieldErrors, render, showRefusal } from "./screen.js";

const WEBHOOKS = `${location.origin}/demo/webhooks`;

/** `drift dev` hands the page its dev API key; elsewhere the page asks for one (kept for this tab). */
function apiKey() {
  const given = window.DRIFT_DEMO && window.DRIFT_DEMO.apiKey;
  if (given) return given;
  let key = sessionStorage.getItem("drift-api-key");
  if (!key) {
    key = prompt("Drift API key (Authorization: Bearer …)") || "";
    sessionStorage.setItem("drift-api-key", key);
  }
  return key;
}

const api = createApi(apiKey());
let run = null; // the workflow shown: { id, token, seq, mode, states, lastNode }
let hookTimer = null;

function timeline(seq, status, mode, extra) {
  const at = new Date().toLocaleTimeString();
  const text = `#${seq ?? "–"} ${status || ""} · ${mode} · ${at}${extra ? " · " + extra : ""}`;
  $("timeline").prepend(el("li", { class: status || "" }, text));
}

/** One WebSocket for every workflow the page follows; it reconnects and catches up by itself. */
const live = api.client.connect({
  state: (st) => onState(st, "ws"),
  gap: (g) => timeline(g.latest, "GAP", "ws", `history missed after #${g.after}`),
  status: (up) => {
    $("conn").textContent = up ? "live: connected" : "live: reconnecting…";
    $("conn").className = up ? "conn ok" : "conn bad";
  },
});

function onState(st, mode) {
  if (!run || (run.id && st.workflowId !== run.id)) return;
  if (run.seq && st.seq <= run.seq) return; // already shown (deduplicated by seq)
  run.seq = st.seq;
  run.states.push(st);
  const back = st.previousAnswer ? " (back)" : "";
  timeline(st.seq, st.workflowStatus, mode, st.node ? `at ${st.node}${back}` : "");
  render(st, { answer, verify, back: goBack });
  run.lastNode = highlight($("graph"), st, run.lastNode);
}

function showError(m) {
  showRefusal(m);
  timeline(run && run.seq, `ERROR ${m.status || ""}`, run ? run.mode : "ws", m.code || "");
}

/** The running workflow's graph; states that arrived while it loaded light it up then. */
async function runGraph(workflow, version) {
  const shown = run;
  const drawn = await showGraph(api, $("graph"), $("graph-caption"), workflow, version);
  if (!drawn || shown !== run) return;
  run.lastNode = null;
  for (const st of run.states) run.lastNode = highlight($("graph"), st, run.lastNode);
}

/** The workflow is known: show its id and follow it live (the socket follows what it started). */
function following(id, token, subscribed) {
  run.id = id;
  run.token = token;
  $("wfid").textContent = `workflow ${id}`;
  if (!subscribed) live.follow(id, { token, since: run.seq || undefined });
}

async function start(e) {
  e.preventDefault();
  let params;
  try {
    params = JSON.parse($("params").value || "{}");
  } catch {
    $("screen").replaceChildren(el("p", { class: "field-error", role: "alert" }, "Start parameters must be JSON."));
    return;
  }
  const workflow = $("workflow").value;
  const mode = $("mode").value;
  const version = ($("version").value || "ACTIVE").trim();
  if (run && run.id) live.unfollow(run.id);
  run = { id: null, token: null, seq: 0, mode, states: [], lastNode: null };
  $("timeline").replaceChildren();
  $("screen").replaceChildren(el("p", { class: "muted" }, "Starting…"));
  if (hookTimer) clearInterval(hookTimer);
  runGraph(workflow, version);
  const opts = version !== "ACTIVE" ? { version } : {};
  const shown = run;
  try {
    if (mode === "ws") {
      const { workflowId, streamToken } = await live.start(workflow, params, opts);
      if (shown === run) following(workflowId, streamToken, true);
      return;
    }
    if (mode === "async") Object.assign(opts, { mode: "async", callbackUrl: WEBHOOKS });
    const r = await api.client.start(workflow, params, opts);
    if (shown !== run) return;
    following(r.workflowId, r.streamToken, false);
    if (!r.accepted) onState(r, "http");
    if (mode === "async") {
      timeline(null, "ACCEPTED", "http", "202");
      hookTimer = setInterval(pollHooks, 1000);
    }
  } catch (err) {
    if (shown === run) showError(err);
  }
}

async function answer(selected) {
  clearFieldErrors();
  const viewResponse = { selectedOptions: selected };
  try {
    if (run.mode === "ws") {
      // The next state arrives on the socket (onState); a refusal comes back by request id.
      await live.resume(run.id, viewResponse, { seq: run.seq });
      return;
    }
    const opts = { seq: run.seq };
    if (run.mode === "async") Object.assign(opts, { mode: "async", callbackUrl: WEBHOOKS });
    const r = await api.client.resume(run.id, viewResponse, opts);
    if (!r.accepted) onState(r, "http");
  } catch (e) {
    showError(e);
  }
}

/** Back to the previous screen: it comes as a new state, its earlier answer prefilled. */
async function goBack() {
  clearFieldErrors();
  try {
    if (run.mode === "ws") {
      await live.back(run.id, { seq: run.seq });
      return;
    }
    const r = await api.client.back(run.id, { seq: run.seq });
    if (!r.accepted) onState(r, "http");
  } catch (e) {
    showError(e);
  }
}

/** Runs the screen's disconnected check (e.g. an account number) and shows its answer. */
async function verify(node, param, value, out) {
  out.textContent = "verifying…";
  let m;
  try {
    m = await live.executeNode(run.id, node, { [param]: value });
  } catch (e) {
    out.textContent = e.message;
    return;
  }
  const r = m.response || {};
  if (r.valid === true) out.textContent = `✓ valid — ${r.bankName}`;
  else if (r.valid === false) out.textContent = "✗ not a valid account";
  else out.textContent = JSON.stringify(r);
  timeline(run.seq, "EXECUTE", "ws", `${m.node}: ${m.status}`);
}

async function pollHooks() {
  if (!run || !run.id) return;
  const r = await api.call("GET", `/demo/webhooks?workflowId=${encodeURIComponent(run.id)}`);
  if (!r.ok || !Array.isArray(r.body)) return;
  const line = (h) => {
    const signed = h.verified ? "signature ✓" : "signature ✗";
    const at = new Date(h.receivedAt).toLocaleTimeString();
    return el("li", { class: h.status }, `#${h.seq} ${h.status} · ${signed} · ${h.webhookId} · ${at}`);
  };
  $("hooks").replaceChildren(...r.body.map(line));
  for (const h of r.body) if (h.state) onState(h.state, "webhook");
  if (r.body.some((h) => TERMINAL.includes(h.status))) clearInterval(hookTimer);
}

function showWorkflows(defs) {
  const startable = defs.filter((d) => d.active || d.latest);
  const picked = $("workflow").value;
  $("workflow").replaceChildren(...startable.map((d) => el("option", { value: d.id }, d.id)));
  if (startable.some((d) => d.id === picked)) $("workflow").value = picked;
}

function pickDefaults() {
  $("params").value = JSON.stringify(sampleParams($("workflow").value));
}

function showTab(which) {
  for (const [tab, view] of [
    ["tab-run", "run-view"],
    ["tab-defs", "defs-view"],
    ["tab-runs", "runs-view"],
  ]) {
    $(tab).setAttribute("aria-selected", String(tab === which));
    $(view).hidden = tab !== which;
  }
}

async function init() {
  const defsTab = definitionsTab(api, {
    onWorkflows: showWorkflows,
    onStart: (id, version) => {
      showTab("tab-run");
      $("workflow").value = id;
      $("version").value = version;
      pickDefaults();
      $("start-form").requestSubmit();
    },
  });
  const runs = runsTab(api);
  $("tab-run").addEventListener("click", () => showTab("tab-run"));
  $("tab-runs").addEventListener("click", () => {
    showTab("tab-runs");
    runs.load();
  });
  $("tab-defs").addEventListener("click", () => {
    showTab("tab-defs");
    defsTab.load();
  });
  const r = await api.call("GET", "/v3/definitions");
  if (r.ok) showWorkflows(r.body.definitions);
  else $("screen").replaceChildren(el("p", { class: "field-error", role: "alert" }, r.body.message || "no access"));
  if ([...$("workflow").options].some((o) => o.value === "refund")) $("workflow").value = "refund";
  pickDefaults();
  $("workflow").addEventListener("change", pickDefaults);
  $("start-form").addEventListener("submit", start);
  // For the browser tests and the console: drop the socket to watch it reconnect and catch up.
  window.driftDemo = { dropSocket: () => live.drop() };
}

init();

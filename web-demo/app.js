// Drift demo page: starts example workflows, renders each screen from its `view`, follows the
// workflow live over one WebSocket (no polling for screens) and lights up its graph as states
// arrive; the Definitions tab edits, publishes and activates definitions.

import { createApi, requestId } from "./api.js";
import { definitionsTab } from "./definitions.js";
import { $, el, TERMINAL } from "./dom.js";
import { highlight, showGraph } from "./graph.js";
import { Live } from "./live.js";
import { clearFieldErrors, render, showRefusal } from "./screen.js";

const DEFAULT_PARAMS = { refund: { orderId: "o-1001" }, bank_account: {}, monthly_report: { month: "2026-11" } };
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

const live = new Live(api, {
  state: (m) => onState(m.state, "ws"),
  gap: (m) => timeline(m.latest, "GAP", "ws", `history missed after #${m.after}`),
  error: (m) => showError(m),
  status: (text, ok) => {
    $("conn").textContent = text;
    $("conn").className = ok ? "conn ok" : "conn bad";
  },
});

function onState(st, mode) {
  if (!run || (run.id && st.workflowId !== run.id)) return;
  if (run.seq && st.seq <= run.seq) return; // already shown (deduplicated by seq)
  run.seq = st.seq;
  run.states.push(st);
  timeline(st.seq, st.workflowStatus, mode, st.node ? `at ${st.node}` : "");
  render(st, { answer, verify });
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

/** The workflow is known: show its id and follow it live (again after every reconnect). */
function following(id, token, subscribed) {
  run.id = id;
  run.token = token;
  $("wfid").textContent = `workflow ${id}`;
  const shown = run;
  live.follow({ workflowId: id, token, since: () => shown.seq }, subscribed);
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
  live.unfollow();
  run = { id: null, token: null, seq: 0, mode, states: [], lastNode: null };
  $("timeline").replaceChildren();
  $("screen").replaceChildren(el("p", { class: "muted" }, "Starting…"));
  if (hookTimer) clearInterval(hookTimer);
  runGraph(workflow, version);
  const body = { workflow, params, ...(version !== "ACTIVE" ? { version } : {}) };
  if (mode === "ws") {
    const shown = run;
    const m = await live.request({ type: "start", ...body });
    if (shown !== run) return;
    if (m.type === "error") return showError(m);
    return following(m.workflowId, m.streamToken, true);
  }
  if (mode === "async") body.callbackUrl = WEBHOOKS;
  const r = await api.call("POST", "/v3/workflow/start", body);
  if (!r.ok) return showError({ ...r.body, status: r.status });
  following(r.body.workflowId, r.body.streamToken, false);
  if (r.status === 200) onState(r.body, "http");
  if (mode === "async") {
    timeline(null, "ACCEPTED", "http", "202");
    hookTimer = setInterval(pollHooks, 1000);
  }
}

async function answer(selected) {
  clearFieldErrors();
  const viewResponse = { selectedOptions: selected };
  if (run.mode === "ws") {
    // The next state arrives on the socket; a refusal comes back as an error by request id.
    live.send({ type: "resume", requestId: requestId(), workflowId: run.id, viewResponse, seq: run.seq });
    return;
  }
  const body = { viewResponse, seq: run.seq };
  if (run.mode === "async") Object.assign(body, { mode: "async", callbackUrl: WEBHOOKS });
  const r = await api.call("PUT", `/v3/workflow/resume/${encodeURIComponent(run.id)}`, body);
  if (r.status === 200) onState(r.body, "http");
  else if (r.status !== 202) showError({ ...r.body, status: r.status });
}

/** Runs the screen's disconnected check (e.g. an account number) and shows its answer. */
async function verify(node, param, value, out) {
  out.textContent = "verifying…";
  const msg = { type: "execute-node", workflowId: run.id, node, parameters: { [param]: value } };
  const m = await live.request(msg, ["result"]);
  if (m.type === "error") {
    out.textContent = m.message;
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
  $("params").value = JSON.stringify(DEFAULT_PARAMS[$("workflow").value] || {});
}

function showTab(which) {
  for (const [tab, view] of [
    ["tab-run", "run-view"],
    ["tab-defs", "defs-view"],
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
  $("tab-run").addEventListener("click", () => showTab("tab-run"));
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
  live.connect();
}

init();

// Drift demo page: starts example workflows, renders each screen from its `view`, follows the
// workflow live over one WebSocket (no polling for screens) and lights up its graph as states
// arrive; the Definitions tab edits, publishes and activates definitions.
"use strict";
// `drift dev` hands the page its dev API key; elsewhere the page asks for one (kept for this tab).
const API_KEY = (window.DRIFT_DEMO && window.DRIFT_DEMO.apiKey) || sessionStorage.getItem("drift-api-key")
  || (() => { const k = prompt("Drift API key (Authorization: Bearer …)") || ""; sessionStorage.setItem("drift-api-key", k); return k; })();
const HEADERS = { "content-type": "application/json", "authorization": `Bearer ${API_KEY}` };
const DEFAULT_PARAMS = { refund: { orderId: "o-1001" }, bank_account: {}, monthly_report: { month: "2026-11" } };
const TEMPLATES = {
  "refund.summary": "Order {orderId}: {amount} {currency}. What went wrong?",
  "refund.confirm": "Refund {amount} for the reason “{reason}”?",
  "refund.manual_review": "This order ({amount}) is above the automatic refund limit; a colleague will review it.",
  "bank.intro": "Enter your 8-digit account number. Use “Verify” to check it before saving.",
};
const $ = (id) => document.getElementById(id);
let ws = null, wsBackoff = 500, reqSeq = 0;
let current = null; // {id, token, seq, view, status, mode, states}
let hookTimer = null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
const rid = () => `demo-${Date.now().toString(36)}-${++reqSeq}`;

function fill(templateId, vars) {
  const t = TEMPLATES[templateId];
  if (!t) return `${templateId}: ${Object.entries(vars || {}).map(([k, v]) => `${k} = ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ")}`;
  return t.replace(/\{(\w+)\}/g, (_, k) => (vars && vars[k] !== undefined && vars[k] !== null ? vars[k] : ""));
}

function timeline(seq, status, mode, extra) {
  const li = el("li", { class: status || "" }, `#${seq ?? "–"} ${status || ""} · ${mode} · ${new Date().toLocaleTimeString()}${extra ? " · " + extra : ""}`);
  $("timeline").prepend(li);
}

// ---- WebSocket -------------------------------------------------------------------------------
// A socket cannot carry headers, so the page trades its key for a one-minute ticket each time it
// (re)connects: the key itself never goes into a URL.
async function connect() {
  let ticket;
  try {
    const r = await fetch("/v3/auth/ticket", { method: "POST", headers: HEADERS });
    if (!r.ok) throw new Error(`ticket: ${r.status}`);
    ticket = (await r.json()).ticket;
  } catch (e) {
    $("conn").textContent = "live: reconnecting…"; $("conn").className = "conn bad";
    setTimeout(connect, wsBackoff); wsBackoff = Math.min(wsBackoff * 2, 5000);
    return;
  }
  const url = `${location.origin.replace(/^http/, "ws")}/v3/ws?ticket=${encodeURIComponent(ticket)}`;
  ws = new WebSocket(url);
  ws.onopen = () => {
    wsBackoff = 500;
    $("conn").textContent = "live: connected"; $("conn").className = "conn ok";
    if (current) send({ type: "subscribe", workflowId: current.id, since: current.seq || undefined, token: current.token });
  };
  ws.onclose = () => {
    $("conn").textContent = "live: reconnecting…"; $("conn").className = "conn bad";
    setTimeout(connect, wsBackoff); wsBackoff = Math.min(wsBackoff * 2, 5000);
  };
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
}
function send(msg) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); }

function onMessage(m) {
  if (m.type === "state") onState(m.state, "ws");
  else if (m.type === "gap") timeline(m.latest, "GAP", "ws", `history missed after #${m.after}`);
  else if (m.type === "ack" && m.streamToken && current && !current.id) { current.id = m.workflowId; current.token = m.streamToken; showId(); }
  else if (m.type === "result") showResult(m);
  else if (m.type === "error") showError(m);
}

// ---- States and screens ----------------------------------------------------------------------
function onState(st, mode) {
  if (!current || (current.id && st.workflowId !== current.id)) return;
  if (current.seq && st.seq <= current.seq) return; // already shown (dedupe by seq)
  current.seq = st.seq; current.status = st.workflowStatus;
  current.states.push(st);
  timeline(st.seq, st.workflowStatus, mode, st.node ? `at ${st.node}` : "");
  render(st);
  highlight(st);
}

// ---- The live graph --------------------------------------------------------------------------
// The server lays the graph out (SVG); every node is <g class="node" data-node=NAME>, every edge
// <g class="edge" data-from data-to>. Each state names its node and the path since the last one.
const byAttr = (svg, sel, attrs) => svg.querySelectorAll(sel + Object.entries(attrs).map(([k, v]) => `[data-${k}="${CSS.escape(v)}"]`).join(""));
function highlight(st) {
  const svg = $("graph").querySelector("svg");
  if (!svg || !current) return;
  svg.querySelectorAll("g.node.current").forEach((g) => g.classList.remove("current"));
  let prev = current.lastNode;
  for (const n of st.path || []) {
    byAttr(svg, "g.node", { node: n }).forEach((g) => g.classList.add("visited"));
    if (prev) byAttr(svg, "g.edge", { from: prev, to: n }).forEach((g) => g.classList.add("visited"));
    prev = n;
  }
  if (st.node) {
    byAttr(svg, "g.node", { node: st.node }).forEach((g) => g.classList.add("current"));
    current.lastNode = st.node;
  }
}
async function showGraph(box, caption, workflow, version) {
  const r = await fetch(`/v3/definitions/${encodeURIComponent(workflow)}/graph?format=svg&version=${encodeURIComponent(version || "ACTIVE")}`, { headers: HEADERS });
  if (!r.ok) { box.replaceChildren(el("p", { class: "muted" }, `No graph (${r.status}).`)); caption.textContent = ""; return false; }
  // Our own server's SVG; labels and attributes are escaped there.
  box.innerHTML = await r.text();
  caption.textContent = `${workflow} · ${version || "ACTIVE"}`;
  return true;
}
async function runGraph(workflow, version) {
  const run = current;
  if (!(await showGraph($("graph"), $("graph-caption"), workflow, version)) || run !== current) return;
  // States that arrived while the drawing loaded light it up now.
  current.lastNode = null;
  for (const st of current.states) highlight(st);
}

function showId() { $("wfid").textContent = `workflow ${current.id}`; }

function render(st) {
  const box = $("screen");
  box.replaceChildren();
  if (st.workflowStatus === "COMPLETED" || st.workflowStatus === "FAILED" || st.workflowStatus === "TERMINATED") {
    const msg = st.errorMessage || (st.disposition && st.disposition.message) || st.workflowStatus;
    box.append(el("div", { class: "banner" + (st.workflowStatus === "COMPLETED" ? "" : " failed"), role: "status", "data-testid": "complete" }, msg === st.workflowStatus ? msg : `${st.workflowStatus}: ${msg}`));
    if (st.disposition) box.append(el("pre", { class: "muted" }, JSON.stringify(st.disposition, null, 2)));
    return;
  }
  if (st.workflowStatus === "SCHEDULER_WAITING") { box.append(el("p", { class: "static" }, "Waiting on a durable timer… the next state will arrive by itself.")); return; }
  if (!st.view) { box.append(el("p", { class: "muted" }, `Status ${st.workflowStatus}`)); return; }
  current.view = st.view;
  const form = el("form", { id: "answer", "data-layout": st.view.layoutId });
  form.append(el("h3", {}, st.view.layoutId.replace(/_/g, " ")));
  const verifyNode = findVerifyNode(st.view);
  const values = {};
  for (const w of st.view.inputOptions) form.append(widget(w, values, verifyNode, st.view));
  form.addEventListener("submit", (e) => { e.preventDefault(); answer(collect(form)); });
  if (!st.view.inputOptions.some((w) => tags(w).includes("ui.button"))) form.append(el("button", { type: "submit" }, "Continue"));
  box.append(form);
  const first = form.querySelector("select, input, button");
  if (first) first.focus();
}

const tags = (w) => (w.tags && w.tags.values) || [];
function findVerifyNode(view) {
  for (const w of view.inputOptions) for (const i of w.instructions || []) if (i.templateVariables && i.templateVariables.verifyNode) return i.templateVariables.verifyNode;
  return null;
}

function widget(w, values, verifyNode, view) {
  const t = tags(w), id = `w-${w.id}`;
  const wrap = el("div", { class: "widget", "data-widget": w.id });
  const label = w.description || w.id;
  const text = (w.instructions || []).map((i) => fill(i.templateId, i.templateVariables)).join(" ");
  if (t.includes("ui.static_text")) { wrap.append(el("p", { class: "static" }, text || label)); return wrap; }
  if (t.includes("ui.complete")) { wrap.append(el("div", { class: "banner" }, text || label)); return wrap; }
  if (text) wrap.append(el("p", { class: "muted" }, text));
  const pv = w.possibleValues || [];
  if (t.includes("ui.button")) {
    const group = el("div", { role: "group", "aria-label": label });
    for (const v of pv) group.append(el("button", { type: "submit", name: w.id, value: JSON.stringify(v.value), onclick: (e) => { e.currentTarget.form.dataset.clicked = w.id; e.currentTarget.form.dataset.value = e.currentTarget.value; } }, v.displayValue));
    wrap.append(group);
  } else if (t.includes("ui.dropdown")) {
    wrap.append(el("label", { for: id }, label));
    const sel = el("select", { id, name: w.id, "data-json": "1" }, el("option", { value: "" }, "— choose —"));
    const options = () => {
      let list = pv;
      if (w.parentId && w.possibleDependentValues) {
        const parent = document.getElementById(`w-${w.parentId}`);
        const pvKey = parent ? JSON.parse(parent.value || "null") : null;
        list = w.possibleDependentValues[pvKey] || [];
      }
      sel.replaceChildren(el("option", { value: "" }, "— choose —"), ...list.map((v) => el("option", { value: JSON.stringify(v.value ?? v) }, v.displayValue ?? v)));
    };
    options();
    if (w.parentId) setTimeout(() => { const p = document.getElementById(`w-${w.parentId}`); if (p) p.addEventListener("change", options); });
    wrap.append(sel);
  } else if (t.includes("ui.date_picker")) {
    wrap.append(el("label", { for: id }, label), el("input", { id, name: w.id, type: "date" }));
  } else if (t.includes("ui.free_text")) {
    wrap.append(el("label", { for: id }, label), el("input", { id, name: w.id, type: "text", autocomplete: "off" }));
    if (verifyNode) {
      const out = el("div", { class: "result", "data-testid": "verify-result", role: "status", "aria-live": "polite" });
      wrap.append(el("button", { type: "button", class: "secondary", onclick: () => verify(verifyNode, w.id, document.getElementById(id).value, out) }, "Verify"), out);
    }
  } else {
    // Unknown tag: a readable generic input.
    wrap.append(el("label", { for: id }, `${label} (${t.join(", ") || "input"})`), el("input", { id, name: w.id, type: "text" }));
  }
  wrap.append(el("div", { class: "field-error", id: `err-${w.id}`, role: "alert" }));
  return wrap;
}

function collect(form) {
  const selected = {};
  for (const e of form.querySelectorAll("select, input")) {
    if (!e.value) continue;
    selected[e.name] = e.dataset.json ? JSON.parse(e.value) : e.value;
  }
  if (form.dataset.clicked) selected[form.dataset.clicked] = JSON.parse(form.dataset.value);
  return selected;
}

// ---- Commands --------------------------------------------------------------------------------
async function start(e) {
  e.preventDefault();
  let params;
  try { params = JSON.parse($("params").value || "{}"); } catch { alert("Start parameters must be JSON"); return; }
  const workflow = $("workflow").value, mode = $("mode").value;
  const version = ($("version").value || "ACTIVE").trim();
  if (current && current.id) send({ type: "unsubscribe", workflowId: current.id });
  current = { id: null, token: null, seq: 0, mode, states: [], lastNode: null };
  $("timeline").replaceChildren(); $("screen").replaceChildren(el("p", { class: "muted" }, "Starting…"));
  if (hookTimer) clearInterval(hookTimer);
  runGraph(workflow, version);
  const named = version && version !== "ACTIVE" ? { version } : {};
  if (mode === "ws") { send({ type: "start", requestId: rid(), workflow, params, ...named }); return; }
  const body = { workflow, params, ...named };
  if (mode === "async") body.callbackUrl = `${location.origin}/demo/webhooks`;
  const r = await fetch("/v3/workflow/start", { method: "POST", headers: HEADERS, body: JSON.stringify(body) });
  const st = await r.json();
  if (!r.ok && r.status !== 202) { $("screen").replaceChildren(el("p", { class: "field-error" }, st.message)); return; }
  current.id = st.workflowId; current.token = st.streamToken; showId();
  send({ type: "subscribe", workflowId: current.id, token: current.token });
  if (r.status === 200) onState(st, "http");
  if (mode === "async") { timeline(null, "ACCEPTED", "http", "202"); hookTimer = setInterval(pollHooks, 1000); }
}

async function answer(selected) {
  for (const e of document.querySelectorAll(".field-error")) e.textContent = "";
  const viewResponse = { selectedOptions: selected };
  if (current.mode === "ws") { send({ type: "resume", requestId: rid(), workflowId: current.id, viewResponse, seq: current.seq }); return; }
  const body = { viewResponse, seq: current.seq };
  if (current.mode === "async") Object.assign(body, { mode: "async", callbackUrl: `${location.origin}/demo/webhooks` });
  const r = await fetch(`/v3/workflow/resume/${encodeURIComponent(current.id)}`, { method: "PUT", headers: HEADERS, body: JSON.stringify(body) });
  const st = await r.json();
  if (r.status === 200) onState(st, "http"); else if (r.status !== 202) showError({ ...st, status: r.status });
}

function verify(node, param, value, out) {
  out.textContent = "verifying…";
  out.dataset.pending = "1";
  send({ type: "execute-node", requestId: rid(), workflowId: current.id, node, parameters: { [param]: value } });
}
function showResult(m) {
  const out = document.querySelector('[data-testid="verify-result"]');
  if (!out) return;
  const r = m.response || {};
  out.textContent = r.valid === true ? `✓ valid — ${r.bankName}` : r.valid === false ? "✗ not a valid account" : JSON.stringify(r);
  timeline(current.seq, "EXECUTE", "ws", `${m.node}: ${m.status}`);
}
function showError(m) {
  const details = m.details || [];
  for (const d of details) { const e = $(`err-${d.widgetId}`); if (e) e.textContent = d.message === "required" ? "This field is required." : d.message; }
  if (!details.length) $("screen").prepend(el("p", { class: "field-error", role: "alert" }, m.message || "error"));
  timeline(current && current.seq, `ERROR ${m.status || ""}`, current ? current.mode : "ws", m.code || "");
}

async function pollHooks() {
  if (!current || !current.id) return;
  const r = await fetch(`/demo/webhooks?workflowId=${encodeURIComponent(current.id)}`);
  if (!r.ok) return;
  const list = await r.json();
  $("hooks").replaceChildren(...list.map((h) => el("li", { class: h.status }, `#${h.seq} ${h.status} · ${h.verified ? "signature ✓" : "signature ✗"} · ${h.webhookId} · ${new Date(h.receivedAt).toLocaleTimeString()}`)));
  for (const h of list) if (h.state) onState(h.state, "webhook");
  if (list.some((h) => ["COMPLETED", "FAILED", "TERMINATED"].includes(h.status))) clearInterval(hookTimer);
}

// ---- Definitions tab --------------------------------------------------------------------------
const NEW_DEFINITION = { id: "my_flow", description: "A new flow", startNode: "ask", states: {
  ask: { node: { type: "INSTRUCTION", layoutId: "my_screen", inputOptions: [
    { id: "go", tags: { values: ["ui.button"] }, possibleValues: [{ displayValue: "Go", value: "go" }] }] }, nextNode: "done" },
  done: { node: { type: "SUCCESS", disposition: { message: "Done" } } } } };
let editing = null; // {id, isNew}

function showTab(which) {
  for (const [tab, view] of [["tab-run", "run-view"], ["tab-defs", "defs-view"]]) {
    const on = tab === which;
    $(tab).setAttribute("aria-selected", String(on));
    $(view).hidden = !on;
  }
  if (which === "tab-defs") loadDefinitions();
}

async function api(method, path, body) {
  const r = await fetch(path, { method, headers: HEADERS, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null; try { json = JSON.parse(text); } catch { json = text; }
  return { ok: r.ok, status: r.status, body: json };
}

async function loadDefinitions(select) {
  const r = await api("GET", "/v3/definitions");
  if (!r.ok) return;
  const defs = r.body.definitions;
  $("def-list").replaceChildren(...defs.map((d) => el("li", {}, el("button", {
    type: "button", "data-def": d.id, "aria-current": String(editing && editing.id === d.id), onclick: () => openDefinition(d.id),
  }, `${d.id} · active ${d.active ?? "–"} · latest ${d.latest ?? "–"}${d.snapshot ? " · draft" : ""}`))));
  $("workflow").replaceChildren(...defs.filter((d) => d.active || d.latest).map((d) => el("option", { value: d.id }, d.id)));
  if (select) openDefinition(select);
}

async function openDefinition(id) {
  editing = { id, isNew: false };
  for (const b of $("def-list").querySelectorAll("button")) b.setAttribute("aria-current", String(b.dataset.def === id));
  $("def-title").textContent = id; $("def-errors").replaceChildren(); $("def-status").textContent = "";
  const [body, versions] = await Promise.all([api("GET", `/v3/definitions/${encodeURIComponent(id)}?version=SNAPSHOT`), api("GET", `/v3/definitions/${encodeURIComponent(id)}/versions`)]);
  let shown = body;
  if (!body.ok) shown = await api("GET", `/v3/definitions/${encodeURIComponent(id)}`);
  const json = { ...shown.body }; delete json.version;
  $("def-json").value = JSON.stringify(json, null, 2);
  const list = (versions.ok && versions.body.versions) || [];
  $("def-activate-version").replaceChildren(...list.slice().reverse().map((v) => el("option", { value: v.version }, `v${v.version}${v.active ? " (active)" : ""}`)));
  $("def-meta").textContent = list.length ? list.map((v) => `v${v.version} by ${v.publishedBy} at ${new Date(v.publishedAt).toLocaleString()}${v.active ? " — ACTIVE" : ""}`).join(" · ") : "Not published yet.";
  await showGraph($("def-graph"), $("defgraph-caption"), id, body.ok ? "SNAPSHOT" : "ACTIVE");
}

function newDefinition() {
  editing = { id: null, isNew: true };
  $("def-title").textContent = "(new)"; $("def-meta").textContent = "Save creates its SNAPSHOT.";
  $("def-json").value = JSON.stringify(NEW_DEFINITION, null, 2);
  $("def-errors").replaceChildren(); $("def-graph").replaceChildren(); $("def-activate-version").replaceChildren();
}

// A 422 names node and field: list them, and mark each node on the drawing with its message.
function showDefinitionErrors(r) {
  const errors = (r.body && r.body.details && r.body.details.errors) || [];
  $("def-errors").replaceChildren(...(errors.length ? errors : [{ message: (r.body && r.body.message) || `error ${r.status}` }])
    .map((e) => el("li", e.node ? { "data-node-error": e.node } : {}, `${e.node ? e.node + " › " : ""}${e.field ? e.field + ": " : ""}${e.message}`)));
  const svg = $("def-graph").querySelector("svg");
  if (!svg) return;
  for (const e of errors) {
    if (!e.node) continue;
    for (const g of byAttr(svg, "g.node", { node: e.node })) {
      g.classList.add("invalid");
      const box = g.getBBox();
      const t = document.createElementNS("http://www.w3.org/2000/svg", "text");
      t.setAttribute("class", "node-error"); t.setAttribute("data-node-error", e.node);
      t.setAttribute("x", String(box.x + box.width + 6)); t.setAttribute("y", String(box.y + box.height / 2));
      const full = `${e.field}: ${e.message}`;
      t.textContent = `⚠ ${full.length > 42 ? full.slice(0, 40) + "…" : full}`;
      const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = full;
      t.append(title);
      g.append(t);
      svg.setAttribute("overflow", "visible");
    }
  }
}

async function saveDefinition() {
  let body;
  try { body = JSON.parse($("def-json").value); } catch (e) { showDefinitionErrors({ status: 400, body: { message: `Not JSON: ${e.message}` } }); return false; }
  $("def-errors").replaceChildren();
  const r = editing && !editing.isNew ? await api("PUT", `/v3/definitions/${encodeURIComponent(editing.id)}`, body) : await api("POST", "/v3/definitions", body);
  if (!r.ok) { showDefinitionErrors(r); $("def-status").textContent = ""; return false; }
  $("def-status").textContent = "SNAPSHOT saved."; $("def-status").className = "ok-text";
  await loadDefinitions(r.body.id);
  return true;
}

async function publishDefinition() {
  if (!(await saveDefinition())) return;
  const r = await api("POST", `/v3/definitions/${encodeURIComponent(editing.id)}/publish`);
  if (!r.ok) { showDefinitionErrors(r); return; }
  await openDefinition(editing.id);
  $("def-status").textContent = r.body.published ? `Published as version ${r.body.version}.` : `Unchanged: still version ${r.body.version}.`;
  $("def-status").className = "ok-text";
}

async function activateDefinition() {
  const version = Number($("def-activate-version").value);
  if (!editing || !version) return;
  const r = await api("POST", `/v3/definitions/${encodeURIComponent(editing.id)}/activate`, { version });
  if (!r.ok) { showDefinitionErrors(r); return; }
  await loadDefinitions(editing.id);
  $("def-status").textContent = `Version ${version} is ACTIVE: new starts use it.`; $("def-status").className = "ok-text";
}

function startSelectedVersion() {
  if (!editing || !editing.id) return;
  const version = $("def-activate-version").value || "ACTIVE";
  showTab("tab-run");
  $("workflow").value = editing.id; $("version").value = version; $("params").value = JSON.stringify(DEFAULT_PARAMS[editing.id] || {});
  $("start-form").requestSubmit();
}

async function init() {
  $("tab-run").addEventListener("click", () => showTab("tab-run"));
  $("tab-defs").addEventListener("click", () => showTab("tab-defs"));
  $("def-new").addEventListener("click", newDefinition);
  $("def-save").addEventListener("click", saveDefinition);
  $("def-publish").addEventListener("click", publishDefinition);
  $("def-activate").addEventListener("click", activateDefinition);
  $("def-start").addEventListener("click", startSelectedVersion);
  const defs = (await (await fetch("/v3/definitions", { headers: HEADERS })).json()).definitions.filter((d) => d.active || d.latest);
  $("workflow").replaceChildren(...defs.map((d) => el("option", { value: d.id }, d.id)));
  const pick = () => { $("params").value = JSON.stringify(DEFAULT_PARAMS[$("workflow").value] || {}); };
  $("workflow").addEventListener("change", pick);
  if (defs.some((d) => d.id === "refund")) $("workflow").value = "refund";
  pick();
  $("start-form").addEventListener("submit", start);
  connect();
}
init();

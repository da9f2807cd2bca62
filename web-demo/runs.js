// The Runs tab, for operators: the tenant's runs filtered (GET /v3/workflows, from Temporal's
// visibility), and one run's timeline (each state with its seq, time and the mode its request
// came by; each webhook attempt with the receiver's answer), its graph with the path taken, and
// the actions an operator takes: terminate it, send a state's webhook again.

import { $, el, TERMINAL } from "./dom.js";
import { clearHighlight, highlight, showGraph } from "./graph.js";

const when = (t) => (t ? new Date(t).toLocaleString() : "–");

/** The tab's behaviour; `load()` lists runs with the form's filters. */
export function runsTab(api) {
  let shown = null; // the run opened: { workflowId, definition, version, status }
  let nextPage = null;
  let listed = 0; // the latest listing asked for: an earlier one answering late is dropped

  function filters() {
    const q = new URLSearchParams();
    for (const [param, id] of [
      ["definition", "runs-definition"],
      ["status", "runs-status"],
      ["waitingOn", "runs-waiting-on"],
      ["waitingLongerThanSecs", "runs-waiting-longer"],
    ]) {
      const v = $(id).value.trim();
      if (v) q.set(param, v);
    }
    return q;
  }

  function say(id, text, isError = false) {
    $(id).textContent = text;
    $(id).className = isError ? "field-error" : "muted";
  }

  function row(run) {
    const open = el("button", { type: "button", class: "link", "data-run": run.workflowId }, run.workflowId);
    open.addEventListener("click", () => openRun(run));
    const waiting = run.waitingOn ? `${run.waitingOn} since ${when(run.waitingSince)}` : "–";
    return el(
      "tr",
      {},
      el("td", {}, open),
      el("td", {}, `${run.definition} v${run.version}`),
      el("td", { class: `status ${run.status}` }, run.status),
      el("td", {}, waiting),
      el("td", {}, when(run.startedAt)),
    );
  }

  async function load(more = false) {
    const q = filters();
    if (more && nextPage) q.set("pageToken", nextPage);
    say("runs-msg", "Loading…");
    const mine = ++listed;
    const r = await api.call("GET", `/v3/workflows?${q}`);
    if (mine !== listed) return;
    if (!r.ok) {
      say("runs-msg", `${r.status}: ${r.body.message || "the runs could not be listed"}`, true);
      return;
    }
    nextPage = r.body.nextPageToken || null;
    $("runs-more").hidden = !nextPage;
    const rows = r.body.runs.map(row);
    if (more) $("runs-list").append(...rows);
    else $("runs-list").replaceChildren(...rows);
    const n = $("runs-list").children.length;
    say("runs-msg", n ? `${n} run${n === 1 ? "" : "s"}` : "No runs match these filters.");
  }

  /** One webhook attempt: its number, the receiver's answer, and when. */
  function attemptLine(a) {
    const answer = a.status ? `answered ${a.status}` : "no answer";
    const what = a.resend ? "resend" : `attempt ${a.attempt}`;
    const error = a.lastError ? ` · ${a.lastError}` : "";
    return el("li", { class: `attempt ${a.state}` }, `${what} · ${a.state} · ${answer} · ${when(a.updatedAt)}${error}`);
  }

  function stateItem(st) {
    const how = st.mode ? `${st.request} via ${st.mode}` : "by itself";
    const item = el(
      "li",
      { class: st.status, "data-seq": String(st.seq) },
      `#${st.seq} ${st.status}${st.node ? ` at ${st.node}` : ""} · ${how} · ${when(st.at)}`,
    );
    if (st.webhooks.length) {
      item.append(
        el(
          "ol",
          { class: "attempts", "aria-label": `Webhook attempts of state ${st.seq}` },
          ...st.webhooks.map(attemptLine),
        ),
      );
      const resend = el("button", { type: "button", class: "secondary small" }, `Resend #${st.seq}`);
      resend.addEventListener("click", () => resendState(st.seq));
      item.append(resend);
    }
    return item;
  }

  async function showTimeline() {
    const id = shown.workflowId;
    const r = await api.call("GET", `/v3/workflow/${encodeURIComponent(id)}/timeline`);
    if (shown.workflowId !== id) return;
    if (!r.ok) {
      $("run-timeline").replaceChildren(el("li", { class: "field-error" }, `${r.status}: ${r.body.message}`));
      return;
    }
    const states = r.body.states;
    const items = states.map(stateItem);
    // What the gateway let go of this run, said above its states (it keeps 1,000 of each list).
    const cut = (text) => items.unshift(el("li", { class: "muted" }, text));
    if (!r.body.requestsComplete)
      cut("Only the newest 1,000 requests are kept: older states may not say how they came.");
    if (!r.body.webhooksComplete) cut("Only the newest 1,000 webhook attempts are kept: older states may show fewer.");
    if (!r.body.complete) cut("Older states are no longer kept.");
    $("run-timeline").replaceChildren(...items);
    const last = states[states.length - 1];
    $("run-terminate").disabled = !last || TERMINAL.includes(last.status);
    clearHighlight($("run-graph"));
    let lastNode = null;
    for (const st of states) lastNode = highlight($("run-graph"), st, lastNode);
  }

  async function openRun(run) {
    shown = run;
    for (const b of document.querySelectorAll("#runs-list button[data-run]")) {
      b.setAttribute("aria-current", String(b.dataset.run === run.workflowId));
    }
    $("run-detail-id").textContent = run.workflowId;
    say("run-msg", "");
    $("run-actions").hidden = false;
    await showGraph(api, $("run-graph"), $("run-graph-caption"), run.definition, run.version);
    await showTimeline();
    $("run-detail-h").focus();
  }

  async function terminate() {
    const id = shown.workflowId;
    if (!confirm(`Terminate ${id}? It stops where it is, and its callers get TERMINATED.`)) return;
    try {
      await api.client.terminate(id);
      say("run-msg", `Terminated ${id}.`);
    } catch (e) {
      say("run-msg", `${e.status || ""} ${e.message}`, true);
    }
    await showTimeline();
  }

  async function resendState(seq) {
    const id = shown.workflowId;
    const r = await api.call("POST", `/v3/workflow/${encodeURIComponent(id)}/deliveries/${seq}/resend`);
    if (r.ok) {
      const error = r.body.error ? `: ${r.body.error}` : "";
      say(
        "run-msg",
        `State #${seq} sent again to ${r.body.url}: ${r.body.outcome}${error}.`,
        r.body.outcome !== "delivered",
      );
    } else {
      say("run-msg", `${r.status}: ${r.body.message}`, true);
    }
    await showTimeline();
  }

  $("runs-form").addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });
  $("runs-more").addEventListener("click", () => load(true));
  $("run-terminate").addEventListener("click", terminate);
  $("run-refresh").addEventListener("click", () => shown && showTimeline());
  return { load };
}

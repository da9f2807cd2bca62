// The Definitions tab's Try it: the definition in the editor (saved or not) run by the gateway's
// simulator (POST /v3/definitions/{id}/simulate: the workflow's own interpreter, no Temporal, no
// calls out) on the start parameters, the stubbed HTTP responses and the answers given so far.
// Where the run waits on a screen, the screen is shown and its answer, once typed, is added to
// the answers and the whole run simulated again. The path taken lights up on the graph.

import { $, el } from "./dom.js";
import { clearHighlight, highlight } from "./graph.js";
import { SAMPLES } from "./samples.js";
import { render, showRefusal } from "./screen.js";

const NS = "try-";

const pretty = (v) => (v === undefined ? "" : JSON.stringify(v));
const short = (v) => {
  const s = pretty(v);
  return s.length > 80 ? s.slice(0, 78) + "…" : s;
};

/**
 * `definition()`: the editor's definition, parsed (throws on bad JSON); `showErrors(r)`: shows a
 * refused call's errors in the tab; `graph`: the tab's graph box.
 */
export function tryIt(api, { definition, showErrors, graph }) {
  let answers = [];

  function parsed(id, label) {
    try {
      return JSON.parse($(id).value || "{}");
    } catch (e) {
      throw new Error(`${label} must be JSON: ${e.message}`);
    }
  }

  /** A definition was opened (or a new one begun): its samples, no answers. */
  function reset(id) {
    answers = [];
    const sample = SAMPLES[id] || {};
    $("try-params").value = JSON.stringify(sample.params || {});
    $("try-responses").value = JSON.stringify(sample.responses || {}, null, 1);
    $("try-answers").replaceChildren();
    $("try-path").replaceChildren();
    $("try-screen").replaceChildren();
    $("try-end").textContent = "";
    clearHighlight(graph);
  }

  function showAnswers() {
    const item = (a, i) =>
      el(
        "li",
        { "data-answer": String(i) },
        `${a.node}: ${a.timedOut ? "(timed out)" : short(a.viewResponse.selectedOptions)} `,
        el("button", { type: "button", class: "link", title: "Remove this answer", onclick: () => drop(i) }, "remove"),
      );
    $("try-answers").replaceChildren(...answers.map(item));
  }

  function showPath(report) {
    const step = (p) => {
      const out = p.error ? `✗ ${p.error}` : p.output !== undefined ? `→ ${short(p.output)}` : "";
      const tries = p.attempts > 1 ? ` (${p.attempts} attempts)` : "";
      return el("li", { "data-step": p.node, class: p.error ? "failed" : "" }, `${p.node} · ${p.type} ${out}${tries}`);
    };
    $("try-path").replaceChildren(...report.path.map(step));
    const nodes = report.path.map((p) => p.node);
    const at = report.finalState.node;
    if (at && nodes[nodes.length - 1] !== at) nodes.push(at);
    clearHighlight(graph);
    highlight(graph, { path: nodes, node: at }, null);
  }

  function showEnd(report) {
    const f = report.finalState;
    const end = $("try-end");
    end.className = "";
    if (report.stopped) {
      end.textContent = `Stopped at ${report.stopped.node || "–"}: ${report.stopped.message}`;
      end.className = "field-error";
    } else if (f.workflowStatus === "WAITING") {
      end.textContent = `Waiting at screen ${f.node} (seq ${f.seq}): answer it below.`;
    } else if (f.workflowStatus === "SCHEDULER_WAITING" || f.workflowStatus === "RUNNING") {
      end.textContent = `${f.workflowStatus} at ${f.node}`;
    } else {
      const what = f.errorMessage || pretty(f.disposition);
      end.textContent = `${f.workflowStatus} at ${f.node}${what ? ": " + what : ""}`;
      end.className = f.workflowStatus === "COMPLETED" ? "ok-text" : "field-error";
    }
    end.dataset.status = report.stopped ? "STOPPED" : f.workflowStatus;
  }

  /** A node the run stopped at for want of a response: a skeleton to edit, added to the stubs. */
  function stubSkeleton(report) {
    if (!report.stopped || report.stopped.reason !== "no_response") return;
    let responses;
    try {
      responses = parsed("try-responses", "The stubbed responses");
    } catch {
      return;
    }
    if (responses[report.stopped.node]) return;
    responses[report.stopped.node] = { status: 200, body: {} };
    $("try-responses").value = JSON.stringify(responses, null, 1);
  }

  async function run() {
    let body;
    try {
      body = {
        definition: definition(),
        params: parsed("try-params", "The start parameters"),
        responses: parsed("try-responses", "The stubbed responses"),
        answers,
      };
    } catch (e) {
      showErrors({ status: 400, body: { message: e.message } });
      return;
    }
    $("def-errors").replaceChildren();
    const id = body.definition && body.definition.id;
    const r = await api.call("POST", `/v3/definitions/${encodeURIComponent(id || "_")}/simulate`, body);
    if (!r.ok) {
      showErrors(r);
      $("try-end").textContent = `Not run: ${r.body.message}`;
      $("try-end").className = "field-error";
      return;
    }
    const report = r.body;
    // The answer just typed and refused is shown on its screen, not kept.
    const last = report.rejections.find((x) => x.answer === answers.length - 1);
    if (last) answers.pop();
    showAnswers();
    showPath(report);
    showEnd(report);
    stubSkeleton(report);
    const f = report.finalState;
    if (f.workflowStatus === "WAITING" && f.view && !report.stopped) {
      render(
        f,
        { answer: (selected) => give({ node: f.node, viewResponse: { selectedOptions: selected } }) },
        $("try-screen"),
        NS,
      );
      if (last) showRefusal(last.error, $("try-screen"), NS);
      const screen = body.definition.states && body.definition.states[f.node];
      if (screen && screen.node && screen.node.timeoutMs) {
        const timeOut = () => give({ node: f.node, timedOut: true });
        const label = `Let it time out (${screen.node.timeoutMs} ms)`;
        $("try-screen").append(el("button", { type: "button", class: "secondary", onclick: timeOut }, label));
      }
    } else {
      $("try-screen").replaceChildren();
    }
  }

  function give(answer) {
    answers.push(answer);
    return run();
  }

  function drop(i) {
    answers.splice(i, 1);
    return run();
  }

  $("try-run").addEventListener("click", run);
  $("try-clear").addEventListener("click", () => {
    answers = [];
    return run();
  });
  return { reset };
}

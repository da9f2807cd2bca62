// The Definitions tab: list, edit (the SNAPSHOT as JSON), save, publish, activate and start a
// version; validation errors listed and marked on the drawing.

import { $, el } from "./dom.js";
import { markErrors, showGraph } from "./graph.js";
import { tryIt } from "./tryit.js";

const NEW_DEFINITION = {
  id: "my_flow",
  description: "A new flow",
  startNode: "ask",
  states: {
    ask: {
      node: {
        type: "INSTRUCTION",
        layoutId: "my_screen",
        inputOptions: [
          { id: "go", tags: { values: ["ui.button"] }, possibleValues: [{ displayValue: "Go", value: "go" }] },
        ],
      },
      nextNode: "done",
    },
    done: { node: { type: "SUCCESS", disposition: { message: "Done" } } },
  },
};

const path = (id, rest = "") => `/v3/definitions/${encodeURIComponent(id)}${rest}`;

/**
 * The JSON editor (CodeMirror, checked against the gateway's definition schema), loaded when the
 * tab is first used: it is the page's one large module. Resolves to the element whose `value`
 * is the text.
 */
let editor;
function jsonEditor(api) {
  editor ??= Promise.all([import("./editor.js"), api.call("GET", "/v3/schemas/definition.json")]).then(
    ([{ mountEditor }, schema]) => {
      mountEditor($("def-json"), { schema: schema.ok ? schema.body : undefined, labelledBy: "def-json-label" });
      return $("def-json");
    },
  );
  return editor;
}

/**
 * `onWorkflows(defs)`: the startable definitions changed; `onStart(id, version)`: start one.
 */
export function definitionsTab(api, { onWorkflows, onStart }) {
  let editing = null; // { id, isNew }
  // The editor's text, parsed; loaded by then (Try it is reset when a definition is opened).
  let editorBox = null;
  const definition = () => {
    if (!editorBox) throw new Error("Open a definition first.");
    try {
      return JSON.parse(editorBox.value);
    } catch (e) {
      throw new Error(`The definition is not JSON: ${e.message}`);
    }
  };

  function status(text) {
    $("def-status").textContent = text;
    $("def-status").className = "ok-text";
  }

  function showErrors(r) {
    const errors = (r.body && r.body.details && r.body.details.errors) || [];
    const shown = errors.length ? errors : [{ message: (r.body && r.body.message) || `error ${r.status}` }];
    $("def-errors").replaceChildren(
      ...shown.map((e) =>
        el(
          "li",
          e.node ? { "data-node-error": e.node } : {},
          `${e.node ? e.node + " › " : ""}${e.field ? e.field + ": " : ""}${e.message}`,
        ),
      ),
    );
    markErrors($("def-graph"), errors);
  }
  const trial = tryIt(api, { definition, showErrors, graph: $("def-graph") });

  async function load(select) {
    const r = await api.call("GET", "/v3/definitions");
    if (!r.ok) return showErrors(r);
    const defs = r.body.definitions;
    const item = (d) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            "data-def": d.id,
            "aria-current": String(Boolean(editing && editing.id === d.id)),
            onclick: () => open(d.id),
          },
          `${d.id} · active ${d.active ?? "–"} · latest ${d.latest ?? "–"}${d.snapshot ? " · draft" : ""}`,
        ),
      );
    $("def-list").replaceChildren(...defs.map(item));
    onWorkflows(defs);
    if (select) await open(select);
  }

  async function open(id) {
    editing = { id, isNew: false };
    for (const b of $("def-list").querySelectorAll("button"))
      b.setAttribute("aria-current", String(b.dataset.def === id));
    $("def-title").textContent = id;
    $("def-errors").replaceChildren();
    $("def-status").textContent = "";
    const [snapshot, versions] = await Promise.all([
      api.call("GET", path(id, "?version=SNAPSHOT")),
      api.call("GET", path(id, "/versions")),
    ]);
    const shown = snapshot.ok ? snapshot : await api.call("GET", path(id));
    if (!shown.ok) return showErrors(shown);
    const json = { ...shown.body };
    delete json.version;
    editorBox = await jsonEditor(api);
    editorBox.value = JSON.stringify(json, null, 2);
    trial.reset(id);
    const list = (versions.ok && versions.body.versions) || [];
    $("def-activate-version").replaceChildren(
      ...list
        .slice()
        .reverse()
        .map((v) => el("option", { value: v.version }, `v${v.version}${v.active ? " (active)" : ""}`)),
    );
    const when = (v) => `v${v.version} by ${v.publishedBy} at ${new Date(v.publishedAt).toLocaleString()}`;
    $("def-meta").textContent = list.length
      ? list.map((v) => `${when(v)}${v.active ? " — ACTIVE" : ""}`).join(" · ")
      : "Not published yet.";
    await showGraph(api, $("def-graph"), $("defgraph-caption"), id, snapshot.ok ? "SNAPSHOT" : "ACTIVE");
  }

  async function create() {
    editing = { id: null, isNew: true };
    $("def-title").textContent = "(new)";
    $("def-meta").textContent = "Save creates its SNAPSHOT.";
    editorBox = await jsonEditor(api);
    editorBox.value = JSON.stringify(NEW_DEFINITION, null, 2);
    trial.reset(null);
    $("def-errors").replaceChildren();
    $("def-graph").replaceChildren();
    $("def-activate-version").replaceChildren();
  }

  async function save() {
    let body;
    try {
      body = JSON.parse((await jsonEditor(api)).value);
    } catch (e) {
      showErrors({ status: 400, body: { message: `Not JSON: ${e.message}` } });
      return false;
    }
    $("def-errors").replaceChildren();
    const r =
      editing && !editing.isNew
        ? await api.call("PUT", path(editing.id), body)
        : await api.call("POST", "/v3/definitions", body);
    if (!r.ok) {
      showErrors(r);
      $("def-status").textContent = "";
      return false;
    }
    status("SNAPSHOT saved.");
    await load(r.body.id);
    return true;
  }

  async function publish() {
    if (!(await save())) return;
    const r = await api.call("POST", path(editing.id, "/publish"));
    if (!r.ok) return showErrors(r);
    await open(editing.id);
    status(
      r.body.published ? `Published as version ${r.body.version}.` : `Unchanged: still version ${r.body.version}.`,
    );
  }

  async function activate() {
    const version = Number($("def-activate-version").value);
    if (!editing || !version) return;
    const r = await api.call("POST", path(editing.id, "/activate"), { version });
    if (!r.ok) return showErrors(r);
    await load(editing.id);
    status(`Version ${version} is ACTIVE: new starts use it.`);
  }

  function start() {
    if (editing && editing.id) onStart(editing.id, $("def-activate-version").value || "ACTIVE");
  }

  $("def-new").addEventListener("click", create);
  $("def-save").addEventListener("click", save);
  $("def-publish").addEventListener("click", publish);
  $("def-activate").addEventListener("click", activate);
  $("def-start").addEventListener("click", start);
  return { load };
}

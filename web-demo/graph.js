// Workflow graphs: the server lays them out (SVG); every node is <g class="node" data-node=NAME>,
// every edge <g class="edge" data-from data-to>. Each state names its node and the path since the
// last one, which light up as states arrive.

import { byAttr, el } from "./dom.js";

/** Draws `workflow`'s graph at `version` into `box`; false when there is none. */
export async function showGraph(api, box, caption, workflow, version) {
  const v = version || "ACTIVE";
  const r = await api.call(
    "GET",
    `/v3/definitions/${encodeURIComponent(workflow)}/graph?format=svg&version=${encodeURIComponent(v)}`,
  );
  if (!r.ok || typeof r.body !== "string") {
    box.replaceChildren(el("p", { class: "muted" }, `No graph (${r.status}).`));
    caption.textContent = "";
    return false;
  }
  // Our own server's SVG; labels and attributes are escaped there.
  box.innerHTML = r.body;
  caption.textContent = `${workflow} · ${v}`;
  return true;
}

/** Lights up a state's path and marks its node current; answers the node it left current. */
export function highlight(box, st, lastNode) {
  const svg = box.querySelector("svg");
  if (!svg) return lastNode;
  svg.querySelectorAll("g.node.current").forEach((g) => g.classList.remove("current"));
  let prev = lastNode;
  for (const n of st.path || []) {
    byAttr(svg, "g.node", { node: n }).forEach((g) => g.classList.add("visited"));
    if (prev) byAttr(svg, "g.edge", { from: prev, to: n }).forEach((g) => g.classList.add("visited"));
    prev = n;
  }
  if (!st.node) return lastNode;
  byAttr(svg, "g.node", { node: st.node }).forEach((g) => g.classList.add("current"));
  return st.node;
}

/** Unlights a graph: no path taken, no current node. */
export function clearHighlight(box) {
  box.querySelectorAll("g.visited, g.current").forEach((g) => g.classList.remove("visited", "current"));
}

/** Marks each node a definition's validation named, with its message beside it. */
export function markErrors(box, errors) {
  const svg = box.querySelector("svg");
  if (!svg) return;
  for (const e of errors) {
    if (!e.node) continue;
    for (const g of byAttr(svg, "g.node", { node: e.node })) {
      g.classList.add("invalid");
      const b = g.getBBox();
      const t = document.createElementNS("http://www.w3.org/2000/svg", "text");
      t.setAttribute("class", "node-error");
      t.setAttribute("data-node-error", e.node);
      t.setAttribute("x", String(b.x + b.width + 6));
      t.setAttribute("y", String(b.y + b.height / 2));
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

// Small DOM helpers shared by the page's modules.

export const $ = (id) => document.getElementById(id);

/** An element with attributes (`class`, `on…` listeners, others as attributes) and children. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

/** Elements under `root` matching `sel` whose `data-*` attributes equal `attrs`. */
export const byAttr = (root, sel, attrs) =>
  root.querySelectorAll(
    sel +
      Object.entries(attrs)
        .map(([k, v]) => `[data-${k}="${CSS.escape(v)}"]`)
        .join(""),
  );

export const TERMINAL = ["COMPLETED", "FAILED", "TERMINATED"];

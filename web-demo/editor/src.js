// The definition editor (bundled into ../vendor/editor.js): CodeMirror 6 on JSON, with
// completion, hover help and inline errors from the gateway's definition schema
// (`/v3/schemas/definition.json`), and JSON syntax errors marked as they are typed.

import { EditorView, basicSetup } from "codemirror";
import { EditorState } from "@codemirror/state";
import { linter, lintGutter } from "@codemirror/lint";
import { hoverTooltip } from "@codemirror/view";
import { json, jsonLanguage, jsonParseLinter } from "@codemirror/lang-json";
import {
  handleRefresh,
  jsonCompletion,
  jsonSchemaHover,
  jsonSchemaLinter,
  stateExtensions,
  updateSchema,
} from "codemirror-json-schema";

/**
 * The schema in the dialect the editor's library reads (json-schema-library 9, through
 * codemirror-json-schema: draft 04 for errors, draft 07 for completion):
 * - a node's fields are chosen by its `type` with `if`/`then`, which draft 04 does not know:
 *   each such choice becomes a `oneOf` chosen by that property (`oneOfProperty`, the library's
 *   own keyword), so a wrong field is still marked where it is; `const` becomes a one-value
 *   `enum`;
 * - the library loses the data below a map's `additionalProperties` when that is a `$ref` (the
 *   `states` map), so completion inside a node found nothing: those are inlined.
 */
export function forEditor(schema) {
  const defs = {};
  const convert = (s) => {
    if (Array.isArray(s)) return s.map(convert);
    if (!s || typeof s !== "object") return s;
    const out = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, convert(v)]));
    if ("const" in out) {
      out.enum = [out.const];
      delete out.const;
    }
    const cases = Array.isArray(out.allOf) && out.allOf.length > 0 && out.allOf.every((c) => c.if && c.then);
    if (cases) {
      out.oneOf = out.allOf.map((c) => c.then);
      out.oneOfProperty = Object.keys(out.allOf[0].if.properties)[0];
      delete out.allOf;
    }
    return out;
  };
  const converted = convert(schema);
  Object.assign(defs, converted.$defs);
  const inline = (s) => {
    if (Array.isArray(s)) return s.forEach(inline);
    if (!s || typeof s !== "object") return;
    const ref = s.additionalProperties && s.additionalProperties.$ref;
    const name = typeof ref === "string" && ref.startsWith("#/$defs/") && ref.slice(8);
    if (name && defs[name]) s.additionalProperties = structuredClone(defs[name]);
    Object.values(s).forEach(inline);
  };
  inline(converted);
  return converted;
}

/**
 * Mounts an editor in `parent`, which then has a `value` (the text, as a textarea's) and a
 * `setSchema(schema)`.
 */
export function mountEditor(parent, { doc = "", schema, labelledBy } = {}) {
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        basicSetup,
        json(),
        lintGutter(),
        linter(jsonParseLinter(), { delay: 300 }),
        linter(jsonSchemaLinter(), { delay: 300, needsRefresh: handleRefresh }),
        jsonLanguage.data.of({ autocomplete: jsonCompletion() }),
        hoverTooltip(jsonSchemaHover()),
        stateExtensions(schema && forEditor(schema)),
        EditorView.lineWrapping,
        EditorView.contentAttributes.of(labelledBy ? { "aria-labelledby": labelledBy } : {}),
      ],
    }),
  });
  Object.defineProperty(parent, "value", {
    get: () => view.state.doc.toString(),
    set: (text) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
  });
  parent.setSchema = (s) => updateSchema(view, forEditor(s));
  parent.editorView = view;
  return view;
}

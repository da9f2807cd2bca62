// Lint rules for the demo page's modules (run by scripts/browser-test.sh with the ESLint that
// tests/browser installs). No imports here: the page's folder has no node_modules of its own.

const browser = Object.fromEntries(
  [
    "window",
    "document",
    "location",
    "fetch",
    "WebSocket",
    "EventSource",
    "CSS",
    "Node",
    "sessionStorage",
    "prompt",
    "confirm",
    "URLSearchParams",
    "setTimeout",
    "setInterval",
    "clearInterval",
    "console",
    "structuredClone",
    "Event",
  ].map((name) => [name, "readonly"]),
);

export default [
  // The editor's bundle is built (web-demo/editor), not written.
  { ignores: ["vendor/**", "editor/node_modules/**"] },
  {
    files: ["*.js", "editor/src.js"],
    languageOptions: { ecmaVersion: 2024, sourceType: "module", globals: browser },
    rules: {
      "no-undef": "error",
      "no-unused-vars": ["error", { args: "after-used" }],
      "no-implicit-globals": "error",
      "no-var": "error",
      "prefer-const": "error",
      eqeqeq: ["error", "always", { null: "ignore" }],
      "no-shadow": "error",
      "no-use-before-define": ["error", { functions: false }],
      "no-empty": ["error", { allowEmptyCatch: false }],
      "no-unreachable": "error",
      "no-dupe-keys": "error",
      "no-redeclare": "error",
      "no-self-compare": "error",
      "no-constant-condition": "error",
      "no-unsafe-finally": "error",
      "no-fallthrough": "error",
      "no-await-in-loop": "off",
    },
  },
];

// examples/react built against React 18 instead of its own React 19 (the npm aliases react18 and
// react-dom18 of this folder), and served on $PORT: the kit's peer range says 18 too, so a
// browser test runs on it. Usage: DRIFT_URL=… DRIFT_API_KEY_FILE=… PORT=… node react18.mjs
import * as esbuild from "../../examples/react/node_modules/esbuild/lib/main.js";
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

const example = fileURLToPath(new URL("../../examples/react/", import.meta.url));
const here = fileURLToPath(new URL(".", import.meta.url));
const out = mkdtempSync(`${tmpdir()}/drift-react18-`);
copyFileSync(`${example}www/index.html`, `${out}/index.html`);
const key = readFileSync(process.env.DRIFT_API_KEY_FILE, "utf8").trim();
const ctx = await esbuild.context({
  absWorkingDir: example,
  entryPoints: ["src/main.tsx"],
  bundle: true,
  format: "esm",
  target: "es2022",
  outfile: `${out}/app.js`,
  jsx: "automatic",
  logLevel: "warning",
  define: { DRIFT_URL: JSON.stringify(process.env.DRIFT_URL), DRIFT_API_KEY: JSON.stringify(key) },
  // Every import of React, the kit's and react-dom's own included, goes to React 18.
  alias: { react: "react18", "react-dom": "react-dom18" },
  nodePaths: [`${here}node_modules`],
});
await ctx.rebuild();
const { version } = JSON.parse(readFileSync(`${here}node_modules/react18/package.json`, "utf8"));
await ctx.serve({ servedir: out, host: "127.0.0.1", port: Number(process.env.PORT) });
console.log(`react18: examples/react on React ${version} at http://127.0.0.1:${process.env.PORT}/`);

// Bundles the example with esbuild into www/app.js, and with --serve serves www/ on
// http://127.0.0.1:$PORT (default 5173), rebuilding on each reload.
//
// Where the gateway is and the credential the page calls it with are set at build time from
// DRIFT_URL and DRIFT_API_KEY (or DRIFT_API_KEY_FILE, e.g. drift dev's .drift/dev-api-key). That
// suits a machine of your own; a real app gets a short-lived token from its backend instead (the
// client's `token` may be a function) and never ships a key. Start the gateway with
// `--allowed-origins http://127.0.0.1:5173` so this page may call it.
import * as esbuild from "esbuild";
import { readFileSync } from "node:fs";

const url = process.env.DRIFT_URL ?? "http://127.0.0.1:8080";
const keyFile = process.env.DRIFT_API_KEY_FILE ?? "../../.drift/dev-api-key";
let key = process.env.DRIFT_API_KEY;
if (!key) {
  try {
    key = readFileSync(keyFile, "utf8").trim();
  } catch {
    console.error(`example: no DRIFT_API_KEY, and ${keyFile} cannot be read: start drift dev first, or set one`);
    process.exit(1);
  }
}

const options = {
  entryPoints: ["src/main.tsx"],
  bundle: true,
  format: "esm",
  target: "es2022",
  outfile: "www/app.js",
  jsx: "automatic",
  logLevel: "warning",
  define: { DRIFT_URL: JSON.stringify(url), DRIFT_API_KEY: JSON.stringify(key) },
  // In this repository the kit is linked from clients/: React must still be this app's one copy
  // (an alias resolves from here). An app installing @drift/react from a registry needs none of it.
  alias: { react: "react", "react-dom": "react-dom" },
};

if (process.argv.includes("--serve")) {
  const port = Number(process.env.PORT ?? 5173);
  const ctx = await esbuild.context(options);
  await ctx.serve({ servedir: "www", host: "127.0.0.1", port });
  console.log(`example: http://127.0.0.1:${port}/ (gateway ${url})`);
} else {
  await esbuild.build(options);
}

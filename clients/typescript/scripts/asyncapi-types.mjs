// The live protocol's message types from the gateway's AsyncAPI document: its schemas and each
// message's payload (`server.state` as `ServerState`, …) put into an OpenAPI document's
// components, for openapi-typescript to turn into `src/asyncapi.ts` as it turns the HTTP API
// into `src/openapi.ts`. Usage: node scripts/asyncapi-types.mjs ASYNCAPI_JSON OUT_JSON
import { readFileSync, writeFileSync } from "node:fs";

const [from, to] = process.argv.slice(2);
if (!from || !to) throw new Error("usage: asyncapi-types.mjs ASYNCAPI_JSON OUT_JSON");
const doc = JSON.parse(readFileSync(from, "utf8"));
const schemas = { ...doc.components.schemas };
const named = (message) =>
  message
    .split(/[.-]/)
    .map((part) => part[0].toUpperCase() + part.slice(1))
    .join("");
for (const [key, message] of Object.entries(doc.components.messages)) {
  const name = named(key);
  if (name in schemas) throw new Error(`message ${key} would take the name of schema ${name}`);
  schemas[name] = message.payload;
}
const openapi = {
  openapi: "3.1.0",
  info: { title: `${doc.info.title} (live messages)`, version: doc.info.version },
  paths: {},
  components: { schemas },
};
writeFileSync(to, JSON.stringify(openapi, null, 2));

// The example app: pick one of Drift's examples, start it, and answer its screens. Everything
// screen-shaped is the kit's (useDriftFlow, <DriftScreen>); this file only chooses what to run.
import { useMemo, useState } from "react";
import { createRoot } from "react-dom/client";
import { createClient, type NodeResult } from "@drift/client";
import { DriftScreen, useDriftFlow, type FlowMode } from "@drift/react";
import "@drift/react/drift.css";

declare const DRIFT_URL: string;
declare const DRIFT_API_KEY: string;

const client = createClient({ baseUrl: DRIFT_URL, token: DRIFT_API_KEY });

/** Start parameters for the examples (others start with none). */
const PARAMS: Record<string, unknown> = {
  refund: { orderId: "o-1001" },
  bank_account: {},
  monthly_report: { month: "2026-11" },
};

/** The examples' instruction templates, as a team would keep them beside its screens. */
const TEMPLATES = {
  "refund.summary": "Order {orderId}: {amount} {currency}. What went wrong?",
  "refund.confirm": "Refund {amount} for the reason “{reason}”?",
  "refund.manual_review": "This order ({amount}) is above the automatic refund limit; a colleague will review it.",
  "bank.intro": "Enter your 8-digit account number. Use “Verify” to check it before saving.",
};

/** The bank example's verify node, in words. */
function verified(r: NodeResult) {
  const v = r.response as { valid?: boolean; bankName?: string; error?: string };
  if (v?.valid === true) return `✓ valid — ${v.bankName}`;
  if (v?.valid === false) return "✗ not a valid account";
  return v?.error ?? JSON.stringify(v);
}

const DELIVERY: Record<string, { mode: FlowMode; transport: "sse" | "ws" }> = {
  sse: { mode: "live", transport: "sse" },
  ws: { mode: "live", transport: "ws" },
  sync: { mode: "sync", transport: "sse" },
};

function App() {
  const [workflow, setWorkflow] = useState("refund");
  const [delivery, setDelivery] = useState("sse");
  const [checkFirst, setCheckFirst] = useState(true);
  const target = useMemo(
    () => ({ workflow, params: PARAMS[workflow] ?? {}, ...DELIVERY[delivery] }),
    [workflow, delivery],
  );
  const flow = useDriftFlow(client, target, { templates: TEMPLATES, checkBeforeSending: checkFirst });
  return (
    <main>
      <h1>Drift · React example</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void flow.start();
        }}
      >
        <fieldset>
          <legend>Run a workflow</legend>
          <label>
            Workflow
            <input id="workflow" list="examples" value={workflow} onChange={(e) => setWorkflow(e.target.value)} />
            <datalist id="examples">
              {Object.keys(PARAMS).map((w) => (
                <option key={w} value={w} />
              ))}
            </datalist>
          </label>
          <label>
            Screens arrive
            <select id="delivery" value={delivery} onChange={(e) => setDelivery(e.target.value)}>
              <option value="sse">live, over SSE</option>
              <option value="ws">live, over a WebSocket</option>
              <option value="sync">as answers (sync)</option>
            </select>
          </label>
          <label style={{ display: "flex", gap: "0.4rem", alignItems: "center" }}>
            <input
              id="check-first"
              type="checkbox"
              checked={checkFirst}
              onChange={(e) => setCheckFirst(e.target.checked)}
            />
            Check answers in the browser first
          </label>
          <button id="start" type="submit" className="drift-button drift-button--primary" disabled={flow.pending}>
            Start
          </button>
        </fieldset>
      </form>
      <div className="run">
        {flow.workflowId && (
          <p className="meta" data-testid="run">
            {flow.workflowId} · seq {flow.state?.seq ?? "…"} · {flow.status}
          </p>
        )}
        <DriftScreen flow={flow} nodeResult={verified} />
      </div>
    </main>
  );
}

createRoot(document.getElementById("root")!).render(<App />);

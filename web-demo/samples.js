// Sample inputs for the example workflows: start parameters for the Run tab, and stubbed HTTP
// responses for the Definitions tab's Try it (as in the examples' *.test.json).

export const SAMPLES = {
  refund: {
    params: { orderId: "o-1001" },
    responses: {
      fetch_order: { status: 200, body: { orderId: "o-1001", amount: 120, currency: "EUR" } },
      issue_refund: { status: 201, body: { refundId: "rf-1", status: "issued" } },
    },
  },
  bank_account: {
    params: {},
    responses: { verify_on_save: { status: 200, body: { valid: true, bankName: "Demo Bank" } } },
  },
  monthly_report: {
    params: { month: "2026-11" },
    responses: { generate: { status: 201, body: { reportId: "rep-7" } } },
  },
};

/** Start parameters for `workflow`: its sample's, or none. */
export const sampleParams = (workflow) => (SAMPLES[workflow] && SAMPLES[workflow].params) || {};

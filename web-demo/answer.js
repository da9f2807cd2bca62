// The hosted answer page: one screen of one run, opened from an answer link by a person outside
// any app (an email, a chat message). It draws the screen with the demo's renderer and the
// screen kit's core, reads it through the link alone (`/answer/{token}/screen`) and answers with
// its own POST and form token, so a mail scanner or a link preview that fetches the URL answers
// nothing. No credential is ever on this page.

import { $, el } from "./dom.js";
import { render, showRefusal } from "./screen.js";

/** The link's path (`/answer/{token}`): the token is its only authority. */
const base = location.pathname.replace(/\/+$/, "");

const when = (at) => new Date(at).toLocaleString();

/** What the page says once the link can answer no more. */
const CLOSED = {
  answered: (s) =>
    `This screen was answered${s.answeredBy ? ` by ${s.answeredBy}` : ""}` +
    `${s.answeredAt ? ` on ${when(s.answeredAt)}` : ""}. Thank you: nothing more is needed from you.`,
  moved_on: () =>
    "This screen has already been dealt with and the workflow has moved on. Nothing more is needed from you.",
  expired: (s) => `This link expired on ${when(s.expiresAt)}. Ask whoever sent it for a new one.`,
  revoked: () => "This link was withdrawn by whoever sent it. Ask them for a new one if you still need to answer.",
};

function closed(text, status) {
  $("screen").replaceChildren(
    el("div", { class: "banner", role: "status", "data-testid": "link-status", "data-status": status }, text),
  );
}

function show(s) {
  $("for").textContent = s.assignee ? `For ${s.assignee}. This link works until ${when(s.expiresAt)}.` : "";
  if (s.status !== "open") return closed((CLOSED[s.status] || (() => s.status))(s), s.status);
  const state = { workflowStatus: "WAITING", seq: s.seq, view: s.view };
  render(state, { answer: (selectedOptions) => answer(s, selectedOptions) });
  watch();
}

/** While the screen is open: told at once when it is answered elsewhere or the run moves on. */
let live = null;
function watch() {
  if (live) return;
  live = new EventSource(`${base}/events`);
  live.addEventListener("link", (e) => {
    const s = JSON.parse(e.data);
    if (s.status === "open") return;
    live.close();
    show(s);
  });
}

async function call(path, init) {
  const r = await fetch(path, { cache: "no-store", credentials: "omit", ...init });
  const body = await r.json().catch(() => ({ message: `the gateway answered ${r.status}` }));
  return { ok: r.ok, body };
}

async function load() {
  const { ok, body } = await call(`${base}/screen`, { headers: { accept: "application/json" } });
  if (!ok) return closed(body.message || "This link is not valid.", body.code || "invalid");
  show(body);
}

async function answer(s, selectedOptions) {
  const { ok, body } = await call(base, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ formToken: s.formToken, viewResponse: { selectedOptions } }),
  });
  if (ok) {
    if (live) live.close();
    return show(body);
  }
  // Answered elsewhere, expired or revoked meanwhile: say which.
  if (body.code === "link_closed") return load();
  showRefusal(body);
}

load();

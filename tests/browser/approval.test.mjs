// The approval pattern end to end, every part real: an async run of examples/approval.json POSTs
// its WAITING state, which carries `answerUrl` (the screen says "answerLink"), to
// examples/approval-mailer.py; the mailer verifies the signature and emails the link through a
// real SMTP server (aiosmtpd, writing a Maildir); the approver opens the link from the email in a
// fresh browser context with no credential and answers; the run ends, its end reaches the mailer,
// and the requester is emailed the outcome.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHOTS, useChromium } from "./chromium.mjs";
import { GATEWAY, api } from "./api.mjs";

const WEBHOOK_SECRET_FILE = process.env.DRIFT_WEBHOOK_SECRET_FILE || "../../.drift/webhook-secret";
const MAILER = new URL("../../examples/approval-mailer.py", import.meta.url).pathname;
const chromium = useChromium();


/** Polls `probe` until it returns something, for at most `ms`. */
async function until(what, probe, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await probe();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function freePort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const accepts = (port) =>
  new Promise((resolve) => {
    const c = connect(port, "127.0.0.1", () => (c.end(), resolve(true)));
    c.on("error", () => resolve(false));
  });

/** A child process stopped when the file's tests end. */
const children = [];
function run(cmd, args) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  child.output = () => output;
  children.push(child);
  return child;
}

/** The mails in the Maildir, oldest first: headers and the body (quoted-printable undone). */
function mails(maildir) {
  const dir = join(maildir, "new");
  let names = [];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  return names.map((n) => {
    const raw = readFileSync(join(dir, n), "utf8").replace(/\r\n/g, "\n");
    const [head, ...rest] = raw.split("\n\n");
    const header = (h) => (head.match(new RegExp(`^${h}: (.*)$`, "mi")) || [])[1];
    let body = rest.join("\n\n");
    if (/quoted-printable/i.test(header("Content-Transfer-Encoding") || "")) {
      body = body.replace(/=\n/g, "").replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
    }
    return { to: header("To"), subject: header("Subject"), body };
  });
}

let maildir, hook;

before(async () => {
  // A Maildir the SMTP server makes itself (one that exists already it would not set up).
  maildir = join(mkdtempSync(join(tmpdir(), "drift-mail-")), "box");
  const smtp = await freePort();
  const server = run("python3", ["-m", "aiosmtpd", "-n", "-l", `127.0.0.1:${smtp}`, "-c", "aiosmtpd.handlers.Mailbox", maildir]);
  await until("the SMTP server", async () => (await accepts(smtp)) || server.exitCode !== null);
  assert.equal(server.exitCode, null, server.output());
  const mailer = run("python3", [
    MAILER,
    "--listen", "127.0.0.1:0",
    "--smtp", `127.0.0.1:${smtp}`,
    "--secret-file", WEBHOOK_SECRET_FILE,
    "--to", "approver@example.com",
    "--notify", "dana@example.com",
  ]);
  hook = await until("the mailer", async () => (mailer.output().match(/listening on (http:\S+)/) || [])[1] || mailer.exitCode !== null);
  assert.equal(mailer.exitCode, null, mailer.output());
});

after(() => {
  for (const c of children) c.kill();
  rmSync(join(maildir, ".."), { recursive: true, force: true });
});

const spend = { requester: "Dana", amount: 1200, currency: "EUR", purpose: "conference travel" };

/** A fresh browser context with no cookie, storage or credential, at `url`. */
async function stranger(url) {
  const context = await chromium.get().newContext({ viewport: { width: 420, height: 820 } });
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e));
  await page.goto(url);
  return page;
}

const statusOf = (page) => page.getByTestId("link-status");

test("a webhook's answer link is emailed, the approver answers from the email, and the run ends approved", async () => {
  const started = await api("POST", "/v3/workflow/start", { workflow: "approval", params: spend, callbackUrl: hook });
  assert.equal(started.status, 202, JSON.stringify(started.body));
  const id = started.body.workflowId;

  // The webhook reached the mailer, which verified it and mailed the link.
  const mail = await until("the approver's email", () => mails(maildir).find((m) => m.subject.includes(id)));
  assert.equal(mail.to, "approver@example.com");
  const url = (mail.body.match(/https?:\/\/\S+\/answer\/\S+/) || [])[0];
  assert.ok(url, mail.body);
  const live = await api("GET", `/v3/workflow/${id}`);
  assert.equal(live.body.answerUrl, url, "the email carries the state's own link");

  // A delivery not signed with the secret is refused (401), and mails nobody.
  const forged = await fetch(hook, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": "msg_forged",
      "webhook-timestamp": String(Math.floor(Date.now() / 1000)),
      "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl",
    },
    body: JSON.stringify({ ...live.body, workflowId: "forged-run" }),
  });
  assert.equal(forged.status, 401);

  // A mail scanner opens the link first: it answers nothing.
  for (const agent of ["Microsoft Office Existence Discovery", "Barracuda Sentinel (EE)"]) {
    const r = await fetch(url, { headers: { "user-agent": agent } });
    assert.equal(r.status, 200);
  }
  assert.equal((await api("GET", `/v3/workflow/${id}`)).body.seq, 1);

  const page = await stranger(url);
  await page.locator('form[data-layout="approval"]').waitFor();
  await page.getByText("Dana asks you to approve 1200 EUR for conference travel.").waitFor();
  await page.screenshot({ path: SHOTS + "approval-1-from-email.png", fullPage: true });

  // A tampered answer (a decision the screen does not offer) gets the server's 422, shown on
  // its widget, and the link stays open.
  await page.route(/\/answer\/[^/]+$/, async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    const body = JSON.parse(route.request().postData());
    body.viewResponse.selectedOptions.decision = "maybe";
    await route.continue({ postData: JSON.stringify(body) });
  });
  await page.selectOption("#w-decision", { label: "Approve" });
  await page.click('form[data-layout="approval"] button[type=submit]');
  await page.locator("#w-decision-error").waitFor({ state: "visible" });
  assert.notEqual((await page.locator("#w-decision-error").textContent()).trim(), "");
  await page.screenshot({ path: SHOTS + "approval-2-server-422.png", fullPage: true });
  await page.unroute(/\/answer\/[^/]+$/);
  assert.equal((await api("GET", `/v3/workflow/${id}`)).body.seq, 1, "the refused answer moved nothing");

  await page.fill("#w-note", "Enjoy the conference");
  await page.click('form[data-layout="approval"] button[type=submit]');
  await statusOf(page).and(page.locator('[data-status="answered"]')).waitFor();
  await page.screenshot({ path: SHOTS + "approval-3-answered.png", fullPage: true });
  assert.deepEqual(page.errors, []);
  await page.context().close();

  // The next state: the run ended approved, its end reached the mailer, the requester was told.
  const end = await api("GET", `/v3/workflow/${id}`);
  assert.equal(end.body.workflowStatus, "COMPLETED");
  assert.equal(end.body.disposition.decision, "approved");
  assert.ok(end.body.requestId.startsWith("link-"), "answered through the link's command");
  const told = await until("the requester's email", () =>
    mails(maildir).find((m) => m.to === "dana@example.com" && m.subject.includes(id)),
  );
  assert.match(told.subject, /Approved/);
  assert.ok(!mails(maildir).some((m) => m.subject.includes("forged-run")), "the forged delivery mailed nobody");
});

test("an expired answer link shows the page's expired state and answers nothing", async () => {
  const started = await api("POST", "/v3/workflow/start", { workflow: "approval", params: spend });
  assert.equal(started.body.workflowStatus, "WAITING");
  const id = started.body.workflowId;
  const link = await api("POST", `/v3/workflow/${id}/links`, { ttlSecs: 1, assignee: "approver@example.com" });
  assert.equal(link.status, 201, JSON.stringify(link.body));
  // Waits on what the link itself says, not on a clock.
  await until(
    "the link to expire",
    async () => (await (await fetch(`${link.body.url}/screen`)).json()).status === "expired",
    10_000,
  );
  const page = await stranger(link.body.url);
  await statusOf(page).and(page.locator('[data-status="expired"]')).waitFor();
  assert.equal(await page.locator("form").count(), 0);
  await page.screenshot({ path: SHOTS + "approval-4-expired.png", fullPage: true });
  await page.context().close();
  assert.equal((await api("GET", `/v3/workflow/${id}`)).body.seq, 1);
});

#!/usr/bin/env python3
"""A webhook receiver for the approval pattern: Drift POSTs each state of an async run here;
a screen that carries an answer link (`answerUrl`, from a node with `"answerLink"`) is emailed
to the approver, and the run's end to the requester. Python's standard library only.

    python3 examples/approval-mailer.py --listen 127.0.0.1:8025 --smtp 127.0.0.1:1025 \\
        --secret-file .drift/webhook-secret --to approver@example.com

then start a run with `"callbackUrl": "http://127.0.0.1:8025/hook"`. Every request is
verified as Standard Webhooks says (HMAC-SHA256 of `id.timestamp.body`, a timestamp within
five minutes) and deduplicated on `webhook-id` (deliveries are at least once). It answers 401
to a bad signature, 204 otherwise; a mail it could not send answers 503 so Drift retries.
"""

import argparse
import base64
import hashlib
import hmac
import json
import smtplib
import sys
import threading
import time
from collections import OrderedDict
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECS = 300
MAX_BODY = 1 << 20
SEEN_MAX = 10_000  # webhook-ids remembered for deduplication, oldest forgotten first


def verified(secret, headers, body):
    """Whether the request is signed with `secret` (a `whsec_` key) and recent."""
    wid, ts, sigs = (headers.get(h, "") for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    try:
        if abs(time.time() - int(ts)) > TOLERANCE_SECS:
            return False
    except ValueError:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    return any(hmac.compare_digest(s, expected) for s in sigs.split(" "))


def mail_for(state, args):
    """The email a state calls for, or None."""
    status = state.get("workflowStatus")
    msg = EmailMessage()
    msg["From"] = args.sender
    if status == "WAITING" and state.get("answerUrl"):
        msg["To"] = args.to
        msg["Subject"] = f"Approval needed ({state['workflowId']})"
        msg.set_content(
            "You are asked to approve a request.\n\n"
            f"Open this link to see it and answer:\n{state['answerUrl']}\n\n"
            "The link is for you alone and works once; it expires in a few days.\n"
        )
        return msg
    if status in ("COMPLETED", "FAILED", "TERMINATED") and args.notify:
        outcome = (state.get("disposition") or {}).get("message") or status.lower()
        msg["To"] = args.notify
        msg["Subject"] = f"Your request: {outcome} ({state['workflowId']})"
        msg.set_content(f"Your request {state['workflowId']} ended: {outcome}.\n")
        return msg
    return None


class Seen:
    """The webhook-ids already handled: bounded, and shared by the server's threads."""

    def __init__(self):
        self.ids, self.lock = OrderedDict(), threading.Lock()

    def __contains__(self, wid):
        with self.lock:
            return wid in self.ids

    def add(self, wid):
        with self.lock:
            self.ids[wid] = None
            while len(self.ids) > SEEN_MAX:
                self.ids.popitem(last=False)


def handler(args):
    seen = Seen()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            if self.path != "/hook" or length > MAX_BODY:
                return self.answer(404 if self.path != "/hook" else 413)
            body = self.rfile.read(length)
            if not verified(args.secret, self.headers, body):
                return self.answer(401)
            wid = self.headers["webhook-id"]
            if wid in seen:
                return self.answer(204)
            try:
                state = json.loads(body)
            except ValueError:
                return self.answer(400)
            msg = mail_for(state, args)
            if msg is not None:
                host, port = args.smtp.rsplit(":", 1)
                try:
                    with smtplib.SMTP(host, int(port), timeout=10) as smtp:
                        smtp.send_message(msg)
                except OSError as e:
                    print(f"approval-mailer: could not send mail for {wid}: {e}", file=sys.stderr)
                    return self.answer(503)
                print(f"approval-mailer: mailed {msg['To']} for {wid}", flush=True)
            seen.add(wid)
            self.answer(204)

        def answer(self, status):
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass  # the link is a credential: request lines are not logged

    return Hook


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.0.0.1:8025", help="host:port to receive webhooks on (path /hook)")
    p.add_argument("--smtp", default="127.0.0.1:1025", help="SMTP server host:port")
    secret = p.add_mutually_exclusive_group(required=True)
    secret.add_argument("--secret", help="the whsec_ webhook signing secret")
    secret.add_argument("--secret-file", help="a file holding it (keeps it out of the process list)")
    p.add_argument("--to", required=True, help="the approver's address")
    p.add_argument("--notify", help="who hears how it ended (optional)")
    p.add_argument("--sender", default="drift@localhost", help="the From address")
    args = p.parse_args()
    if args.secret_file:
        with open(args.secret_file, encoding="utf-8") as f:
            args.secret = f.read().strip()
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), handler(args))
    print(f"approval-mailer: listening on http://{host}:{server.server_port}/hook", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

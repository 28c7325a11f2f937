#!/usr/bin/env python3
"""A reference agent service for Chime's `webhook` backend (standard library only).

It checks each envelope's signature, answers 202, and reports back: one progress callback, then
a result echoing the request. Replace `work()` with your agent. Environment:
CHIME_WEBHOOK_BACKEND_SECRET (shared with Chime), PORT (default 8090)."""
import hashlib, hmac, json, os, threading, time, urllib.request, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ["CHIME_WEBHOOK_BACKEND_SECRET"].encode()
seen = set()  # Idempotency-Key values already taken


def sign(ts, body):
    return "v0=" + hmac.new(SECRET, b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()


def callback(url, task, kind, text, **extra):
    body = json.dumps({"version": 1, "id": uuid.uuid4().hex, "task_id": task, "type": kind, "text": text, **extra}).encode()
    ts = str(int(time.time()))
    req = urllib.request.Request(url, body, {"content-type": "application/json", "x-chime-request-timestamp": ts,
                                             "x-chime-signature": sign(ts, body)})
    urllib.request.urlopen(req, timeout=10).read()


def work(env):
    callback(env["callback_url"], env["task_id"], "progress", "Working on it")
    callback(env["callback_url"], env["task_id"], "result", "Echo: " + env["prompt"], remote="svc-" + env["session_id"])


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        ts = self.headers.get("x-chime-request-timestamp", "0")
        good = hmac.compare_digest(sign(ts, body), self.headers.get("x-chime-signature", ""))
        if not good or abs(time.time() - int(ts if ts.isdigit() else 0)) > 300:
            return self.answer(401, "bad signature")
        env = json.loads(body)
        print(env["type"], env["task_id"], flush=True)
        key = self.headers.get("idempotency-key", "") + env["type"]
        if env["type"] == "task" and key not in seen:
            seen.add(key)
            threading.Thread(target=work, args=(env,), daemon=True).start()
        self.answer(202, "accepted")

    def answer(self, status, text):
        self.send_response(status)
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8090"))), Handler).serve_forever()

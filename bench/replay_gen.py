#!/usr/bin/env python3
"""Generates a replay benchmark input: N messages of JSONL (default 1,000,000) across 200 channels,
a mix of chat, threads, CI alerts, stack traces and requests, in time order.

    python3 bench/replay_gen.py 1000000 > /tmp/replay-1m.jsonl
"""
import json, random, sys

random.seed(7)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
texts = [
    "lunch at 12:30?", "thanks!", "+1", "can you review my PR when you get a chance",
    "Build #{n} failed on main: 3 tests failing in payments-service (GitHub Actions)",
    "seeing this on staging:\nTraceback (most recent call last):\nKeyError: 'user_id'",
    "test_checkout_retry is flaky again, failed 3 of the last 10 runs",
    "could someone rename the `retries` flag to `max_retries` in the client?",
    "on it", "the README still says to run `make setup`, which was removed",
    "deploy finished, all green", "meeting moved to 3pm", "I wish we had a script that lists stale feature flags",
]
ts = 1_764_000_000.0
roots = []
out = sys.stdout
for i in range(n):
    ts += random.uniform(0.01, 0.2)
    ch = f"C{random.randrange(200):04d}"
    bot = random.random() < 0.1
    thread = None
    if roots and random.random() < 0.4:
        thread = random.choice(roots[-500:])
        ch = thread[0]
    t = random.choice(texts).replace("{n}", str(i))
    line = {"id": f"m{i}", "source": "slack", "team": "T1", "channel": ch, "channel_name": ch.lower(),
            "user": "BCI" if bot else f"U{random.randrange(5000)}", "user_is_bot": bot,
            "ts": f"{ts:.6f}", "thread_ts": thread[1] if thread else None, "text": t}
    if thread is None:
        roots.append((ch, f"{ts:.6f}"))
    out.write(json.dumps(line) + "\n")

// The extension's protocol client against a real `chime serve` (CHIME_BIN, or this checkout's
// debug build): refused with a bad token, messages queued offline are sent on connect and
// acknowledged, hello → handoff → result, hello → three failing runs → suggestion → accept →
// result, and a revoked token ends the connection for good.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { ChimeClient } from "../out/client.js";

const here = dirname(fileURLToPath(import.meta.url));
const CHIME = process.env.CHIME_BIN ?? join(here, "..", "..", "..", "target", "debug", "chime");

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function until(what, check, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, resolve));
}

test("the protocol client against chime serve", { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "chime-vscode-"));
  const port = await freePort();
  // Suggestions on, with the shipped policy minus its quiet hours (tests run at any hour).
  const shipped = readFileSync(join(here, "..", "..", "..", "policies", "default.toml"), "utf8");
  const policy = join(dir, "policy.toml");
  writeFileSync(policy, shipped.replace(/\[quiet_hours\][^[]*/, ""));
  const config = join(dir, "chime.toml");
  writeFileSync(config, `[suggestions]\nenabled = true\npolicy = ${JSON.stringify(policy)}\n`);
  const env = { PATH: process.env.PATH, HOME: dir, DATABASE_URL: `sqlite://${join(dir, "chime.db")}`, CHIME_CONFIG: config };
  const server = spawn(CHIME, ["serve"], { env: { ...env, CHIME_LISTEN: `127.0.0.1:${port}` }, stdio: "ignore" });
  t.after(() => server.kill("SIGTERM"));
  await until("chime serve", async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
    } catch {
      return false;
    }
  });
  const minted = execFileSync(CHIME, ["ide-token", "create", "--local-user", "ana"], { env }).toString();
  const id = minted.split(/\s+/)[2];
  const token = minted.split("\n")[1].trim();
  const url = `ws://127.0.0.1:${port}/ide/stream`;

  await t.test("a wrong token is refused, and the client stops", async () => {
    const client = new ChimeClient({ url, token: `chime_ide_${"x".repeat(40)}` });
    const refused = once(client, "refused");
    client.connect();
    assert.equal(await refused, 401);
  });

  await t.test("messages queued offline are sent on connect and acknowledged", async () => {
    const client = new ChimeClient({ url, token, reconnectMs: 100 });
    client.send({ type: "hello", client: "node-test", workspace: { remote: "git@github.com:acme/api.git", branch: "main", head: "0123456789abcdef" } });
    client.send({ type: "test_run", runner: "node", passed: 1, failed: 1, failures: [{ name: "api retries", output: "boom" }] });
    assert.equal(client.unacknowledged, 2);
    const acks = [];
    client.on("ack", (a) => acks.push(a));
    client.connect();
    await until("both acknowledged", () => client.unacknowledged === 0);
    assert.equal(acks.length, 2);
    // A hand-off: the session's updates, then its result, come back over the socket.
    const results = [];
    client.on("message", (m) => m.type === "result" && results.push(m));
    client.send({ type: "handoff", instruction: "make the retry test stable", selection: { file: "src/retry.rs", start_line: 1, end_line: 2, text: "sleep(1)" } });
    await until("the result", () => results.length === 1, 30_000);
    assert.match(results[0].text, /make the retry test stable/);
    assert.equal(typeof client.lastSeq, "number");
    // A message Chime refuses is answered with an error and not kept for resending.
    const errors = [];
    client.on("error_message", (m) => errors.push(m));
    client.send({ type: "accept_everything" });
    await until("the refusal", () => errors.length === 1);
    assert.equal(client.unacknowledged, 0);

    // The same test failing in three runs: one suggestion; accepting it starts a session whose
    // result comes back, named as the suggestion said.
    const offers = [];
    client.on("message", (m) => m.type === "suggestion" && offers.push(m));
    for (let i = 0; i < 3; i++) {
      client.send({ type: "test_run", runner: "node", passed: 3, failed: 1, failures: [{ name: "checkout retries", output: "expected 2, got 3" }] });
    }
    await until("the suggestion", () => offers.length === 1);
    assert.match(offers[0].text, /flaky test/);
    assert.deepEqual(offers[0].actions, ["accept", "dismiss"]);
    client.send({ type: "accept", suggestion: offers[0].id });
    await until("the accepted suggestion's result", () => results.length === 2, 30_000);
    assert.equal(results[1].session, offers[0].session);
    assert.match(results[1].text, /checkout retries/);
    assert.equal(offers.length, 1);

    // Revoked while connected: the connection ends for good.
    const revoked = once(client, "revoked");
    execFileSync(CHIME, ["ide-token", "revoke", id], { env });
    await revoked;
    client.close();
  });
});

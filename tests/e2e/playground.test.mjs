// End-to-end test of the local playground in a real headless browser: Debian's chromium, driven by
// playwright-core. It starts the real `chime` binary in local mode (temp SQLite, a free port, a
// config with a second, slow backend), then uses the page the way a person would.
//
// Run it with `cargo test --test browser` (tests/browser.rs), or directly:
//   bash tests/e2e/setup.sh && cargo build && node --test tests/e2e/
// Screenshots go to target/e2e/*.png.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "..", "..");
const chimeBin = process.env.CHIME_BIN || path.join(repoRoot, "target", "debug", "chime");
const chromiumPath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const shots = path.join(repoRoot, "target", "e2e");

// The machine may be busy (a cargo build next door): wait generously, never sleep blindly.
const TIMEOUT = 60_000;

let tmp;
let server;
let serverLog = "";
let baseUrl;
let context;
let page;

function log(line) {
  process.stderr.write(`[e2e] ${line}\n`);
}

// Starts `chime serve` and resolves with its address once it says where the playground is.
function startServer() {
  const configPath = path.join(tmp, "chime.toml");
  // The shipped policy, without quiet hours (this test runs at any hour) and offering to people
  // who have not used Chime yet.
  const policyPath = path.join(tmp, "policy.toml");
  let policy = readFileSync(path.join(repoRoot, "policies", "default.toml"), "utf8");
  const quietStart = policy.indexOf("[quiet_hours]");
  policy = policy.slice(0, quietStart) + policy.slice(policy.indexOf("\n\n", quietStart));
  writeFileSync(policyPath, policy.replace("opted_in = false", "opted_in = true"));
  // An agent whose plan ticks over: two milestones, each held long enough to be seen.
  const steps = path.join(tmp, "steps-agent.sh");
  writeFileSync(
    steps,
    [
      "#!/usr/bin/env bash",
      "cat > /dev/null",
      // Where a plan is asked for first (#backend), only a plan, at once.
      `if [ "$CHIME_MODE" = plan ]; then echo '{"type":"result","text":"1. Read the retry client\\n2. Tidy it"}'; exit 0; fi`,
      `echo '{"type":"progress","text":"Reading the code"}'`,
      "sleep 3",
      `echo '{"type":"progress","text":"Writing the fix"}'`,
      "sleep 3",
      `echo '{"type":"result","text":"Tidied it."}'`,
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  const agent = path.join(tmp, "slow-agent.sh");
  // A slow agent: reads its prompt, reports one milestone, then works "forever" (until Stop).
  writeFileSync(
    agent,
    [
      "#!/usr/bin/env bash",
      `echo $$ >> ${JSON.stringify(path.join(tmp, "agent.pids"))}`,
      "cat > /dev/null",
      `echo '{"type":"progress","text":"working"}'`,
      "sleep 300",
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  writeFileSync(
    configPath,
    [
      "[agent]",
      `workdir = ${JSON.stringify(path.join(tmp, "work"))}`,
      "",
      "[routing]",
      "# `backend=slow` may be chosen inline (only the default and dry-run may be otherwise).",
      'inline_backends = ["slow", "steps"]',
      "",
      "[routing.approval]",
      "# In #backend, the requester approves a plan before any work.",
      'CBACKEND = "plan"',
      "",
      "[backends.steps]",
      'kind = "command"',
      `command = [${JSON.stringify(steps)}]`,
      "timeout_secs = 60",
      'sandbox = "none"',
      "",
      "[backends.slow]",
      'kind = "command"',
      `command = [${JSON.stringify(agent)}]`,
      "timeout_secs = 600",
      "# The agent writes its pids to the test's directory, which the sandbox would hide.",
      'sandbox = "none"',
      "",
      "[suggestions]",
      "enabled = true",
      `policy = ${JSON.stringify(policyPath)}`,
      "",
    ].join("\n"),
  );
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("SLACK_")) delete env[k]; // local mode
  Object.assign(env, {
    CHIME_LISTEN: "127.0.0.1:0", // the system picks a free port; Chime prints it
    DATABASE_URL: `sqlite://${path.join(tmp, "chime.db")}`,
    CHIME_CONFIG: configPath,
    RUST_LOG: env.RUST_LOG || "info",
  });
  server = spawn(chimeBin, ["serve"], { env, cwd: tmp, stdio: ["ignore", "pipe", "pipe"], detached: true });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`chime did not start in time:\n${serverLog}`)), TIMEOUT);
    const onData = (chunk) => {
      serverLog += chunk.toString();
      const m = serverLog.match(/open the playground at (http:\/\/127\.0\.0\.1:\d+)\//);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    server.stdout.on("data", onData);
    server.stderr.on("data", onData);
    server.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`chime exited early (${code ?? signal}):\n${serverLog}`));
    });
  });
}

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

async function stopServer() {
  if (server && server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((resolve) => server.once("exit", resolve));
    killGroup(server.pid, "SIGTERM");
    const timer = setTimeout(() => killGroup(server.pid, "SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
  }
  // The slow agent runs in its own process group; end it too if the test did not stop it.
  const pids = path.join(tmp, "agent.pids");
  if (existsSync(pids)) {
    for (const pid of readFileSync(pids, "utf8").split(/\s+/).filter(Boolean).map(Number)) {
      killGroup(pid, "SIGKILL");
    }
  }
}

// Last resort if the runner is interrupted: no server is left behind.
process.on("exit", () => {
  if (server && server.exitCode === null) killGroup(server.pid, "SIGKILL");
});

async function shot(name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file });
  log(`screenshot ${path.relative(repoRoot, file)}`);
}

// Everything Chime's messages have shown, as "ts|text": a status card that is replaced within
// milliseconds (the dry run) is still recorded, in the order the page showed it.
async function recordChimeMessages() {
  await page.evaluate(() => {
    window.__seen = [];
    const record = () => {
      for (const el of document.querySelectorAll('article[data-user="UCHIME"], .thread-preview[data-ts]')) {
        const entry = `${el.dataset.ts}|${el.textContent}`;
        if (window.__seen[window.__seen.length - 1] !== entry && !window.__seen.includes(entry)) window.__seen.push(entry);
      }
    };
    new MutationObserver(record).observe(document.body, { subtree: true, childList: true, characterData: true });
    record();
  });
}

async function postAs(userId) {
  await page.getByLabel("Post as").selectOption(userId);
}

async function postInChannel(text) {
  const box = page.locator("#composer-input");
  await box.fill(text);
  await box.press("Enter");
  // The composer empties once the server accepted the message.
  await page.waitForFunction(() => document.querySelector("#composer-input").value === "");
  return page.locator("#messages article.msg", { hasText: text }).last();
}

async function openThreadOf(root) {
  await root.locator("a.thread-link").click();
  await page.locator("#thread-pane").waitFor({ state: "visible" });
  const ts = await root.getAttribute("data-ts");
  await page.locator(`#thread-messages article[data-ts="${ts}"]`).waitFor();
  return page.locator("#thread-messages");
}

before(async () => {
  assert.ok(existsSync(chimeBin), `no chime binary at ${chimeBin} (cargo build, or set CHIME_BIN)`);
  assert.ok(existsSync(chromiumPath), `no chromium at ${chromiumPath} (bash tests/e2e/setup.sh)`);
  mkdirSync(shots, { recursive: true });
  tmp = mkdtempSync(path.join(tmpdir(), "chime-e2e-"));
  baseUrl = await startServer();
  log(`chime at ${baseUrl}`);
  context = await chromium.launchPersistentContext(path.join(tmp, "profile"), {
    executablePath: chromiumPath,
    headless: true,
    // Root in a container, and a closed network: no sandbox, and none of chromium's own traffic.
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 800 },
  });
  context.setDefaultTimeout(TIMEOUT);
  page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (err) => log(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") log(`console error: ${msg.text()}`);
  });
});

after(async () => {
  try {
    if (context) await context.close();
  } finally {
    await stopServer();
    if (process.env.CHIME_E2E_KEEP) log(`kept ${tmp}`);
    else if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
});

test("the playground: dry run, Stop, refusal and the sessions list", { timeout: 600_000 }, async (t) => {
  const pageErrors = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));

  await t.test("the page loads and goes live", async () => {
    await page.goto(`${baseUrl}/`);
    await page.locator('#live[data-state="open"]').waitFor();
    await page.getByRole("link", { name: "# general" }).click();
    await page.waitForURL(/#\/channel\/CGENERAL$/);
    await page.getByRole("heading", { level: 1, name: "#general" }).waitFor();
    await recordChimeMessages();
  });

  await t.test("a member asks for work: 👀, the status message, then the dry run in the thread", async () => {
    await postAs("U0ANA");
    const root = await postInChannel("@chime add a health check");
    await root.locator('[data-reaction="eyes"]', { hasText: "👀" }).waitFor();
    // Chime's one message in the thread, shown under the request while it changes.
    await root.locator(".thread-preview", { hasText: "Dry run" }).waitFor();
    const thread = await openThreadOf(root);
    const card = thread.locator('article[data-user="UCHIME"]');
    await card.filter({ hasText: "Dry run" }).waitFor();
    assert.equal(await card.count(), 1, "Chime posts one message per request");
    const ts = await card.getAttribute("data-ts");
    const seen = await page.evaluate(() => window.__seen);
    const states = seen.filter((e) => e.startsWith(`${ts}|`));
    const working = states.findIndex((e) => e.includes("Working on it"));
    const dry = states.findIndex((e) => e.includes("Dry run"));
    assert.ok(working >= 0, `the status message was shown before the result; seen: ${JSON.stringify(states)}`);
    assert.ok(dry > working, `the dry run replaced the status message in place; seen: ${JSON.stringify(states)}`);
    await card.getByText("add a health check").first().waitFor();
    await shot("01-dry-run-thread");
  });

  await t.test("a long task is stopped with its Stop button", async () => {
    const root = await postInChannel("@chime backend=slow a long task");
    const thread = await openThreadOf(root);
    const card = thread.locator('article[data-user="UCHIME"]');
    await card.filter({ hasText: "Working on it" }).filter({ hasText: "working" }).waitFor();
    const stop = card.getByRole("button", { name: "Stop" });
    await stop.waitFor();
    await shot("02-long-task-running");
    await stop.click();
    await card.filter({ hasText: "Stopped" }).filter({ hasText: "@ana" }).waitFor();
    assert.equal(await card.getByRole("button", { name: "Stop" }).count(), 0, "no Stop button once stopped");
    await shot("03-long-task-stopped");
  });

  await t.test("a guest is refused", async () => {
    await postAs("U0GUS");
    await page.getByRole("link", { name: "# general" }).click();
    await page.waitForURL(/#\/channel\/CGENERAL$/);
    const root = await postInChannel("@chime delete the staging database");
    await root.locator(".msg-meta .badge", { hasText: "guest" }).waitFor();
    const thread = await openThreadOf(root);
    const refusal = thread.locator('article[data-user="UCHIME"]', { hasText: "guests cannot start or stop Chime tasks" });
    await refusal.filter({ hasText: "Sorry" }).waitFor();
    assert.equal(await root.locator('[data-reaction="eyes"]').count(), 0, "no 👀 on a refused request");
    await shot("04-guest-refused");
  });

  await t.test("the sessions view lists both sessions", async () => {
    await page.getByRole("link", { name: "Sessions" }).click();
    await page.waitForURL(/#\/sessions$/);
    const rows = page.locator("#sessions-body tr[data-session]");
    await rows.filter({ hasText: "dry-run" }).filter({ hasText: "succeeded" }).waitFor();
    await rows.filter({ hasText: "slow" }).filter({ hasText: "cancelled" }).waitFor();
    assert.equal(await rows.count(), 2, "the refused request made no session");
    for (const row of await rows.all()) {
      assert.match(await row.innerText(), /local/);
      assert.match(await row.innerText(), /ana/);
      assert.match(await row.innerText(), /queued .* · ran /);
    }
    await shot("05-sessions");
    // The session's link opens its thread (a deep link).
    await rows.filter({ hasText: "dry-run" }).getByRole("link", { name: "Open thread" }).click();
    await page.waitForURL(/#\/thread\/CGENERAL\/\d+\.\d+$/);
    await page.locator("#thread-messages article", { hasText: "Dry run" }).waitFor();
  });

  await t.test("deep links and a narrow window", async () => {
    const url = page.url();
    await page.setViewportSize({ width: 400, height: 800 });
    await page.goto(`${baseUrl}/#/channel/CBACKEND`);
    await page.reload();
    await page.getByRole("heading", { level: 1, name: "#backend" }).waitFor();
    await page.goto(url);
    await page.locator("#thread-messages article", { hasText: "Dry run" }).waitFor();
    assert.equal(await page.locator("#channel-view").isVisible(), false, "the thread takes the whole narrow window");
    await shot("06-narrow-thread");
    await page.goto(`${baseUrl}/#/sessions`);
    await page.locator("#sessions-body tr[data-session]", { hasText: "cancelled" }).waitFor();
    await shot("07-narrow-sessions");
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  await t.test("the digest view shows the latest digest and this week's", async () => {
    await page.getByRole("link", { name: "Digest" }).click();
    await page.waitForURL(/#\/digest$/);
    const now = page.locator("#digest-now");
    await now.filter({ hasText: "Sessions started: 2" }).waitFor();
    assert.match(await now.innerText(), /completed 1 .*stopped 1/);
    assert.match(await page.locator("#digest-text").innerText(), /Chime's week: \d{4}-W\d{2}/);
    await shot("05b-digest");
  });

  await t.test("a stack trace gets one suggestion, and Do it runs it in the same thread", async () => {
    await postAs("U0ANA");
    await page.goto(`${baseUrl}/#/channel/CBACKEND`);
    await page.getByRole("heading", { level: 1, name: "#backend" }).waitFor();
    const root = await postInChannel("seeing this on staging: Traceback (most recent call last): KeyError: 'user_id'");
    await root.locator(".thread-preview", { hasText: "Investigate this error" }).waitFor();
    const thread = await openThreadOf(root);
    const offer = thread.locator('article[data-user="UCHIME"]', { hasText: "Investigate this error" });
    await offer.getByRole("button", { name: "Not now" }).waitFor();
    await offer.getByRole("button", { name: "Don't suggest this here" }).waitFor();
    await shot("08-suggestion");
    await offer.getByRole("button", { name: "Do it" }).click();
    await thread.locator('article[data-user="UCHIME"]', { hasText: "Dry run" }).waitFor();
    await thread.locator('article[data-user="UCHIME"]', { hasText: "accepted" }).waitFor();
    assert.equal(await thread.getByRole("button", { name: "Do it" }).count(), 0, "no Do it once accepted");
    await shot("09-suggestion-accepted");
  });

  await t.test("a plan ticks over while the agent works, and a thumbs-down is counted", async () => {
    await page.goto(`${baseUrl}/#/channel/CGENERAL`);
    await page.getByRole("heading", { level: 1, name: "#general" }).waitFor();
    const root = await postInChannel("@chime backend=steps tidy the retry client");
    const thread = await openThreadOf(root);
    const card = thread.locator('article[data-user="UCHIME"]');
    const plan = card.locator("ol.plan");
    await plan.locator('li[data-status="in_progress"]', { hasText: "Reading the code" }).waitFor();
    await shot("10-plan-running");
    await plan.locator('li[data-status="complete"]', { hasText: "Reading the code" }).waitFor();
    await plan.locator('li[data-status="in_progress"]', { hasText: "Writing the fix" }).waitFor();
    await card.filter({ hasText: "Tidied it." }).waitFor();
    await plan.locator('li[data-status="complete"]', { hasText: "Writing the fix" }).waitFor();
    assert.equal(await plan.locator('li[data-status="in_progress"]').count(), 0, "every step ended with the turn");
    await shot("11-plan-done");
    await card.getByRole("button", { name: "This result did not help" }).click();
    await page.getByRole("link", { name: "Digest" }).click();
    await page.waitForURL(/#\/digest$/);
    await page.locator("#digest-now").filter({ hasText: /thumbs down 1\b/ }).waitFor();
  });

  await t.test("in a channel that asks for plans first, the plan waits for Approve", async () => {
    await page.goto(`${baseUrl}/#/channel/CBACKEND`);
    await page.getByRole("heading", { level: 1, name: "#backend" }).waitFor();
    const root = await postInChannel("@chime backend=steps tidy the retry client");
    const thread = await openThreadOf(root);
    const card = thread.locator('article[data-user="UCHIME"]').filter({ hasText: "Nothing has been changed yet" });
    await card.locator('.block-plan li[data-status="pending"]', { hasText: "Tidy it" }).waitFor();
    await shot("12-plan-for-approval");
    await card.getByRole("button", { name: "Approve" }).click();
    await thread.locator('article[data-user="UCHIME"]').filter({ hasText: "Tidied it." }).waitFor({ timeout: 30000 });
    await shot("13-plan-approved-work-done");
  });

  assert.deepEqual(pageErrors, [], "no script errors on the page");
});

// The VS Code side: reads the settings, reports failing tests (the testing API's results where
// this VS Code offers them, else the configured test task), failed tasks and files with errors
// (again every few minutes while they last, and once when they clear), shows Chime's suggestions
// as notifications with buttons and its progress in the status bar, and hands the selection to a
// cloud agent. The protocol itself is in client.ts.

import { execFile } from "node:child_process";
import * as vscode from "vscode";
import { ChimeClient, Incoming } from "./client";
import { TestRunResult, testRunMessage } from "./reports";

const MAX_DIFF = 256 * 1024;
/** Files whose errors last are reported again this often: Chime's policy measures how long. */
const DIAGNOSTICS_REPEAT_MS = 5 * 60 * 1000;

export function activate(context: vscode.ExtensionContext): void {
  const config = vscode.workspace.getConfiguration("chime");
  const token = config.get<string>("token", "");
  const status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 10);
  status.text = "$(bell) Chime";
  status.show();
  context.subscriptions.push(status);
  if (!token) {
    status.text = "$(bell-slash) Chime: no token";
    status.tooltip = "Set chime.token to the token from `chime ide-token create`.";
    return;
  }
  const client = new ChimeClient({ url: config.get<string>("url", "ws://127.0.0.1:8080/ide/stream"), token });
  context.subscriptions.push({ dispose: () => client.close() });

  client.on("open", () => {
    status.text = "$(bell) Chime";
    void sayHello(client);
  });
  client.on("close", () => (status.text = "$(bell-slash) Chime: reconnecting"));
  client.on("refused", (code: number) => {
    status.text = "$(error) Chime: refused";
    void vscode.window.showErrorMessage(`Chime refused the connection (HTTP ${code}): check chime.token and chime.url.`);
  });
  client.on("revoked", () => {
    status.text = "$(error) Chime: token revoked";
    void vscode.window.showErrorMessage("Your Chime IDE token was revoked. Ask for a new one.");
  });
  client.on("error_message", (m: Incoming) => void vscode.window.showWarningMessage(`Chime: ${String(m.reason ?? "refused")}`));
  client.on("message", (m: Incoming) => void show(client, status, m));

  // Failed tasks: the test task's failure is a failing test run, any other a failed command.
  const testTask = config.get<string>("testTask", "test");
  context.subscriptions.push(
    vscode.tasks.onDidEndTaskProcess((e) => {
      if (e.exitCode === undefined || e.exitCode === 0) return;
      const name = e.execution.task.name;
      if (name === testTask) {
        client.send({ type: "test_run", runner: name, passed: 0, failed: 1, failures: [{ name, output: `exit code ${e.exitCode}` }] });
      } else {
        client.send({ type: "command_failed", command: name, exit_code: e.exitCode, output_tail: "" });
      }
    }),
  );

  // Test results from the testing API, where this VS Code has it (a proposed API in some
  // versions): each failing test by its own name, so "the same test failing" means that.
  const tests = vscode.tests as unknown as {
    onDidChangeTestResults?: vscode.Event<void>;
    testResults?: ReadonlyArray<TestRunResult>;
  };
  if (typeof tests.onDidChangeTestResults === "function") {
    context.subscriptions.push(
      tests.onDidChangeTestResults(() => {
        const run = tests.testResults?.[0];
        const message = run && testRunMessage(run);
        if (message) client.send(message);
      }),
    );
  }

  // Files with errors: reported when their count changes, again while they last, and once
  // when they clear (which ends their stretch for Chime).
  const lastErrors = new Map<string, number>();
  const reportFile = (uri: vscode.Uri, force: boolean) => {
    const errors = vscode.languages.getDiagnostics(uri).filter((d) => d.severity === vscode.DiagnosticSeverity.Error);
    const key = uri.toString();
    const before = lastErrors.get(key) ?? 0;
    if (!force && before === errors.length) return;
    if (errors.length === 0 && before === 0) return;
    if (errors.length === 0) lastErrors.delete(key);
    else lastErrors.set(key, errors.length);
    client.send({ type: "diagnostics", file: vscode.workspace.asRelativePath(uri), errors: errors.length, first: errors[0]?.message });
  };
  context.subscriptions.push(vscode.languages.onDidChangeDiagnostics((e) => e.uris.forEach((uri) => reportFile(uri, false))));
  const repeat = setInterval(() => {
    for (const key of [...lastErrors.keys()]) reportFile(vscode.Uri.parse(key), true);
  }, DIAGNOSTICS_REPEAT_MS);
  context.subscriptions.push({ dispose: () => clearInterval(repeat) });

  context.subscriptions.push(
    vscode.commands.registerCommand("chime.handoff", async () => {
      const instruction = await vscode.window.showInputBox({ prompt: "What should the cloud agent do?" });
      if (!instruction) return;
      const editor = vscode.window.activeTextEditor;
      const selection =
        editor && !editor.selection.isEmpty
          ? {
              file: vscode.workspace.asRelativePath(editor.document.uri),
              start_line: editor.selection.start.line + 1,
              end_line: editor.selection.end.line + 1,
              text: editor.document.getText(editor.selection),
            }
          : undefined;
      const diff = await git(["diff"]);
      client.send({ type: "handoff", instruction, selection, diff: diff && diff.length <= MAX_DIFF ? diff : undefined });
      status.text = "$(sync~spin) Chime: handing off";
    }),
  );

  client.connect();
}

export function deactivate(): void {}

async function show(client: ChimeClient, status: vscode.StatusBarItem, m: Incoming): Promise<void> {
  if (m.type === "suggestion") {
    const answer = await vscode.window.showInformationMessage(`Chime: ${String(m.text ?? "")}`, "Accept", "Dismiss");
    if (answer) client.send({ type: answer === "Accept" ? "accept" : "dismiss", suggestion: m.id });
  } else if (m.type === "session_update") {
    status.text = `$(sync~spin) Chime: ${String(m.text ?? m.state ?? "working")}`.slice(0, 80);
  } else if (m.type === "result") {
    status.text = "$(bell) Chime";
    const pr = typeof m.pr_url === "string" && m.pr_url.startsWith("https://") ? m.pr_url : undefined;
    const open = await vscode.window.showInformationMessage(`Chime (${String(m.state)}): ${String(m.text ?? "")}`.slice(0, 500), ...(pr ? ["Open pull request"] : []));
    if (open && pr) void vscode.env.openExternal(vscode.Uri.parse(pr));
  }
}

/** The workspace's repository, branch and HEAD, for `hello` (nothing is sent without a HEAD). */
async function sayHello(client: ChimeClient): Promise<void> {
  const [remote, branch, head] = await Promise.all([
    git(["remote", "get-url", "origin"]),
    git(["rev-parse", "--abbrev-ref", "HEAD"]),
    git(["rev-parse", "HEAD"]),
  ]);
  if (!head) return;
  client.send({
    type: "hello",
    client: `vscode-chime ${vscode.extensions.getExtension("chime.chime-vscode")?.packageJSON.version ?? "dev"}`,
    workspace: { remote: remote?.trim() ?? "", branch: branch?.trim() ?? "", head: head.trim() },
  });
}

function git(args: string[]): Promise<string | undefined> {
  const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  if (!cwd) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    execFile("git", args, { cwd, maxBuffer: MAX_DIFF * 2 }, (err, stdout) => resolve(err ? undefined : stdout));
  });
}

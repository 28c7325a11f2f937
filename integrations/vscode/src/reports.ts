// What the extension reports, built from VS Code's data without importing `vscode`, so that
// node's test runner can test it.

import type { Outgoing } from "./client";

/** The testing API's view of one run (the fields read here). */
export interface TestRunResult {
  results: ReadonlyArray<TestResultSnapshot>;
}
export interface TestResultSnapshot {
  label: string;
  id: string;
  taskStates: ReadonlyArray<{ state: number; messages: ReadonlyArray<{ message: string | { value: string } }> }>;
  children: ReadonlyArray<TestResultSnapshot>;
}

/** TestResultState values (vscode.TestResultState). */
const PASSED = 3;
const FAILED = 4;
const ERRORED = 6;

/** One finished run as a `test_run` (failing tests by id, each with its first message), or
 * undefined when nothing failed. */
export function testRunMessage(run: TestRunResult): Outgoing | undefined {
  const failures: { name: string; output: string }[] = [];
  let passed = 0;
  const walk = (t: TestResultSnapshot): void => {
    if (t.children.length > 0) {
      t.children.forEach(walk);
      return;
    }
    const states = t.taskStates.map((s) => s.state);
    if (states.some((s) => s === FAILED || s === ERRORED)) {
      const m = t.taskStates.flatMap((s) => s.messages)[0]?.message;
      failures.push({ name: (t.id || t.label).slice(0, 1000), output: (typeof m === "string" ? m : m?.value ?? "").slice(0, 4000) });
    } else if (states.includes(PASSED)) passed++;
  };
  run.results.forEach(walk);
  if (failures.length === 0) return undefined;
  return { type: "test_run", runner: "vscode", passed, failed: failures.length, failures: failures.slice(0, 50) };
}

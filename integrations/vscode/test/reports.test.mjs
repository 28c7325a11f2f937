// The extension's test-result report, from the testing API's shape to a protocol message.

import { test } from "node:test";
import assert from "node:assert/strict";
import { testRunMessage } from "../out/reports.js";

const leaf = (id, state, message) => ({
  id,
  label: id.split("/").pop(),
  children: [],
  taskStates: [{ state, messages: message ? [{ message }] : [] }],
});

test("a run with failures becomes one test_run naming each failing test", () => {
  const run = {
    results: [
      {
        id: "suite",
        label: "suite",
        taskStates: [],
        children: [leaf("suite/ok", 3), leaf("suite/retry", 4, { value: "expected 2, got 3" }), leaf("suite/boom", 6, "panicked")],
      },
    ],
  };
  const m = testRunMessage(run);
  assert.equal(m.type, "test_run");
  assert.equal(m.passed, 1);
  assert.equal(m.failed, 2);
  assert.deepEqual(m.failures, [
    { name: "suite/retry", output: "expected 2, got 3" },
    { name: "suite/boom", output: "panicked" },
  ]);
});

test("a run where nothing failed reports nothing, and long runs are capped", () => {
  assert.equal(testRunMessage({ results: [leaf("a", 3), leaf("b", 3)] }), undefined);
  const many = { results: Array.from({ length: 80 }, (_, i) => leaf(`t${i}`, 4, "x".repeat(10_000))) };
  const m = testRunMessage(many);
  assert.equal(m.failures.length, 50);
  assert.equal(m.failed, 80);
  assert.equal(m.failures[0].output.length, 4000);
});

// Unit tests of the workflow logic (src/workflowLogic.ts, re-exported by dist/logic.js).
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const logic = require("../dist/logic.js");

const run = (over = {}) => ({
  runId: "f6de43f26f7a",
  name: "review",
  path: "/w/.cao/workflows/review.py",
  status: "completed",
  trigger: "client",
  startedAt: "2025-11-21T10:00:00+01:00",
  inputs: { topic: "cart" },
  output: { summary: "ship it" },
  steps: [
    { key: 0, profile: "developer", task: "plan", status: "completed", terminalId: "5ad0b7c3", answer: "a plan\nwith lines" },
    { key: 1, profile: "reviewer", task: "review", status: "sent", terminalId: "c81d4f0e" },
  ],
  ...over,
});

test("a run's end is told once, with its output or its error", () => {
  assert.equal(logic.workflowRunEnded(run(), run({ status: "running" })), true);
  assert.equal(logic.workflowRunEnded(run(), run()), false);
  assert.equal(logic.workflowRunEnded(run({ status: "running" })), false);
  const done = logic.workflowRunMessage(run());
  assert.equal(done.ok, true);
  assert.equal(done.text, 'workflow review (run f6de43f26f7a) completed after 2 steps: {"summary":"ship it"}');
  const cut = logic.workflowRunMessage(run({ status: "interrupted", error: "the script was killed (signal 9)" }));
  assert.equal(cut.ok, false);
  assert.match(cut.text, /interrupted after 2 steps: the script was killed/);
});

test("the runs document lists each step with its worker and answer", () => {
  const doc = logic.workflowRunsDocument([run()]);
  assert.match(doc, /## review · f6de43f26f7a · completed/);
  assert.match(doc, /- step 0 · developer · completed · 5ad0b7c3: a plan with lines/);
  assert.match(doc, /- step 1 · reviewer · sent · c81d4f0e/);
  assert.match(doc, /inputs: topic=cart/);
  assert.match(logic.workflowRunsDocument([]), /No workflow runs yet/);
});

test("inputs are name=value words", () => {
  assert.deepEqual(logic.parseWorkflowInputs(" topic=cats  n=2 empty= "), { inputs: { topic: "cats", n: "2", empty: "" } });
  assert.deepEqual(logic.parseWorkflowInputs("topic"), { error: "topic is not name=value" });
  assert.deepEqual(logic.parseWorkflowInputs(""), { inputs: {} });
});

test("pick items say why a workflow does not run", () => {
  const [a, b] = logic.workflowPickItems([
    { name: "review", path: "/p", kind: "python", scope: "workspace", description: "Plan and review." },
    { name: "broken", path: "/b", kind: "yaml", scope: "user", untrusted: true, problems: ["step 1: no task"] },
  ]);
  assert.equal(a.detail, "Plan and review.");
  assert.match(b.description, /untrusted folder: does not run/);
  assert.equal(b.detail, "problems: step 1: no task");
});

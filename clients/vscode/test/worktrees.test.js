// Unit tests of the worktree logic (src/worktreeLogic.ts, re-exported by dist/logic.js).
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const logic = require("../dist/logic.js");

const worktree = (over = {}) => ({
  terminalId: "e2a94c10",
  profile: "developer",
  session: "cao",
  repository: "/home/ana/src/shop",
  path: "/state/worktrees/shop-e2a94c10",
  branch: "cao/developer-e2a94c10",
  base: "main",
  baseCommit: "9e1f2c4a",
  state: "kept",
  commits: ["b7a6c5d Round once"],
  files: ["src/cart.py", "tests/new_test.py"],
  committedLeftovers: true,
  dirty: false,
  agentStatus: null,
  ...over,
});

test("pick items name the branch, the worker, its state and its work", () => {
  const [item] = logic.worktreePickItems([worktree(), worktree({ terminalId: "x", state: "active", agentStatus: "idle" })]);
  assert.equal(item.label, "$(git-branch) cao/developer-e2a94c10");
  assert.equal(item.terminalId, "e2a94c10");
  assert.match(item.description, /developer e2a94c10 · agent ended · from main/);
  assert.equal(item.detail, "1 commit, 2 files changed; leftovers committed by the sidecar");
  const running = logic.worktreePickItems([worktree({ state: "active", agentStatus: "processing", dirty: true, commits: [] })])[0];
  assert.match(running.description, /running \(processing\)/);
  assert.match(running.detail, /^0 commits, 2 files changed \(uncommitted changes\)/);
});

test("merge messages: merged, or the conflicting files and nothing changed", () => {
  assert.deepEqual(logic.mergeResultMessage({ merged: true, message: "", worktree: worktree() }), {
    text: "cao/developer-e2a94c10 merged into main.",
    ok: true,
  });
  const conflict = logic.mergeResultMessage({ merged: false, message: "", worktree: worktree(), conflicts: ["a.py", "b.py"] });
  assert.equal(conflict.ok, false);
  assert.match(conflict.text, /conflicts with main in a\.py, b\.py: nothing was changed/);
  const many = logic.mergeResultMessage({ merged: false, message: "", worktree: worktree(), conflicts: Array.from({ length: 12 }, (_, i) => `f${i}`) });
  assert.match(many.text, /f9, … \(12 files\)/);
});

test("changed files: the worktree's copy and the base version's query", () => {
  const files = logic.changedFiles(worktree());
  assert.deepEqual(files[0], {
    file: "src/cart.py",
    worktreeFile: "/state/worktrees/shop-e2a94c10/src/cart.py",
    base: { repository: "/home/ana/src/shop", commit: "9e1f2c4a", file: "src/cart.py" },
  });
  const q = logic.encodeBaseQuery(files[0].base);
  assert.deepEqual(logic.decodeBaseQuery(q), files[0].base);
});

test("base queries that are not ours are refused (no option-like or escaping paths, commits only)", () => {
  const ok = { repository: "/r", commit: "abcd1234", file: "a.txt" };
  assert.equal(logic.decodeBaseQuery("not json"), undefined);
  assert.equal(logic.decodeBaseQuery(JSON.stringify({ ...ok, commit: "HEAD; rm -rf" })), undefined);
  assert.equal(logic.decodeBaseQuery(JSON.stringify({ ...ok, commit: "--output=/tmp/x" })), undefined);
  assert.equal(logic.decodeBaseQuery(JSON.stringify({ ...ok, file: "--help" })), undefined);
  assert.equal(logic.decodeBaseQuery(JSON.stringify({ ...ok, file: "../../etc/passwd" })), undefined);
  assert.deepEqual(logic.decodeBaseQuery(JSON.stringify(ok)), ok);
});

test("the worktree setting: profile leaves it to the profile, always / never decide", () => {
  assert.deepEqual(logic.withWorktree({ profile: "p" }, "profile"), { profile: "p" });
  assert.deepEqual(logic.withWorktree({ profile: "p" }, undefined), { profile: "p" });
  assert.deepEqual(logic.withWorktree({ profile: "p" }, "always"), { profile: "p", worktree: true });
  assert.deepEqual(logic.withWorktree({ profile: "p" }, "never"), { profile: "p", worktree: false });
});

test("a finished worker's message says where its work is", () => {
  assert.equal(
    logic.workerWorkMessage(worktree()),
    "developer (e2a94c10) left its work on cao/developer-e2a94c10: 1 commit, 2 files changed; leftovers committed by the sidecar.",
  );
});

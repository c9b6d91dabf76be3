// Unit tests of the extension's own logic (src/logic.ts, bundled to dist/logic.js by build.mjs).
// Run: npm test (or node --test test/ after node build.mjs).
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const path = require("node:path");
const logic = require("../dist/logic.js");

const agent = (over = {}) => ({
  terminalId: "3f9c2a71",
  session: "cao",
  profile: "mock_developer",
  provider: "mock",
  status: "idle",
  workingDirectory: "/w",
  createdAt: "2025-11-21T11:04:05.218+00:00",
  name: null,
  ...over,
});

test("tmux socket: the setting wins, else cao- + 12 hex digits of sha256(workspace path)", () => {
  assert.equal(logic.tmuxSocketName("mine", "/home/ana/src/shop"), "mine");
  assert.equal(logic.tmuxSocketName("  ", "/home/ana/src/shop"), logic.tmuxSocketName(undefined, "/home/ana/src/shop"));
  const expected = "cao-" + crypto.createHash("sha256").update("/home/ana/src/shop").digest("hex").slice(0, 12);
  assert.equal(logic.tmuxSocketName("", "/home/ana/src/shop"), expected);
  // The same derivation as the other clients: a known value (python3 -c "import hashlib;
  // print(hashlib.sha256('/home/ana/src/shop'.encode()).hexdigest()[:12])").
  assert.equal(expected, "cao-2f866d424f70");
  assert.match(expected, /^cao-[0-9a-f]{12}$/);
  // UTF-8, not UTF-16 or latin-1
  const utf8 = "cao-" + crypto.createHash("sha256").update(Buffer.from("/tmp/café", "utf8")).digest("hex").slice(0, 12);
  assert.equal(logic.tmuxSocketName("", "/tmp/café"), utf8);
  assert.notEqual(logic.tmuxSocketName("", "/a"), logic.tmuxSocketName("", "/b"));
});

test("sidecar path (trusted workspace): setting, then the workspace's .venv, venv, env, then PATH", () => {
  const files = new Set(["/ws/venv/bin/cao-sidecar", "/usr/local/bin/cao-sidecar", "/opt/cao/bin/cao-sidecar", "/home/u/bin/cao"]);
  const base = { workspaceRoots: ["/ws"], workspaceTrusted: true, envPath: ["/usr/bin", "/usr/local/bin"].join(path.delimiter), home: "/home/u", isExecutable: (f) => files.has(f) };
  assert.deepEqual(
    { ...logic.resolveSidecarPath(base), tried: undefined },
    { path: "/ws/venv/bin/cao-sidecar", how: "the workspace's venv", tried: undefined },
  );
  files.add("/ws/.venv/bin/cao-sidecar");
  assert.equal(logic.resolveSidecarPath(base).path, "/ws/.venv/bin/cao-sidecar");
  assert.equal(logic.resolveSidecarPath({ ...base, workspaceRoots: ["/other"] }).path, "/usr/local/bin/cao-sidecar");
  assert.equal(logic.resolveSidecarPath({ ...base, workspaceRoots: [] }).how, "PATH");
  // the setting: absolute, ~, ${workspaceFolder}, relative to the workspace, a bare name on PATH
  assert.equal(logic.resolveSidecarPath({ ...base, setting: "/opt/cao/bin/cao-sidecar" }).path, "/opt/cao/bin/cao-sidecar");
  assert.equal(logic.resolveSidecarPath({ ...base, setting: "~/bin/cao" }).path, "/home/u/bin/cao");
  assert.equal(logic.resolveSidecarPath({ ...base, setting: "${workspaceFolder}/venv/bin/cao-sidecar" }).path, "/ws/venv/bin/cao-sidecar");
  assert.equal(logic.resolveSidecarPath({ ...base, setting: "venv/bin/cao-sidecar" }).path, "/ws/venv/bin/cao-sidecar");
  assert.equal(logic.resolveSidecarPath({ ...base, setting: "cao-sidecar" }).path, "/usr/local/bin/cao-sidecar");
  // a setting that points nowhere is an error, not a silent fallback
  const bad = logic.resolveSidecarPath({ ...base, setting: "/nope/cao-sidecar" });
  assert.equal(bad.path, undefined);
  assert.match(bad.how, /not an executable/);
  const none = logic.resolveSidecarPath({ ...base, workspaceRoots: [], envPath: "/usr/bin" });
  assert.equal(none.path, undefined);
  assert.match(none.how, /cao\.sidecarPath/);
  assert.deepEqual(none.tried, ["/usr/bin/cao-sidecar"]);
});

test("sidecar args: the tmux socket (languageclient adds --stdio)", () => {
  assert.deepEqual(logic.sidecarArgs("cao-abc"), ["--tmux-socket", "cao-abc"]);
});

test("first line of an answer", () => {
  assert.equal(logic.firstLine("\n\n  hello from vscode  \nsecond"), "hello from vscode");
  assert.equal(logic.firstLine("a\r\nb"), "a");
  assert.equal(logic.firstLine(""), "");
  assert.equal(logic.firstLine(null), "");
  assert.equal(logic.firstLine("   \n \n"), "");
  const long = "x".repeat(300);
  assert.equal(logic.firstLine(long, 10), "xxxxxxxxx…");
  assert.equal(logic.firstLine(long, 10).length, 10);
});

test("worker completed message names the worker and the first line of its answer", () => {
  assert.deepEqual(
    logic.workerCompletedMessage({ terminalId: "e2", profile: "mock_developer", status: "completed", output: "Added the test.\nDetails…", error: null }),
    { text: "mock_developer (e2) finished: Added the test.", ok: true },
  );
  assert.deepEqual(
    logic.workerCompletedMessage({ terminalId: "e2", profile: "dev", status: "exited", output: "", error: "agent e2 exited during its turn" }),
    { text: "dev (e2) failed: agent e2 exited during its turn", ok: false },
  );
  assert.equal(logic.workerCompletedMessage({ terminalId: "e2", profile: "dev", status: "completed", output: "" }).text, "dev (e2) finished (no answer text).");
});

test("status bar: count, working count with a spinner, asking", () => {
  assert.equal(logic.statusBarView([], "running").text, "$(hubot) 0 agents");
  assert.equal(logic.statusBarView([agent()], "running").text, "$(hubot) 1 agent");
  const busy = [agent(), agent({ terminalId: "b", status: "processing" }), agent({ terminalId: "c", status: "starting" })];
  assert.equal(logic.statusBarView(busy, "running").text, "$(loading~spin) 3 agents · 2 working");
  const asking = [agent(), agent({ terminalId: "b", status: "waiting_user_answer" })];
  const v = logic.statusBarView(asking, "running");
  assert.equal(v.text, "$(hubot) 2 agents · $(question) 1 asking");
  assert.equal(v.background, "statusBarItem.warningBackground");
  assert.match(v.tooltip, /mock_developer \(b\): asking you/);
  const stalled = logic.statusBarView([agent({ status: "stalled" })], "running");
  assert.equal(stalled.text, "$(hubot) 1 agent · $(watch) 1 stalled");
  assert.equal(stalled.background, "statusBarItem.warningBackground");
  assert.match(logic.stalledMessage(agent({ name: "dev-1" })), /dev-1 \(3f9c2a71\) is stalled/);
  // exited agents are not counted
  assert.equal(logic.statusBarView([agent({ status: "exited" })], "running").text, "$(hubot) 0 agents");
  assert.equal(logic.statusBarView([agent({ status: "error" })], "running").text, "$(hubot) 1 agent · $(error) 1");
  assert.equal(logic.statusBarView([], "starting").text, "$(loading~spin) CAO");
  assert.equal(logic.statusBarView([], "stopped").background, "statusBarItem.errorBackground");
  assert.match(logic.statusBarView([], "noFolder").tooltip, /open a folder/);
});

test("tree item: profile, provider, status icon, context value for menus", () => {
  const item = logic.agentTreeItem(agent({ status: "processing" }));
  assert.equal(item.label, "mock_developer");
  assert.equal(item.description, "mock · working · 3f9c2a71");
  assert.deepEqual(item.icon, { id: "sync~spin", color: "charts.blue" });
  assert.equal(item.contextValue, "agent.processing");
  assert.equal(item.id, "3f9c2a71");
  const named = logic.agentTreeItem(agent({ name: "dev-1", status: "waiting_user_answer", prompt: { id: "p", text: "Delete?", choices: ["Yes", "No"] } }));
  assert.equal(named.label, "dev-1 (mock_developer)");
  assert.equal(named.contextValue, "agent.waiting");
  assert.match(named.tooltip, /asks: Delete\?/);
  assert.equal(logic.agentTreeItem(agent({ status: "completed" })).icon.id, "pass");
  // every status has an icon
  for (const s of ["starting", "idle", "processing", "stalled", "completed", "waiting_user_answer", "error", "exited"]) {
    assert.ok(logic.statusIcon(s).id, s);
    assert.ok(logic.statusLabel(s), s);
  }
});

test("agent store: list, status notifications, prompt, unknown agents ask for a refresh", () => {
  const store = new logic.AgentStore();
  store.reset([agent()]);
  assert.equal(store.needsRefresh, false);
  store.applyStatus({ terminalId: "3f9c2a71", profile: "mock_developer", status: "waiting_user_answer", previousStatus: "processing", session: "cao", prompt: { id: "t:1", text: "Proceed?", choices: ["yes", "no"] } });
  assert.equal(store.get("3f9c2a71").status, "waiting_user_answer");
  assert.equal(store.get("3f9c2a71").prompt.text, "Proceed?");
  assert.equal(store.get("3f9c2a71").provider, "mock"); // kept from the list
  store.applyStatus({ terminalId: "3f9c2a71", profile: "mock_developer", status: "completed", previousStatus: "waiting_user_answer", session: "cao", prompt: null });
  assert.equal(store.get("3f9c2a71").prompt, null);
  store.applyStatus({ terminalId: "new1", profile: "mock_reviewer", status: "starting", previousStatus: null, session: "cao" });
  assert.equal(store.needsRefresh, true);
  assert.deepEqual(store.list().map((a) => a.terminalId), ["3f9c2a71", "new1"]);
  store.remove("new1");
  assert.deepEqual(store.list().map((a) => a.terminalId), ["3f9c2a71"]);
  store.reset([]);
  assert.equal(store.needsRefresh, false);
  assert.equal(store.list().length, 0);
});

test("quick pick items for profiles and agents", () => {
  const profiles = [
    { name: "mock_developer", description: "Test developer.", provider: "mock", source: "builtin", scope: "builtin" },
    { name: "dba", description: "", provider: "claude_code", source: "/w/.cao/agents/dba.md", scope: "workspace", stale: true },
  ];
  assert.deepEqual(logic.profilePickItems(profiles), [
    { profile: "mock_developer", label: "mock_developer", description: "mock", detail: "Test developer." },
    { profile: "dba", label: "dba", description: "claude_code · workspace · has errors", detail: undefined },
  ]);
  assert.equal(logic.profilePickItems(profiles, "codex")[0].description, "codex (setting; profile: mock)");
  assert.deepEqual(logic.agentPickItems([agent({ status: "completed" })]), [
    { terminalId: "3f9c2a71", label: "mock_developer", description: "mock · done · 3f9c2a71", detail: undefined },
  ]);
});

test("default provider goes into spawn/handoff/assign params only when set", () => {
  assert.deepEqual(logic.withProvider({ profile: "p" }, ""), { profile: "p" });
  assert.deepEqual(logic.withProvider({ profile: "p" }, undefined), { profile: "p" });
  assert.deepEqual(logic.withProvider({ profile: "p", message: "m" }, " codex "), { profile: "p", message: "m", provider: "codex" });
});

test("attach argv: the sidecar's attachCommand, else tmux attach on the socket", () => {
  const argv = ["tmux", "-u", "-S", "/tmp/tmux-0/s", "new-session", "-t", "cao"];
  assert.deepEqual(logic.attachArgv(agent({ attachCommand: argv }), "s"), argv);
  assert.deepEqual(logic.attachArgv(agent(), "cao-x"), ["tmux", "-L", "cao-x", "attach-session", "-t", "cao"]);
});

test("output documents and error texts", () => {
  assert.equal(logic.outputDocumentPath({ terminalId: "ab", profile: "mock_developer" }, "last"), "/mock_developer-ab.md");
  assert.equal(logic.outputDocumentPath({ terminalId: "ab", profile: "a/b c" }, "full"), "/a_b_c-ab-full.md");
  assert.equal(logic.errorText({ message: "agent x did not answer", data: { screenTail: "> sleep\n* Working... (60s)\n\n" } }), "agent x did not answer (screen: * Working... (60s))");
  assert.equal(logic.errorText(new Error("boom")), "boom");
  assert.equal(logic.errorText("plain"), "plain");
});

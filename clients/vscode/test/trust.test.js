// Unit tests of workspace trust in the extension (src/trust.ts and resolveSidecarPath in
// src/logic.ts, bundled to dist/logic.js): in an untrusted workspace nothing of the workspace's
// runs. Run: npm test (or node --test test/ after node build.mjs).
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const logic = require("../dist/logic.js");

// A hostile clone at /ws ships its own sidecar in every place the extension looks.
const files = new Set([
  "/ws/.venv/bin/cao-sidecar",
  "/ws/venv/bin/cao-sidecar",
  "/ws/env/bin/cao-sidecar",
  "/ws/tools/cao-sidecar",
  "/ws/node_modules/.bin/cao-sidecar",
  "/usr/local/bin/cao-sidecar",
  "/opt/cao/bin/cao-sidecar",
]);
const base = {
  workspaceRoots: ["/ws"],
  envPath: ["/usr/bin", "/usr/local/bin"].join(path.delimiter),
  home: "/home/u",
  isExecutable: (f) => files.has(f),
};
const untrusted = { ...base, workspaceTrusted: false };
const trusted = { ...base, workspaceTrusted: true };

test("untrusted: the workspace's .venv, venv, env are never run; PATH is", () => {
  const r = logic.resolveSidecarPath(untrusted);
  assert.equal(r.path, "/usr/local/bin/cao-sidecar");
  assert.equal(r.how, "PATH");
  assert.ok(!r.tried.some((f) => f.startsWith("/ws/")), r.tried);
  // trusted: the workspace's own comes first
  assert.equal(logic.resolveSidecarPath(trusted).path, "/ws/.venv/bin/cao-sidecar");
  // not said: untrusted
  assert.equal(logic.resolveSidecarPath(base).path, "/usr/local/bin/cao-sidecar");
  // every workspace folder counts
  assert.equal(logic.resolveSidecarPath({ ...untrusted, workspaceRoots: ["/other", "/ws"] }).path, "/usr/local/bin/cao-sidecar");
});

test("untrusted and nothing on PATH: an error that says why, not the workspace's program", () => {
  const r = logic.resolveSidecarPath({ ...untrusted, envPath: "/usr/bin" });
  assert.equal(r.path, undefined);
  assert.match(r.how, /not trusted/);
  assert.match(r.how, /user settings/);
});

test("untrusted: a setting that points into the workspace is refused", () => {
  for (const setting of ["${workspaceFolder}/.venv/bin/cao-sidecar", "tools/cao-sidecar", "/ws/tools/cao-sidecar", "./venv/bin/cao-sidecar"]) {
    const r = logic.resolveSidecarPath({ ...untrusted, setting });
    assert.equal(r.path, undefined, setting);
    assert.match(r.how, /points into the workspace, which is not trusted/, setting);
    // trusted: it is used
    assert.ok(logic.resolveSidecarPath({ ...trusted, setting }).path?.startsWith("/ws/"), setting);
  }
  // a user setting outside the workspace is used either way
  assert.equal(logic.resolveSidecarPath({ ...untrusted, setting: "/opt/cao/bin/cao-sidecar" }).path, "/opt/cao/bin/cao-sidecar");
});

test("PATH entries inside an untrusted workspace, or relative ones, are skipped", () => {
  const envPath = ["/ws/node_modules/.bin", "node_modules/.bin", ".", "/usr/local/bin"].join(path.delimiter);
  assert.equal(logic.resolveSidecarPath({ ...untrusted, envPath }).path, "/usr/local/bin/cao-sidecar");
  assert.equal(logic.resolveSidecarPath({ ...untrusted, envPath, setting: "cao-sidecar" }).path, "/usr/local/bin/cao-sidecar");
  // trusted: an absolute PATH entry in the workspace is the user's own PATH
  assert.equal(logic.resolveSidecarPath({ ...trusted, envPath, setting: "cao-sidecar" }).path, "/ws/node_modules/.bin/cao-sidecar");
});

test("cao.sidecarPath: the workspace's value only in a trusted workspace", () => {
  const layers = { user: "/opt/cao/bin/cao-sidecar", workspace: "/ws/tools/cao-sidecar" };
  assert.deepEqual(logic.effectiveSidecarSetting(layers, true), { setting: "/ws/tools/cao-sidecar" });
  const u = logic.effectiveSidecarSetting(layers, false);
  assert.equal(u.setting, "/opt/cao/bin/cao-sidecar");
  assert.match(u.ignored, /from the workspace settings is not used: the workspace is not trusted/);
  assert.deepEqual(logic.effectiveSidecarSetting({ workspace: "/ws/x" }, false).setting, undefined);
  assert.deepEqual(logic.effectiveSidecarSetting({ user: "  ", workspace: "" }, false), { setting: undefined, ignored: undefined });
  assert.deepEqual(logic.effectiveSidecarSetting({ user: "/u" }, true), { setting: "/u" });
});

const folder = (over = {}) => ({ path: "/ws", trusted: false, source: "none", hasConfig: true, heldBack: [], ...over });

test("trust changes: only folders whose trust flipped", () => {
  assert.deepEqual(logic.trustChanges([], [folder()]), []);
  assert.deepEqual(logic.trustChanges([folder()], [folder()]), []);
  assert.deepEqual(logic.trustChanges([folder()], [folder({ trusted: true })]), [folder({ trusted: true })]);
  assert.deepEqual(logic.trustChanges([folder({ trusted: true }), folder({ path: "/b" })], [folder(), folder({ path: "/b" })]), [folder()]);
  assert.match(logic.trustChangeMessage(folder({ trusted: true })), /\/ws is now trusted/);
  assert.equal(
    logic.trustChangeMessage(folder({ heldBack: ["flow nightly: not scheduled", ".cao/providers/x.yaml: not loaded"] })),
    "CAO: /ws is no longer trusted: its .cao/ is not in force. Held back: flow nightly: not scheduled; .cao/providers/x.yaml: not loaded.",
  );
});

test("status bar tooltip says what is held back; text unchanged", () => {
  const held = folder({ heldBack: ["profile developer: the built-in stays in force"] });
  const v = logic.statusBarView([], "running", [held]);
  assert.equal(v.text, "$(hubot) 0 agents");
  assert.match(v.tooltip, /Not trusted, so its \.cao\/ is not in force:\n\/ws\n  · profile developer: the built-in stays in force/);
  assert.match(v.tooltip, /Manage Workspace Trust/);
  assert.doesNotMatch(logic.statusBarView([], "running", [folder({ trusted: true })]).tooltip, /Not trusted/);
  assert.doesNotMatch(logic.statusBarView([], "running", [folder({ hasConfig: false })]).tooltip, /Not trusted/);
  const many = folder({ heldBack: ["a", "b", "c", "d", "e", "f", "g"] });
  assert.match(logic.statusBarView([], "running", [many]).tooltip, /and 2 more/);
});

test("profile quick pick marks profiles of an untrusted folder", () => {
  const items = logic.profilePickItems([
    { name: "helper", description: "", provider: "mock", source: "/ws/.cao/agents/helper.md", scope: "workspace", untrusted: true },
    { name: "mock_developer", description: "", provider: "mock", source: "builtin", scope: "builtin", untrusted: false },
  ]);
  assert.equal(items[0].description, "mock · workspace · untrusted: its settings are held back");
  assert.equal(items[1].description, "mock");
});

test("methods announced by the sidecar", () => {
  const caps = { experimental: { cao: { methods: ["cao/spawn", "cao/setTrust"] } } };
  assert.equal(logic.hasMethod(caps, "cao/setTrust"), true);
  assert.equal(logic.hasMethod(caps, "cao/getTrust"), false);
  assert.equal(logic.hasMethod(undefined, "cao/setTrust"), false);
  assert.equal(logic.hasMethod({ experimental: { cao: { methods: "cao/setTrust" } } }, "cao/setTrust"), false);
});

// End-to-end test of workspace trust in a real VS Code (code-server with Workspace Trust on),
// driven by a headless chromium through playwright-core. tests/test_vscode_trust.py opens a folder
// laid out like a hostile clone: its own .venv/bin/cao-sidecar leaves a marker file when run. The
// person answers "No" to VS Code's trust question (Restricted Mode), then trusts the workspace from
// the Workspace Trust editor. Environment as for e2e.mjs, plus CAO_E2E_MARKER (the marker file)
// and CAO_E2E_HAS_VENV ("1": the folder has its own sidecar, so trusting it restarts the extension
// into that one; "0": trusting it is sent to the running sidecar, cao/setTrust).

import * as fs from "node:fs";
import * as path from "node:path";

import { openBrowser, until } from "./common.mjs";

const env = process.env;

const t0 = Date.now();
const result = { ok: false, steps: [], checks: {} };
const mark = (name) => {
  result.steps.push(name);
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${name}`);
};

const { browser, page } = await openBrowser(env);
const statusItem = page.locator(".statusbar-item", { hasText: /\d+ agents?/ }).first();
const dialogButton = (text) => page.locator(".monaco-dialog-box .monaco-button", { hasText: text });
const quickInput = page.locator(".quick-input-widget");

/** The person's steps; each throws with what it waited for. */
async function scenario() {
  await page.goto(`${env.CAO_E2E_URL}/?folder=${encodeURIComponent(env.CAO_E2E_WORKSPACE)}`);
  await page.locator(".monaco-workbench").waitFor({ timeout: 30000 });
  mark("workbench loaded");

  // 1. VS Code asks whether to trust the folder's authors: no (Restricted Mode).
  const no = dialogButton(/No, I don.t trust the authors/);
  await no.waitFor({ timeout: 30000 });
  result.checks.trustDialog = (await page.locator(".monaco-dialog-box").innerText()).replace(/\s+/g, " ").trim();
  await no.click();
  mark("not trusted (Restricted Mode)");

  // 2. The extension runs in Restricted Mode with the sidecar from PATH.
  await statusItem.waitFor({ timeout: 30000 });
  result.checks.statusBarUntrusted = (await statusItem.innerText()).trim();
  await new Promise((r) => setTimeout(r, 1500)); // time for a wrong program to show itself
  result.checks.markerBeforeTrust = fs.existsSync(env.CAO_E2E_MARKER);
  mark("sidecar running untrusted: " + result.checks.statusBarUntrusted);

  // 3. The person trusts the workspace (Workspace Trust editor).
  await page.keyboard.press("F1");
  await quickInput.waitFor({ state: "visible" });
  await quickInput.locator("input").fill(">Workspaces: Manage Workspace Trust");
  await quickInput.locator(".monaco-list-row", { hasText: "Manage Workspace Trust" }).first().waitFor();
  await page.keyboard.press("Enter");
  const trustButton = page.locator(".workspace-trust-editor .monaco-button", { hasText: /^Trust$/ }).first();
  await trustButton.waitFor({ timeout: 15000 });
  await trustButton.click();
  mark("workspace trusted");

  if (env.CAO_E2E_HAS_VENV !== "1") {
    // 4'. No program of the workspace's: cao/setTrust to the running sidecar, whose answer shows
    //     as a notice (none from a sidecar without cao/setTrust).
    const notice = page.locator(".notifications-toasts .notification-toast", { hasText: /is now trusted/ }).first();
    result.checks.trustedNotice = await notice
      .waitFor({ timeout: 15000 })
      .then(async () => (await notice.innerText()).replace(/\s+/g, " ").trim())
      .catch(() => null);
    result.checks.markerAfterTrust = fs.existsSync(env.CAO_E2E_MARKER);
    result.checks.statusBarTrusted = (await statusItem.innerText()).trim();
    mark("trust sent to the running sidecar");
    return;
  }
  // 4. onDidGrantWorkspaceTrust: the extension restarts into the workspace's own sidecar.
  result.checks.markerAfterTrust = await until("the workspace's own sidecar to run", () => fs.existsSync(env.CAO_E2E_MARKER), 30000);
  await until("the status bar counting agents again", async () => /\d+ agents?/.test(await statusItem.innerText()), 30000);
  result.checks.statusBarTrusted = (await statusItem.innerText()).trim();
  mark("the workspace's own sidecar runs");
}

try {
  await scenario();
  result.ok = true;
} catch (err) {
  result.error = String(err && err.stack ? err.stack : err);
  console.error(result.error);
  await page.screenshot({ path: path.join(path.dirname(env.CAO_E2E_RESULT), "failure.png") }).catch(() => undefined);
} finally {
  fs.writeFileSync(env.CAO_E2E_RESULT, JSON.stringify(result, null, 2));
  await browser.close();
}
process.exit(result.ok ? 0 : 1);

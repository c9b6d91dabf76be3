// End-to-end test of the extension in a real VS Code (code-server), driven by a headless chromium
// through playwright-core, against the real sidecar and the mock agent. tests/test_vscode.py
// installs the .vsix, starts code-server and runs this script; everything is passed in the
// environment:
//   CAO_E2E_URL          code-server's URL (auth none)
//   CAO_E2E_WORKSPACE    the folder to open
//   CAO_E2E_SOCKET       the tmux socket the extension must derive for that folder
//   CAO_E2E_SCREENSHOT   where to save the screenshot
//   CAO_E2E_RESULT       where to write the result (JSON)
//   CAO_E2E_SERVER_PID   code-server's pid (to find the sidecar among its descendants)
//   CAO_E2E_CHROMIUM     the browser; CAO_E2E_PLAYWRIGHT: the playwright-core package directory
// Each step throws with what it waited for; on failure a screenshot goes next to the result.

import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { openBrowser, until } from "./common.mjs";

const env = process.env;

const t0 = Date.now();
const timings = {};
const result = { ok: false, timings, steps: [], checks: {} };
const elapsed = () => Date.now() - t0;
const mark = (name) => {
  timings[name] = elapsed();
  result.steps.push(name);
  console.log(`[${(timings[name] / 1000).toFixed(1)} s] ${name}`);
};

function tmux(...args) {
  try {
    return execFileSync("tmux", ["-L", env.CAO_E2E_SOCKET, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return "";
  }
}

/** Pids of the sidecar processes under code-server (its extension host starts them). */
function sidecarPids() {
  const children = new Map();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push({ pid: Number(entry), cmdline });
    } catch {
      // gone meanwhile
    }
  }
  const found = [];
  const walk = (pid) => {
    for (const child of children.get(pid) ?? []) {
      if (child.cmdline.some((a) => a.endsWith("cao-sidecar")) && child.cmdline.includes("--tmux-socket")) found.push(child);
      walk(child.pid);
    }
  };
  walk(Number(env.CAO_E2E_SERVER_PID));
  return found;
}

const { browser, page } = await openBrowser(env);

// ------------------------------------------------------------------ UI helpers

const statusItem = page.locator(".statusbar-item", { hasText: /\d+ agents?/ }).first();
const sideBar = page.locator(".part.sidebar");
const agentRow = (text) => sideBar.locator(".monaco-list-row", { hasText: text });
const quickInput = page.locator(".quick-input-widget");
const toast = (text) => page.locator(".notifications-toasts .notification-toast", { hasText: text });

async function runCommand(title) {
  // (no Escape when nothing is open: in a focused terminal it would reach the agent)
  if (await quickInput.isVisible()) await page.keyboard.press("Escape");
  // An editor that is still opening (a multi-file diff) can take focus and close the palette
  // right after it opened: then open it again.
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press("F1");
    try {
      await quickInput.waitFor({ state: "visible", timeout: 10000 });
      await quickInput.locator("input").fill(`>${title}`, { timeout: 10000 });
      await quickInput.locator(".monaco-list-row", { hasText: title }).first().waitFor({ timeout: 10000 });
      break;
    } catch (err) {
      if (attempt >= 3) throw err;
      if (await quickInput.isVisible()) await page.keyboard.press("Escape");
    }
  }
  await page.keyboard.press("Enter");
}

async function pick(text, rowText = text) {
  await quickInput.waitFor({ state: "visible" });
  // the items may still be loading (they come from the sidecar)
  await quickInput.locator(".monaco-list-row", { hasText: rowText }).first().waitFor();
  await quickInput.locator("input").fill(text);
  await quickInput.locator(".monaco-list-row", { hasText: rowText }).first().waitFor();
  await page.keyboard.press("Enter");
}

/** Like pick, but filters first: for an item below the fold of a long list (rows are virtual). */
async function pickFiltered(text, rowText = text) {
  await quickInput.waitFor({ state: "visible" });
  await quickInput.locator(".monaco-list-row").first().waitFor();
  await quickInput.locator("input").fill(text);
  await quickInput.locator(".monaco-list-row", { hasText: rowText }).first().waitFor();
  await page.keyboard.press("Enter");
}

async function typeInput(text) {
  await quickInput.waitFor({ state: "visible" });
  await until("the input box", async () => !(await quickInput.locator(".monaco-list-row").first().isVisible().catch(() => false)), 5000);
  await quickInput.locator("input").fill(text);
  await page.keyboard.press("Enter");
}

/** The text of the editor showing the agent's answer (a read-only cao-output: document). */
async function editorText(tabText) {
  await page.locator(".tabs-container .tab", { hasText: tabText }).first().waitFor();
  const text = await page.locator(".editor-instance .monaco-editor .view-lines").first().innerText();
  return text.replace(/\u00a0/g, " ");
}

async function terminalIdOf(rowText) {
  const description = await agentRow(rowText).first().locator(".label-description").innerText();
  const id = description.split(" · ").pop().trim();
  if (!/^[0-9a-f]{6,}$/i.test(id)) throw new Error(`no terminal id in '${description}'`);
  return id;
}

// ------------------------------------------------------------------ the scenario

try {
  await page.goto(`${env.CAO_E2E_URL}/?folder=${encodeURIComponent(env.CAO_E2E_WORKSPACE)}`);
  await page.locator(".monaco-workbench").waitFor({ timeout: 30000 });
  mark("workbench loaded");

  // 1. The status bar item, once the sidecar answered cao/listAgents.
  await statusItem.waitFor({ timeout: 30000 });
  result.checks.statusBarInitial = (await statusItem.innerText()).trim();
  mark("status bar: " + result.checks.statusBarInitial);

  // The side bar view.
  await page.locator('.activitybar [aria-label="CAO Agents"]').first().click();
  await sideBar.getByText("No agents yet.").first().waitFor(); // the view's welcome content
  // A wider side bar (drag its edge), so that the agents' descriptions show in full.
  const box = await sideBar.boundingBox();
  await page.mouse.move(box.x + box.width + 1, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width + 140, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();

  // 2. Spawn an agent from the command palette.
  await runCommand("CAO: Spawn Agent from Profile");
  const profileRow = quickInput.locator(".monaco-list-row", { hasText: "mock_developer" }).first();
  await profileRow.waitFor();
  result.checks.profilePick = (await profileRow.innerText()).replace(/\s+/g, " ").trim();
  await pick("mock_developer");
  await agentRow(/mock_developer.*idle/).first().waitFor({ timeout: 30000 });
  const dev = await terminalIdOf("mock_developer");
  result.checks.spawned = dev;
  result.checks.windowsAfterSpawn = tmux("list-windows", "-a", "-F", "#{window_name}");
  await until("the status bar to count 1 agent", async () => /1 agent\b/.test(await statusItem.innerText()));
  mark(`spawned mock_developer ${dev}`);
  // A click on the status bar item lists the agents.
  await statusItem.click();
  const listed = quickInput.locator(".monaco-list-row", { hasText: dev }).first();
  await listed.waitFor();
  result.checks.statusBarList = (await listed.innerText()).replace(/\s+/g, " ").trim();
  await page.keyboard.press("Escape");

  // 3. A handoff to it, with progress; the answer opens in a read-only document.
  await runCommand("CAO: Hand Off Task");
  await pick(dev, dev);
  await typeInput("sleep 1 hello from vscode");
  const progress = toast(`Hand off to mock_developer (${dev})`);
  await until("the progress notification to show the agent working", async () =>
    /processing/.test(await progress.first().innerText()),
  );
  result.checks.handoffProgress = (await progress.first().innerText()).replace(/\s+/g, " ").trim();
  result.checks.statusBarBusy = {
    text: (await statusItem.innerText()).replace(/\s+/g, " ").trim(),
    spinner: (await statusItem.locator(".codicon-modifier-spin").count()) > 0,
  };
  const handoffText = await until("the handoff's answer", async () => {
    const text = await editorText(`mock_developer-${dev}`);
    return text.includes("hello from vscode") ? text : false;
  });
  result.checks.handoffAnswer = handoffText.trim();
  result.checks.handoffReadOnly = await page
    .locator(".editor-instance .monaco-editor textarea")
    .first()
    .evaluate((el) => el.readOnly || el.getAttribute("aria-readonly") === "true");
  mark("handoff answered");

  // A long handoff cancelled from its notification: $/cancelRequest interrupts the agent's turn.
  await runCommand("CAO: Hand Off Task");
  await pick(dev, dev);
  await typeInput("sleep 60 a long task");
  await agentRow(/mock_developer.*working/).first().waitFor();
  await until("the cancellable progress notification", async () => /processing/.test(await progress.first().innerText()));
  await progress.first().locator(".monaco-button", { hasText: "Cancel" }).click();
  await until("the agent's turn to be interrupted", async () => (await agentRow(/mock_developer.*working/).count()) === 0, 15000);
  result.checks.afterCancel = (await agentRow(dev).first().locator(".label-description").innerText()).trim();
  mark("handoff cancelled");

  // 4. The agent's live terminal (its attachCommand in an integrated terminal), from the
  //    inline action of its row in the Agents view.
  await agentRow(dev).first().hover();
  await agentRow(dev).first().locator('.action-label[aria-label="Open Agent Terminal"]').click();
  result.checks.tmuxClients = await until("a tmux client attached to the agent", async () => {
    // (not the sidecar's own control-mode client: a terminal's)
    const clients = tmux("list-clients", "-F", "#{client_control_mode} #{session_name} #{window_name}");
    const line = clients.split("\n").find((l) => l.startsWith("0 ") && l.endsWith(`-${dev}`));
    return line ?? false;
  });
  mark("terminal attached");

  // 5. Assign in the background: the worker-finished notification, then its answer.
  await runCommand("CAO: Assign Task in Background");
  await pick("mock_reviewer");
  await typeInput("sleep 1 review done: no bugs");
  const finished = toast(/mock_reviewer \([0-9a-f]+\) finished: review done: no bugs/);
  await finished.waitFor({ timeout: 30000 });
  result.checks.workerCompletedToast = (await finished.locator(".notification-list-item-message").innerText()).trim();
  const reviewer = result.checks.workerCompletedToast.match(/\(([0-9a-f]+)\)/)[1];
  await finished.locator(".monaco-button", { hasText: "Open Answer" }).click();
  const assignText = await until("the worker's answer", async () => {
    const text = await editorText("mock_reviewer-");
    return text.includes("review done") ? text : false;
  });
  result.checks.assignAnswer = assignText.trim();
  mark("assign: worker finished, answer opened");

  // 6. An agent asks: the notification with its choices; a click answers it.
  await runCommand("CAO: Send Message to Agent");
  await pick(dev, dev);
  await typeInput("ask Apply the patch to cart.py?");
  const ask = toast(`mock_developer (${dev}) asks:`);
  await ask.waitFor({ timeout: 20000 });
  result.checks.askToast = (await ask.locator(".notification-list-item-message").innerText()).trim();
  result.checks.askButtons = await ask.locator(".monaco-button").allInnerTexts();
  await agentRow(/mock_developer.*asking you/).first().waitFor();
  await until("the status bar to show the question", async () => /asking/.test(await statusItem.innerText()));
  result.checks.statusBarAsking = (await statusItem.innerText()).trim();
  mark("agent asks: notification shown");
  await page.screenshot({ path: env.CAO_E2E_SCREENSHOT });
  mark("screenshot saved");
  await ask.locator(".monaco-button", { hasText: /^Yes$/ }).click();
  await agentRow(/mock_developer.*done/).first().waitFor({ timeout: 20000 });
  await runCommand("CAO: Show Agent's Last Answer");
  await pick(dev, dev);
  const answered = await until("the answer after the click", async () => {
    const text = await editorText(`mock_developer-${dev}`);
    return /answered: /.test(text) ? text : false;
  });
  result.checks.askAnswer = answered.trim();
  mark("answered by a click: " + result.checks.askAnswer);

  // The other way: "Open terminal" in the question's notification (cao/openTerminal), then the
  // answer from the command palette (cao/answer with the prompt's choices).
  await runCommand("CAO: Send Message to Agent");
  await pick(reviewer, reviewer);
  await typeInput("ask Ship it?");
  const ask2 = toast(`mock_reviewer (${reviewer}) asks: Ship it?`);
  await ask2.waitFor({ timeout: 20000 });
  await ask2.locator(".monaco-button", { hasText: "Open terminal" }).click();
  result.checks.openTerminalClient = await until("a terminal on the reviewer's window", async () => {
    const clients = tmux("list-clients", "-F", "#{client_control_mode} #{session_name} #{window_name}");
    return clients.split("\n").find((l) => l.startsWith("0 ") && l.endsWith(`-${reviewer}`)) ?? false;
  });
  await runCommand("CAO: Answer Agent's Question");
  await pick("No", "No");
  await agentRow(new RegExp(`mock_reviewer.*done.*${reviewer}`)).first().waitFor({ timeout: 20000 });
  await runCommand("CAO: Show Agent's Last Answer");
  await pick(reviewer, reviewer);
  result.checks.paletteAnswer = (
    await until("the reviewer's answer", async () => {
      const text = await editorText(`mock_reviewer-${reviewer}`);
      return /answered: /.test(text) ? text : false;
    })
  ).trim();
  mark("answered from the palette after opening the terminal from the notification");

  // 7. The sidecar dies: languageclient restarts it, the new one adopts the agents.
  const before = sidecarPids();
  if (before.length !== 1) throw new Error(`expected one sidecar, found ${JSON.stringify(before)}`);
  process.kill(before[0].pid, "SIGKILL");
  result.checks.sidecarArgs = before[0].cmdline.slice(1).filter(Boolean);
  const restarted = await until("a new sidecar", async () => {
    const now = sidecarPids();
    return now.length === 1 && now[0].pid !== before[0].pid ? now[0].pid : false;
  }, 30000);
  await until("the agents listed again after the restart", async () => {
    const text = await statusItem.innerText();
    return /2 agents/.test(text) && (await agentRow(dev).count()) === 1;
  }, 30000);
  result.checks.afterRestart = (await statusItem.innerText()).trim();
  result.checks.restartedPid = restarted;
  mark("sidecar restarted, agents adopted");
  // and it still works: a handoff to the adopted agent
  await runCommand("CAO: Hand Off Task");
  await pick(dev, dev);
  await typeInput("echo still here");
  await until("the answer from the adopted agent", async () => (await editorText(`mock_developer-${dev}`)).includes("still here"));
  mark("adopted agent answered");

  // 8. Problems panel: the broken profile in .cao/agents/ has the sidecar's diagnostic.
  await runCommand("View: Focus Problems");
  const problem = page.locator(".markers-panel .monaco-list-row", { hasText: /provider/ }).first();
  await problem.waitFor({ timeout: 10000 });
  result.checks.problem = (await page.locator(".markers-panel").innerText()).replace(/\s+/g, " ").trim();
  mark("profile diagnostic in Problems");

  // 9. Terminate from the command palette (a modal asks first).
  await runCommand("CAO: Terminate Agent");
  await pick(dev, dev);
  await page.locator(".monaco-dialog-box .monaco-button", { hasText: "Terminate" }).click();
  await until("the agent gone from the view", async () => (await agentRow(dev).count()) === 0);
  await until("its tmux window gone", async () => !tmux("list-windows", "-a", "-F", "#{window_name}").includes(dev));
  result.checks.windowsAfterTerminate = tmux("list-windows", "-a", "-F", "#{window_name}");
  result.checks.statusBarFinal = (await statusItem.innerText()).trim();
  mark("terminated");

  // 10. A worker with its own git worktree (the workspace profile wt_dev says `worktree: true`):
  //     the finished notification says where its work is; its changes as a diff; merged.
  await runCommand("CAO: Assign Task in Background");
  await pickFiltered("wt_dev");
  await typeInput("edit notes.txt from vscode");
  const work = toast(/wt_dev \([0-9a-f]+\) left its work on cao\/wt_dev-/);
  await work.waitFor({ timeout: 30000 });
  result.checks.worktreeToast = (await work.locator(".notification-list-item-message").innerText()).trim();
  await work.locator(".monaco-button", { hasText: "Show Changes" }).click();
  const diffTab = page.locator(".tabs-container .tab", { hasText: "↔ main" }).first();
  await diffTab.waitFor({ timeout: 15000 });
  // the diff's file is drawn once the editor has finished opening (and taken focus)
  await page.locator(".editor-group-container .monaco-editor", { hasText: /./ }).first()
    .waitFor({ timeout: 15000 }).catch(() => undefined);
  result.checks.worktreeDiffTab = (await diffTab.innerText()).trim();
  mark("worker's changes shown as a diff");
  await runCommand("CAO: Merge a Worker's Branch");
  await pick("wt_dev", "cao/wt_dev-");
  await pick("Merge", "a merge commit");
  const merged = toast(/cao\/wt_dev-[0-9a-f]+ merged into main/);
  await merged.waitFor({ timeout: 30000 });
  result.checks.mergeToast = (await merged.locator(".notification-list-item-message").innerText()).trim();
  mark("worker's branch merged");

  result.ok = true;
} catch (err) {
  result.error = String(err && err.stack ? err.stack : err);
  console.error(result.error);
  await page.screenshot({ path: path.join(path.dirname(env.CAO_E2E_RESULT), "failure.png") }).catch(() => undefined);
  result.failureScreenshot = path.join(path.dirname(env.CAO_E2E_RESULT), "failure.png");
} finally {
  timings.total = elapsed();
  fs.writeFileSync(env.CAO_E2E_RESULT, JSON.stringify(result, null, 2));
  await browser.close();
}
process.exit(result.ok ? 0 : 1);

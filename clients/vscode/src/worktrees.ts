// Worker worktrees in VS Code: a worker's changes as a diff (its base version against its
// worktree), merge and discard, the open worktrees in a quick pick. The logic that needs no
// editor is in ./worktreeLogic.

import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as vscode from "vscode";

import {
  type MergeWorktreeResult,
  type WorktreeInfo,
  changedFiles,
  decodeBaseQuery,
  encodeBaseQuery,
  mergeResultMessage,
  workerWorkMessage,
  worktreePickItems,
} from "./worktreeLogic";

export const BASE_SCHEME = "cao-base";

/** Read-only base versions of a worker's files: `git show <commit>:<file>` in its repository. */
export class BaseVersions implements vscode.TextDocumentContentProvider {
  provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    const q = decodeBaseQuery(uri.query);
    if (!q) return Promise.resolve("");
    return new Promise((resolve) => {
      execFile("git", ["show", `${q.commit}:${q.file}`], { cwd: q.repository, maxBuffer: 64 * 1024 * 1024 }, (err, stdout) => {
        resolve(err ? "" : stdout); // a file the worker added has no base version
      });
    });
  }
}

type Request = <R>(method: string, params: object) => Promise<R>;

export class Worktrees {
  constructor(
    private readonly request: Request,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  async pick(title: string): Promise<WorktreeInfo | undefined> {
    const { worktrees } = await this.request<{ worktrees: WorktreeInfo[] }>("cao/listWorktrees", {});
    if (!worktrees?.length) {
      void vscode.window.showInformationMessage("CAO: no worker worktree is open (none waits to be merged or discarded).");
      return undefined;
    }
    const picked = await vscode.window.showQuickPick(worktreePickItems(worktrees), { title, placeHolder: "Worker's branch", matchOnDescription: true });
    return picked ? worktrees.find((w) => w.terminalId === picked.terminalId) : undefined;
  }

  /** The open worktrees, then what to do with the one picked. */
  async showAll(): Promise<void> {
    const w = await this.pick("CAO: workers' worktrees");
    if (!w) return;
    type Item = vscode.QuickPickItem & { run: () => unknown };
    const items: Item[] = [
      { label: "$(diff) Show Changes", run: () => this.showChanges(w) },
      { label: "$(git-merge) Merge into " + w.base, run: () => this.merge(w, "merge") },
      { label: "$(git-pull-request) Rebase onto " + w.base + " and Fast-forward", run: () => this.merge(w, "rebase") },
      { label: "$(trash) Discard", run: () => this.discard(w) },
    ];
    const picked = await vscode.window.showQuickPick(items, { title: `${w.branch} (${w.profile} ${w.terminalId})` });
    await picked?.run();
  }

  /** The worker's changes in one multi-file diff: base version (left) against its worktree (right). */
  async showChanges(w?: WorktreeInfo): Promise<void> {
    w ??= await this.pick("CAO: show a worker's changes");
    if (!w) return;
    const files = changedFiles(w);
    if (files.length === 0) {
      void vscode.window.showInformationMessage(`CAO: ${w.branch} has no changes against ${w.base}.`);
      return;
    }
    const entries = files.map((f) => {
      const base = vscode.Uri.from({ scheme: BASE_SCHEME, path: "/" + f.file, query: encodeBaseQuery(f.base) });
      const right = fs.existsSync(f.worktreeFile)
        ? vscode.Uri.file(f.worktreeFile)
        : vscode.Uri.from({ scheme: BASE_SCHEME, path: "/" + f.file + " (deleted)", query: "" });
      return [vscode.Uri.file(f.worktreeFile), base, right] as [vscode.Uri, vscode.Uri, vscode.Uri];
    });
    const title = `${w.branch} ↔ ${w.base}`;
    this.log.info(`showing ${entries.length} changed file(s) of ${w.branch}`);
    try {
      await vscode.commands.executeCommand("vscode.changes", title, entries);
    } catch {
      // An editor without the multi-file diff: the first file's diff.
      await vscode.commands.executeCommand("vscode.diff", entries[0][1], entries[0][2], `${files[0].file} (${title})`);
    }
  }

  async merge(w?: WorktreeInfo, strategy?: "merge" | "rebase"): Promise<void> {
    w ??= await this.pick("CAO: merge a worker's branch");
    if (!w) return;
    if (!strategy) {
      const picked = await vscode.window.showQuickPick(
        [
          { label: "Merge", description: `a merge commit on ${w.base}`, value: "merge" as const },
          { label: "Rebase", description: `rebase ${w.branch} onto ${w.base}, then fast-forward`, value: "rebase" as const },
        ],
        { title: `CAO: bring ${w.branch} into ${w.base}` },
      );
      if (!picked) return;
      strategy = picked.value;
    }
    const result = await this.request<MergeWorktreeResult>("cao/mergeWorktree", { terminalId: w.terminalId, strategy });
    const message = mergeResultMessage(result);
    this.log.info(`cao/mergeWorktree ${w.terminalId}: ${result.message}`);
    if (message.ok) {
      void vscode.window.showInformationMessage(`CAO: ${message.text}`);
      return;
    }
    const choice = await vscode.window.showWarningMessage(`CAO: ${message.text}`, "Show Changes", "Discard");
    if (choice === "Show Changes") await this.showChanges(result.worktree);
    else if (choice === "Discard") await this.discard(result.worktree);
  }

  async discard(w?: WorktreeInfo): Promise<void> {
    w ??= await this.pick("CAO: discard a worker's work");
    if (!w) return;
    const choice = await vscode.window.showWarningMessage(
      `Discard ${w.branch}?`,
      { modal: true, detail: `The work of ${w.profile} (${w.terminalId}) is thrown away: its worktree and its branch are deleted${w.state === "active" ? " and its agent is terminated" : ""}.` },
      "Discard",
    );
    if (choice !== "Discard") return;
    await this.request("cao/discardWorktree", { terminalId: w.terminalId });
    vscode.window.setStatusBarMessage(`$(trash) Discarded ${w.branch}`, 5000);
  }

  /** A worker finished with a worktree: say where its work is and offer what to do with it. */
  async offer(w: WorktreeInfo, openAnswer: () => unknown): Promise<void> {
    const choice = await vscode.window.showInformationMessage(`CAO: ${workerWorkMessage(w)}`, "Show Changes", "Merge", "Discard", "Open Answer");
    if (choice === "Show Changes") await this.showChanges(w);
    else if (choice === "Merge") await this.merge(w);
    else if (choice === "Discard") await this.discard(w);
    else if (choice === "Open Answer") await openAnswer();
  }
}

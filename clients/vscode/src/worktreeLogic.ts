// Worker worktrees in VS Code, the part that needs no editor (unit-tested in test/worktrees.test.js):
// pick items, messages, the files of a worker's diff. src/worktrees.ts does the VS Code side.

import * as path from "node:path";

/** A worker's git worktree and the work on its branch (WorktreeInfo in protocol/spec.md). */
export interface WorktreeInfo {
  terminalId: string;
  profile: string;
  session: string;
  repository: string;
  path: string;
  branch: string;
  base: string;
  baseCommit: string;
  state: "active" | "kept" | "merged" | "discarded";
  head?: string | null;
  commits?: string[];
  files?: string[];
  diffStat?: string;
  committedLeftovers?: boolean;
  dirty?: boolean | null;
  copiedFiles?: string[];
  notes?: string[];
  agentStatus?: string | null;
}

export interface MergeWorktreeResult {
  merged: boolean;
  message: string;
  worktree: WorktreeInfo;
  conflicts?: string[];
  commit?: string | null;
}

/** "3 commits, 2 files changed (uncommitted changes)" */
export function workSummary(w: WorktreeInfo): string {
  const commits = w.commits?.length ?? 0;
  const files = w.files?.length ?? 0;
  let text = `${commits} commit${commits === 1 ? "" : "s"}, ${files} file${files === 1 ? "" : "s"} changed`;
  if (w.dirty) text += " (uncommitted changes)";
  if (w.committedLeftovers) text += "; leftovers committed by the sidecar";
  return text;
}

export function worktreePickItems(list: WorktreeInfo[]): { label: string; description: string; detail: string; terminalId: string }[] {
  return list.map((w) => ({
    label: `$(git-branch) ${w.branch}`,
    description: `${w.profile} ${w.terminalId} · ${w.state === "active" ? `running (${w.agentStatus ?? "?"})` : "agent ended"} · from ${w.base}`,
    detail: workSummary(w),
    terminalId: w.terminalId,
  }));
}

/** What to tell the user after cao/mergeWorktree. */
export function mergeResultMessage(r: MergeWorktreeResult): { text: string; ok: boolean } {
  if (r.merged) return { text: `${r.worktree.branch} merged into ${r.worktree.base}.`, ok: true };
  const files = r.conflicts ?? [];
  const shown = files.slice(0, 10).join(", ") + (files.length > 10 ? `, … (${files.length} files)` : "");
  return {
    text: `${r.worktree.branch} conflicts with ${r.worktree.base} in ${shown || "some files"}: nothing was changed; the worker's branch is kept.`,
    ok: false,
  };
}

/** The text of the notification for a finished worker that has a worktree. */
export function workerWorkMessage(w: WorktreeInfo): string {
  return `${w.profile} (${w.terminalId}) left its work on ${w.branch}: ${workSummary(w)}.`;
}

/** Each changed file of a worker: its path in the worktree and how to read its base version. */
export function changedFiles(w: WorktreeInfo): { file: string; worktreeFile: string; base: BaseVersionQuery }[] {
  return (w.files ?? []).map((file) => ({
    file,
    worktreeFile: path.join(w.path, file),
    base: { repository: w.repository, commit: w.baseCommit, file },
  }));
}

/** Which version a base-side document shows: `git show <commit>:<file>` in <repository>. */
export interface BaseVersionQuery {
  repository: string;
  commit: string;
  file: string;
}

export function encodeBaseQuery(q: BaseVersionQuery): string {
  return JSON.stringify(q);
}

/** The query back, or undefined if it is not one of ours (a commit must look like one). */
export function decodeBaseQuery(text: string): BaseVersionQuery | undefined {
  try {
    const q = JSON.parse(text) as BaseVersionQuery;
    if (typeof q.repository !== "string" || typeof q.file !== "string" || !/^[0-9a-f]{4,64}$/.test(q.commit)) return undefined;
    if (q.file.startsWith("-") || q.file.split("/").includes("..")) return undefined;
    return q;
  } catch {
    return undefined;
  }
}

/** The setting cao.workerWorktrees as the `worktree` param of a new worker (absent: its profile decides). */
export function withWorktree<T extends object>(params: T, setting: string | undefined): T & { worktree?: boolean } {
  if (setting === "always") return { ...params, worktree: true };
  if (setting === "never") return { ...params, worktree: false };
  return params;
}

// Workflow runs in VS Code (docs/workflows.md): start one (quick pick, inputs as `k=v`), resume
// one, the runs and their steps in a read-only document, a notification when a run ends. The
// logic that needs no editor is in ./workflowLogic.

import * as vscode from "vscode";

import {
  type WorkflowInfo,
  type WorkflowRunInfo,
  parseWorkflowInputs,
  workflowPickItems,
  workflowRunEnded,
  workflowRunMessage,
  workflowRunsDocument,
} from "./workflowLogic";

export const RUNS_SCHEME = "cao-workflows";

type Request = <R>(method: string, params: object) => Promise<R>;

export class Workflows implements vscode.TextDocumentContentProvider {
  private readonly runs = new Map<string, WorkflowRunInfo>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private text = "";

  constructor(
    private readonly request: Request,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  provideTextDocumentContent(): string {
    return this.text;
  }

  /** cao/workflowRun: remember it; tell when it ends; keep an open runs document live. */
  onRun(run: WorkflowRunInfo): void {
    const before = this.runs.get(run.runId);
    this.runs.set(run.runId, run);
    if (workflowRunEnded(run, before)) {
      const message = workflowRunMessage(run);
      this.log.info(`cao/workflowRun ${run.runId} ${run.status}`);
      if (message.ok) void vscode.window.showInformationMessage(`CAO: ${message.text}`, "Show Runs").then((c) => c && this.showRuns());
      else void vscode.window.showWarningMessage(`CAO: ${message.text}`, "Resume", "Show Runs").then((c) => {
        if (c === "Resume") return this.resume(run.runId);
        if (c === "Show Runs") return this.showRuns();
      });
    }
    if (this.text) {
      this.text = workflowRunsDocument([...this.runs.values()].sort((a, b) => b.startedAt.localeCompare(a.startedAt)));
      this.changed.fire(vscode.Uri.from({ scheme: RUNS_SCHEME, path: "/workflow-runs.md" }));
    }
  }

  async run(): Promise<void> {
    const { workflows } = await this.request<{ workflows: WorkflowInfo[] }>("cao/listWorkflows", {});
    if (!workflows?.length) {
      void vscode.window.showInformationMessage("CAO: no workflows (put one in .cao/workflows/ of the workspace).");
      return;
    }
    const picked = await vscode.window.showQuickPick(workflowPickItems(workflows), { title: "CAO: run a workflow" });
    if (!picked) return;
    const typed = await vscode.window.showInputBox({ title: `CAO: inputs of ${picked.name}`, prompt: "name=value, separated by spaces (empty: none)" });
    if (typed === undefined) return;
    const parsed = parseWorkflowInputs(typed);
    if ("error" in parsed) throw new Error(parsed.error);
    const { run } = await this.request<{ run: WorkflowRunInfo }>("cao/runWorkflow", { name: picked.name, inputs: parsed.inputs });
    this.onRun(run);
    vscode.window.setStatusBarMessage(`$(play) workflow ${run.name} started (run ${run.runId})`, 5000);
  }

  async resume(runId?: string): Promise<void> {
    if (!runId) {
      const { runs } = await this.request<{ runs: WorkflowRunInfo[] }>("cao/listWorkflowRuns", {});
      const open = runs.filter((r) => r.status !== "completed");
      const picked = await vscode.window.showQuickPick(
        open.map((r) => ({ label: `${r.name} ${r.runId}`, description: `${r.status} · ${r.steps?.length ?? 0} steps`, detail: r.error ?? undefined, runId: r.runId })),
        { title: "CAO: resume a workflow run" },
      );
      if (!picked) return;
      runId = picked.runId;
    }
    const { run } = await this.request<{ run: WorkflowRunInfo }>("cao/resumeWorkflow", { runId });
    this.onRun(run);
  }

  async showRuns(): Promise<void> {
    const { runs } = await this.request<{ runs: WorkflowRunInfo[] }>("cao/listWorkflowRuns", { limit: 20 });
    for (const run of runs) this.runs.set(run.runId, run);
    this.text = workflowRunsDocument(runs);
    const uri = vscode.Uri.from({ scheme: RUNS_SCHEME, path: "/workflow-runs.md" });
    this.changed.fire(uri);
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc, { preview: true });
  }
}

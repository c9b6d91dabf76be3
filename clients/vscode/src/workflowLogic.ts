// Workflow runs (docs/workflows.md) as text, without the editor: the notification when a run
// ends, the runs document, the inputs typed as `k=v ...`.

export type WorkflowStepInfo = {
  key: number;
  profile: string;
  task: string;
  status: "pending" | "sent" | "completed" | "failed";
  terminalId?: string | null;
  answer?: string | null;
  error?: string | null;
  attempts?: number;
};

export type WorkflowRunInfo = {
  runId: string;
  name: string;
  path: string;
  status: "running" | "completed" | "failed" | "interrupted";
  trigger: string;
  startedAt: string;
  inputs?: Record<string, string>;
  endedAt?: string | null;
  output?: unknown;
  error?: string | null;
  steps?: WorkflowStepInfo[];
};

export type WorkflowInfo = {
  name: string;
  path: string;
  kind: "python" | "yaml";
  scope: "workspace" | "user";
  description?: string;
  untrusted?: boolean;
  problems?: string[];
};

const FINAL = new Set(["completed", "failed", "interrupted"]);

function oneLine(text: unknown, size = 80): string {
  const line = String(text ?? "").split(/\s+/).join(" ").trim();
  return line.length <= size ? line : line.slice(0, size - 1) + "…";
}

/** Whether this notification is the run's end (it was not ended in the one seen before). */
export function workflowRunEnded(run: WorkflowRunInfo, before?: WorkflowRunInfo): boolean {
  return FINAL.has(run.status) && (!before || before.status !== run.status);
}

/** The notification shown when a run ends. */
export function workflowRunMessage(run: WorkflowRunInfo): { text: string; ok: boolean } {
  const steps = run.steps?.length ?? 0;
  const head = `workflow ${run.name} (run ${run.runId}) ${run.status} after ${steps} step${steps === 1 ? "" : "s"}`;
  if (run.status === "completed") {
    const output = typeof run.output === "string" ? run.output : JSON.stringify(run.output);
    return { text: `${head}: ${oneLine(output)}`, ok: true };
  }
  return { text: `${head}: ${oneLine(run.error)}`, ok: false };
}

/** The runs as a Markdown document: each run, then its steps (worker, status, answer). */
export function workflowRunsDocument(runs: WorkflowRunInfo[]): string {
  if (runs.length === 0) return "No workflow runs yet (CAO: Run Workflow… starts one).\n";
  const lines: string[] = ["# Workflow runs", ""];
  for (const run of runs) {
    lines.push(`## ${run.name} · ${run.runId} · ${run.status}`, "", `started ${run.startedAt}${run.endedAt ? `, ended ${run.endedAt}` : ""}`);
    const inputs = Object.entries(run.inputs ?? {});
    if (inputs.length) lines.push(`inputs: ${inputs.map(([k, v]) => `${k}=${v}`).join(", ")}`);
    if (run.error) lines.push(`error: ${run.error}`);
    lines.push("");
    for (const s of run.steps ?? []) {
      const what = s.status === "completed" ? s.answer : s.error;
      lines.push(`- step ${s.key} · ${s.profile} · ${s.status} · ${s.terminalId ?? "-"}${what ? `: ${oneLine(what)}` : ""}`);
    }
    if (run.status === "completed") lines.push("", "output: " + (typeof run.output === "string" ? run.output : JSON.stringify(run.output)));
    lines.push("");
  }
  return lines.join("\n");
}

/** `topic=cats n=2` as inputs; an error naming the word that is not `name=value`. */
export function parseWorkflowInputs(text: string): { inputs: Record<string, string> } | { error: string } {
  const inputs: Record<string, string> = {};
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const at = word.indexOf("=");
    if (at <= 0) return { error: `${word} is not name=value` };
    inputs[word.slice(0, at)] = word.slice(at + 1);
  }
  return { inputs };
}

/** Quick pick items for the workflows (those that cannot run say why). */
export function workflowPickItems(workflows: WorkflowInfo[]): { label: string; description: string; detail?: string; name: string }[] {
  return workflows.map((w) => ({
    label: w.name,
    description: `${w.kind} · ${w.scope}${w.untrusted ? " · untrusted folder: does not run" : ""}`,
    detail: w.problems?.length ? `problems: ${w.problems.join("; ")}` : w.description || undefined,
    name: w.name,
  }));
}

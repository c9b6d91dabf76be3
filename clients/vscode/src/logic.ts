// The extension's own logic, free of `vscode` imports so that node's test runner can test it:
// wire types, the agent list kept from notifications, the status bar text, tree items, the tmux
// socket name, where the sidecar executable is, and the first line of an answer.

import { createHash } from "node:crypto";
import * as path from "node:path";

import { type TrustInfo, trustTooltipLines } from "./trust";

export * from "./trust";
export * from "./worktreeLogic";
export * from "./workflowLogic";

// ---------------------------------------------------------------- wire types (protocol/spec.md)

export type AgentStatus =
  | "starting"
  | "idle"
  | "processing"
  | "stalled"
  | "completed"
  | "waiting_user_answer"
  | "error"
  | "exited";

/** What an agent waiting for the user asks (contract: `prompt` of cao/agentStatus and AgentInfo). */
export interface AgentPrompt {
  id: string;
  text: string;
  choices: string[];
}

export interface AgentInfo {
  terminalId: string;
  session: string;
  profile: string;
  provider: string;
  status: AgentStatus;
  workingDirectory?: string | null;
  createdAt?: string | null;
  name?: string | null;
  prompt?: AgentPrompt | null;
  /** argv that shows the agent's live tmux window when run in a terminal */
  attachCommand?: string[] | null;
}

export interface AgentStatusNotification {
  terminalId: string;
  profile: string;
  status: AgentStatus;
  previousStatus: AgentStatus | null;
  session: string;
  prompt?: AgentPrompt | null;
}

export interface WorkerCompletedNotification {
  terminalId: string;
  profile: string;
  status: AgentStatus;
  output: string;
  error?: string | null;
  /** where a worker with a git worktree left its work */
  worktree?: import("./worktreeLogic").WorktreeInfo | null;
}

export interface ProfileInfo {
  name: string;
  description: string;
  provider: string;
  source: string;
  scope: "workspace" | "user" | "builtin";
  path?: string | null;
  model?: string | null;
  tags?: string[];
  stale?: boolean;
  /** from an untrusted workspace folder: its held-back parts are not in force */
  untrusted?: boolean;
}

/** Statuses in which an agent is busy (the status bar spins while any agent is in one). */
export const BUSY_STATUSES: ReadonlySet<AgentStatus> = new Set<AgentStatus>(["starting", "processing"]);

// ---------------------------------------------------------------- the agent list

/**
 * The agents as the editor knows them: a full list from cao/listAgents, kept current by
 * cao/agentStatus notifications. An agent first heard of in a notification is added with what the
 * notification says (`needsRefresh` then tells the caller to fetch the full list).
 */
export class AgentStore {
  private agents = new Map<string, AgentInfo>();
  private stale = false;

  /** Replace everything with a cao/listAgents answer. */
  reset(agents: AgentInfo[]): void {
    this.agents = new Map(agents.map((a) => [a.terminalId, { ...a }]));
    this.stale = false;
  }

  /** Apply a cao/agentStatus notification. Returns the agent as it is now. */
  applyStatus(n: AgentStatusNotification): AgentInfo {
    let agent = this.agents.get(n.terminalId);
    if (!agent) {
      agent = { terminalId: n.terminalId, session: n.session, profile: n.profile, provider: "", status: n.status };
      this.agents.set(n.terminalId, agent);
      this.stale = true;
    }
    agent.status = n.status;
    agent.prompt = n.status === "waiting_user_answer" ? n.prompt ?? agent.prompt ?? null : null;
    return agent;
  }

  /** Forget an agent (terminated: its window is gone). */
  remove(terminalId: string): void {
    this.agents.delete(terminalId);
  }

  get(terminalId: string): AgentInfo | undefined {
    return this.agents.get(terminalId);
  }

  /** Oldest first, as cao/listAgents orders them; agents first heard of in notifications last. */
  list(): AgentInfo[] {
    return [...this.agents.values()];
  }

  get needsRefresh(): boolean {
    return this.stale;
  }
}

// ---------------------------------------------------------------- status bar

export type ConnectionState = "starting" | "running" | "stopped" | "noFolder";

export interface StatusBarView {
  text: string;
  tooltip: string;
  /** a theme color id for the background, or undefined */
  background?: "statusBarItem.warningBackground" | "statusBarItem.errorBackground";
}

export function countAgents(agents: AgentInfo[]): { total: number; busy: number; waiting: number; errors: number; stalled: number } {
  const live = agents.filter((a) => a.status !== "exited");
  return {
    total: live.length,
    busy: live.filter((a) => BUSY_STATUSES.has(a.status)).length,
    waiting: live.filter((a) => a.status === "waiting_user_answer").length,
    errors: live.filter((a) => a.status === "error").length,
    stalled: live.filter((a) => a.status === "stalled").length,
  };
}

/** The status bar item: how many agents, how many working (spinner), how many asking. */
export function statusBarView(agents: AgentInfo[], state: ConnectionState, trust: TrustInfo[] = []): StatusBarView {
  if (state === "noFolder") {
    return { text: "$(hubot) CAO", tooltip: "CAO: open a folder to start the sidecar" };
  }
  if (state === "starting") {
    return { text: "$(loading~spin) CAO", tooltip: "CAO: starting the sidecar…" };
  }
  if (state === "stopped") {
    return {
      text: "$(debug-disconnect) CAO",
      tooltip: "CAO: the sidecar is not running (click to restart it)",
      background: "statusBarItem.errorBackground",
    };
  }
  const c = countAgents(agents);
  const parts = [`${c.busy > 0 ? "$(loading~spin)" : "$(hubot)"} ${c.total} ${c.total === 1 ? "agent" : "agents"}`];
  if (c.busy > 0) parts.push(`${c.busy} working`);
  if (c.waiting > 0) parts.push(`$(question) ${c.waiting} asking`);
  if (c.stalled > 0) parts.push(`$(watch) ${c.stalled} stalled`);
  if (c.errors > 0) parts.push(`$(error) ${c.errors}`);
  const lines = agents
    .filter((a) => a.status !== "exited")
    .map((a) => `${agentLabel(a)} (${a.terminalId}): ${statusLabel(a.status)}`);
  const tooltip = ["CAO agents", ...(lines.length ? lines : ["none yet"]), ...trustTooltipLines(trust), "", "Click for the list"].join("\n");
  return {
    text: parts.join(" · "),
    tooltip,
    background: c.waiting > 0 || c.stalled > 0 ? "statusBarItem.warningBackground" : undefined,
  };
}

// ---------------------------------------------------------------- tree view

const STATUS_LABELS: Record<AgentStatus, string> = {
  starting: "starting",
  idle: "idle",
  processing: "working",
  stalled: "stalled (no output for a while)",
  completed: "done",
  waiting_user_answer: "asking you",
  error: "error",
  exited: "exited",
};

export function statusLabel(status: AgentStatus): string {
  return STATUS_LABELS[status] ?? status;
}

/** The codicon (and its theme color) showing a status. */
export function statusIcon(status: AgentStatus): { id: string; color?: string } {
  switch (status) {
    case "starting":
      return { id: "loading~spin" };
    case "processing":
      return { id: "sync~spin", color: "charts.blue" };
    case "stalled":
      return { id: "watch", color: "list.warningForeground" };
    case "idle":
      return { id: "circle-large-outline" };
    case "completed":
      return { id: "pass", color: "testing.iconPassed" };
    case "waiting_user_answer":
      return { id: "question", color: "list.warningForeground" };
    case "error":
      return { id: "error", color: "list.errorForeground" };
    case "exited":
      return { id: "circle-slash", color: "disabledForeground" };
    default:
      return { id: "circle-large-outline" };
  }
}

/** An agent's display name: its name if it was given one, else its profile. */
export function agentLabel(agent: Pick<AgentInfo, "name" | "profile">): string {
  return agent.name ? `${agent.name}` : agent.profile;
}

export interface TreeItemView {
  id: string;
  label: string;
  description: string;
  tooltip: string;
  icon: { id: string; color?: string };
  /** `agent.<status>`: menus are keyed on it */
  contextValue: string;
}

export function agentTreeItem(agent: AgentInfo): TreeItemView {
  const label = agent.name ? `${agent.name} (${agent.profile})` : agent.profile;
  const description = [agent.provider, statusLabel(agent.status), agent.terminalId].filter(Boolean).join(" · ");
  const tooltip = [
    `${label}`,
    `terminal ${agent.terminalId}, session ${agent.session}`,
    agent.provider ? `provider ${agent.provider}` : "",
    `status ${agent.status}`,
    agent.workingDirectory ? `in ${agent.workingDirectory}` : "",
    agent.prompt ? `asks: ${agent.prompt.text}` : "",
  ]
    .filter(Boolean)
    .join("\n");
  return {
    id: agent.terminalId,
    label,
    description,
    tooltip,
    icon: statusIcon(agent.status),
    contextValue: `agent.${agent.status === "waiting_user_answer" ? "waiting" : agent.status}`,
  };
}

// ---------------------------------------------------------------- quick picks

export interface PickItem {
  label: string;
  description?: string;
  detail?: string;
}

/** Quick pick items for profiles: name, provider (and scope), description. */
export function profilePickItems(profiles: ProfileInfo[], defaultProvider?: string): (PickItem & { profile: string })[] {
  return profiles.map((p) => ({
    profile: p.name,
    label: p.name,
    description: [
      defaultProvider ? `${defaultProvider} (setting; profile: ${p.provider})` : p.provider,
      p.scope === "builtin" ? "" : p.scope,
      p.stale ? "has errors" : "",
      p.untrusted ? "untrusted: its settings are held back" : "",
    ]
      .filter(Boolean)
      .join(" · "),
    detail: p.description || undefined,
  }));
}

export function agentPickItems(agents: AgentInfo[]): (PickItem & { terminalId: string })[] {
  return agents.map((a) => ({
    terminalId: a.terminalId,
    label: agentLabel(a),
    description: [a.provider, statusLabel(a.status), a.terminalId].filter(Boolean).join(" · "),
    detail: a.prompt ? `asks: ${a.prompt.text}` : undefined,
  }));
}

// ---------------------------------------------------------------- answers

/** The first non-empty line of an answer, shortened to `max` characters. */
export function firstLine(output: string | null | undefined, max = 120): string {
  const line = (output ?? "")
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l.length > 0);
  if (!line) return "";
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** The text of a cao/workerCompleted notification. */
export function workerCompletedMessage(n: WorkerCompletedNotification): { text: string; ok: boolean } {
  const who = `${n.profile} (${n.terminalId})`;
  if (n.error) {
    return { text: `${who} failed: ${firstLine(n.error)}`, ok: false };
  }
  const answer = firstLine(n.output);
  return { text: answer ? `${who} finished: ${answer}` : `${who} finished (no answer text).`, ok: true };
}

/** The name of the read-only document showing an agent's output. */
export function outputDocumentPath(agent: Pick<AgentInfo, "terminalId" | "profile">, mode: "last" | "full"): string {
  const safe = agent.profile.replace(/[^A-Za-z0-9_.-]/g, "_");
  return `/${safe}-${agent.terminalId}${mode === "full" ? "-full" : ""}.md`;
}

// ---------------------------------------------------------------- sidecar start-up

/**
 * The tmux server the sidecar runs its agents on: the setting, else one per workspace:
 * "cao-" + the first 12 hex digits of sha256(absolute workspace root path, UTF-8).
 */
export function tmuxSocketName(setting: string | undefined, workspaceRoot: string): string {
  const chosen = (setting ?? "").trim();
  if (chosen) return chosen;
  return "cao-" + createHash("sha256").update(workspaceRoot, "utf8").digest("hex").slice(0, 12);
}

/** Expand `~` and `${workspaceFolder}` in a path setting. */
export function expandPath(value: string, home: string, workspaceRoot: string | undefined): string {
  let out = value.trim();
  if (workspaceRoot) out = out.split("${workspaceFolder}").join(workspaceRoot);
  if (out === "~") return home;
  if (out.startsWith("~/")) return path.join(home, out.slice(2));
  return out;
}

export interface ResolveSidecarOptions {
  /** cao.sidecarPath as in force (see effectiveSidecarSetting: only the user's when untrusted) */
  setting?: string;
  workspaceRoots: string[];
  /** vscode.workspace.isTrusted; untrusted: nothing inside the workspace folders is run */
  workspaceTrusted?: boolean;
  envPath?: string;
  home: string;
  /** true if the file exists and is executable (injected, so tests need no files) */
  isExecutable: (file: string) => boolean;
}

export interface ResolvedSidecar {
  path: string | undefined;
  /** where it was found, or why not: shown to the user */
  how: string;
  tried: string[];
}

const EXECUTABLE = "cao-sidecar";

/** `file` is one of `roots` or inside one. */
function insideAny(file: string, roots: string[]): boolean {
  return roots.some((root) => {
    const rel = path.relative(root, file);
    return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
  });
}

/**
 * Where the `cao-sidecar` executable is: the setting (a path, or a bare name looked up on PATH);
 * else the workspace folders' virtual environments (.venv/bin, venv/bin, env/bin); else PATH.
 * In an untrusted workspace nothing inside its folders runs: no virtual environment of its own,
 * no setting or PATH entry that points into it.
 */
export function resolveSidecarPath(opts: ResolveSidecarOptions): ResolvedSidecar {
  const tried: string[] = [];
  const trusted = opts.workspaceTrusted === true;
  const untrustedFile = (file: string): boolean => !trusted && insideAny(file, opts.workspaceRoots);
  const onPath = (name: string): string | undefined => {
    for (const dir of (opts.envPath ?? "").split(path.delimiter)) {
      // A relative PATH entry would be looked up in the workspace the sidecar starts in.
      if (!dir || !path.isAbsolute(dir) || untrustedFile(dir)) continue;
      const candidate = path.join(dir, name);
      tried.push(candidate);
      if (opts.isExecutable(candidate)) return candidate;
    }
    return undefined;
  };
  const setting = (opts.setting ?? "").trim();
  if (setting) {
    const expanded = expandPath(setting, opts.home, opts.workspaceRoots[0]);
    if (!expanded.includes("/")) {
      const found = onPath(expanded);
      return found
        ? { path: found, how: `cao.sidecarPath (${setting}) on PATH`, tried }
        : { path: undefined, how: `cao.sidecarPath '${setting}' is not on PATH`, tried };
    }
    const absolute = path.isAbsolute(expanded) ? expanded : path.resolve(opts.workspaceRoots[0] ?? opts.home, expanded);
    tried.push(absolute);
    if (untrustedFile(absolute)) {
      return { path: undefined, how: `cao.sidecarPath '${setting}' points into the workspace, which is not trusted`, tried };
    }
    return opts.isExecutable(absolute)
      ? { path: absolute, how: "cao.sidecarPath", tried }
      : { path: undefined, how: `cao.sidecarPath '${setting}' is not an executable file`, tried };
  }
  for (const root of trusted ? opts.workspaceRoots : []) {
    for (const venv of [".venv", "venv", "env"]) {
      const candidate = path.join(root, venv, "bin", EXECUTABLE);
      tried.push(candidate);
      if (opts.isExecutable(candidate)) return { path: candidate, how: `the workspace's ${venv}`, tried };
    }
  }
  const found = onPath(EXECUTABLE);
  if (found) return { path: found, how: "PATH", tried };
  return {
    path: undefined,
    how: trusted
      ? "cao-sidecar was not found in the workspace's .venv/venv nor on PATH; install it (pip install cao-sidecar) or set cao.sidecarPath"
      : "cao-sidecar was not found on PATH (the workspace's own .venv/venv is not used: the workspace is not trusted); install it (pip install cao-sidecar) or set cao.sidecarPath in your user settings",
    tried,
  };
}

/** The arguments the sidecar is started with (vscode-languageclient appends --stdio). */
export function sidecarArgs(socket: string): string[] {
  return ["--tmux-socket", socket];
}

/** Params for spawn/handoff/assign with the user's default provider, when set. */
export function withProvider<T extends object>(params: T, defaultProvider: string | undefined): T & { provider?: string } {
  const provider = (defaultProvider ?? "").trim();
  return provider ? { ...params, provider } : { ...params };
}

/** The terminal that shows an agent: its attachCommand, or a plain tmux attach as a fallback. */
export function attachArgv(agent: AgentInfo, socket: string): string[] {
  if (agent.attachCommand && agent.attachCommand.length > 0) return agent.attachCommand;
  return ["tmux", "-L", socket, "attach-session", "-t", agent.session];
}

/** A JSON-RPC error's message for people: the message, and the agent's last screen lines if any. */
export function errorText(err: unknown): string {
  if (err && typeof err === "object") {
    const e = err as { message?: unknown; data?: unknown };
    const message = typeof e.message === "string" ? e.message : String(err);
    const data = e.data as { screenTail?: unknown } | undefined;
    const tail = data && typeof data.screenTail === "string" ? firstLine(data.screenTail.split("\n").reverse().join("\n")) : "";
    return tail ? `${message} (screen: ${tail})` : message;
  }
  return String(err);
}

/** The warning shown when an agent stalls (working, but no output or events for the stall time). */
export function stalledMessage(agent: AgentInfo): string {
  return `CAO: ${agentLabel(agent)} (${agent.terminalId}) is stalled: no output or events for a while. It resumes by itself when its CLI moves again.`;
}

// VS Code face of cao-sidecar: starts the sidecar for the workspace (vscode-languageclient, stdio),
// shows its agents in the status bar and a tree view, and turns the cao/* methods into commands.
// The logic that does not need VS Code lives in ./logic (unit-tested without an editor).

import * as fs from "node:fs";
import * as os from "node:os";
import * as vscode from "vscode";
import {
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  State,
  TransportKind,
  WorkDoneProgress,
} from "vscode-languageclient/node";

import {
  type AgentInfo,
  type AgentStatusNotification,
  AgentStore,
  type ConnectionState,
  type ProfileInfo,
  type TrustInfo,
  type WorkerCompletedNotification,
  type WorktreeInfo,
  agentLabel,
  agentPickItems,
  agentTreeItem,
  attachArgv,
  countAgents,
  effectiveSidecarSetting,
  errorText,
  firstLine,
  hasMethod,
  outputDocumentPath,
  profilePickItems,
  resolveSidecarPath,
  sidecarArgs,
  statusBarView,
  stalledMessage,
  tmuxSocketName,
  trustChangeMessage,
  trustChanges,
  withProvider,
  withWorktree,
  workerCompletedMessage,
} from "./logic";
import { BASE_SCHEME, BaseVersions, Worktrees } from "./worktrees";
import type { WorkflowRunInfo } from "./workflowLogic";
import { RUNS_SCHEME, Workflows } from "./workflows";

const OUTPUT_SCHEME = "cao-output";
const REQUEST_CANCELLED = -32800;

let cao: Cao | undefined;

export function activate(context: vscode.ExtensionContext): void {
  cao = new Cao(context);
  cao.start();
}

export async function deactivate(): Promise<void> {
  // shutdown + exit: the sidecar flushes its state; the agents keep running in tmux.
  await cao?.stopClient();
  cao = undefined;
}

/** Read-only documents showing agents' answers (`cao-output:/<profile>-<terminalId>.md`). */
class OutputDocuments implements vscode.TextDocumentContentProvider {
  private readonly texts = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.path) ?? "";
  }

  async show(agent: Pick<AgentInfo, "terminalId" | "profile">, mode: "last" | "full", text: string): Promise<void> {
    const uri = vscode.Uri.from({ scheme: OUTPUT_SCHEME, path: outputDocumentPath(agent, mode) });
    const known = this.texts.has(uri.path);
    this.texts.set(uri.path, text);
    if (known) this.changed.fire(uri);
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc, { preview: true, preserveFocus: false });
  }
}

class AgentTree implements vscode.TreeDataProvider<AgentInfo> {
  private readonly changed = new vscode.EventEmitter<AgentInfo | undefined>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(private readonly store: AgentStore) {}

  refresh(): void {
    this.changed.fire(undefined);
  }

  getTreeItem(agent: AgentInfo): vscode.TreeItem {
    const view = agentTreeItem(agent);
    const item = new vscode.TreeItem(view.label, vscode.TreeItemCollapsibleState.None);
    item.id = view.id;
    item.description = view.description;
    item.tooltip = view.tooltip;
    item.contextValue = view.contextValue;
    item.iconPath = new vscode.ThemeIcon(view.icon.id, view.icon.color ? new vscode.ThemeColor(view.icon.color) : undefined);
    // A click answers an agent that asks, else shows its last answer.
    item.command =
      agent.status === "waiting_user_answer"
        ? { command: "cao.answer", title: "Answer", arguments: [agent] }
        : { command: "cao.showOutput", title: "Show Last Answer", arguments: [agent] };
    return item;
  }

  getChildren(element?: AgentInfo): AgentInfo[] {
    return element ? [] : this.store.list().filter((a) => a.status !== "exited");
  }
}

class Cao {
  private client: LanguageClient | undefined;
  private state: ConnectionState = "starting";
  private socket = "";
  private readonly store = new AgentStore();
  private readonly log: vscode.LogOutputChannel;
  private readonly statusItem: vscode.StatusBarItem;
  private readonly tree: AgentTree;
  private readonly treeView: vscode.TreeView<AgentInfo>;
  private readonly outputs = new OutputDocuments();
  private readonly worktrees: Worktrees;
  private readonly workflows: Workflows;
  private readonly terminals = new Map<string, vscode.Terminal>();
  private refreshTimer: NodeJS.Timeout | undefined;
  private handoffCounter = 0;
  /** the executable the running sidecar was started from */
  private sidecarPath: string | undefined;
  /** the sidecar's view of its folders' trust (cao/getTrust, cao/trustChanged) */
  private trust: TrustInfo[] = [];
  private readonly activatedAt = Date.now();
  private readyLogged = false;

  constructor(private readonly context: vscode.ExtensionContext) {
    this.log = vscode.window.createOutputChannel("CAO Sidecar", { log: true });
    this.statusItem = vscode.window.createStatusBarItem("cao.status", vscode.StatusBarAlignment.Left, 50);
    this.statusItem.name = "CAO Agents";
    this.statusItem.command = "cao.showAgents";
    this.tree = new AgentTree(this.store);
    this.worktrees = new Worktrees((method, params) => this.request(method, params), this.log);
    this.workflows = new Workflows((method, params) => this.request(method, params), this.log);
    this.treeView = vscode.window.createTreeView("cao.agents", { treeDataProvider: this.tree });
    context.subscriptions.push(
      this.log,
      this.statusItem,
      this.treeView,
      vscode.workspace.registerTextDocumentContentProvider(OUTPUT_SCHEME, this.outputs),
      vscode.workspace.registerTextDocumentContentProvider(BASE_SCHEME, new BaseVersions()),
      vscode.workspace.registerTextDocumentContentProvider(RUNS_SCHEME, this.workflows),
      vscode.window.onDidCloseTerminal((t) => {
        for (const [id, terminal] of this.terminals) if (terminal === t) this.terminals.delete(id);
      }),
      vscode.workspace.onDidChangeConfiguration((e) => this.onConfigurationChanged(e)),
      vscode.workspace.onDidChangeWorkspaceFolders(() => {
        if (!this.client && vscode.workspace.workspaceFolders?.length) void this.startClient();
      }),
      vscode.workspace.onDidGrantWorkspaceTrust(() => void this.onTrustGranted()),
    );
    const commands: Record<string, (...args: any[]) => unknown> = {
      "cao.spawn": () => this.spawn(),
      "cao.handoff": (a?: AgentInfo) => this.handoff(a),
      "cao.assign": () => this.assign(),
      "cao.sendMessage": (a?: AgentInfo) => this.sendMessage(a),
      "cao.answer": (a?: AgentInfo) => this.answer(a),
      "cao.openTerminal": (a?: AgentInfo) => this.openTerminal(a),
      "cao.showOutput": (a?: AgentInfo) => this.showOutput(a, "last"),
      "cao.showScrollback": (a?: AgentInfo) => this.showOutput(a, "full"),
      "cao.terminate": (a?: AgentInfo) => this.terminate(a),
      "cao.showAgents": () => this.showAgents(),
      "cao.refresh": () => this.refresh(),
      "cao.restartSidecar": () => this.restartSidecar(),
      "cao.showLog": () => this.log.show(),
      "cao.showWorktrees": () => this.worktrees.showAll(),
      "cao.showWorktreeChanges": () => this.worktrees.showChanges(),
      "cao.mergeWorktree": () => this.worktrees.merge(),
      "cao.discardWorktree": () => this.worktrees.discard(),
      "cao.runWorkflow": () => this.workflows.run(),
      "cao.resumeWorkflow": () => this.workflows.resume(),
      "cao.showWorkflowRuns": () => this.workflows.showRuns(),
    };
    for (const [id, fn] of Object.entries(commands)) {
      context.subscriptions.push(
        vscode.commands.registerCommand(id, async (...args: any[]) => {
          try {
            await fn(...args);
          } catch (err) {
            this.log.error(`${id}: ${errorText(err)}`);
            void vscode.window.showErrorMessage(`CAO: ${errorText(err)}`);
          }
        }),
      );
    }
  }

  start(): void {
    this.render();
    this.statusItem.show();
    this.log.info(`status bar shown ${Date.now() - this.activatedAt} ms after activation`);
    void this.startClient();
  }

  // ------------------------------------------------------------ the sidecar process

  private workspaceRoots(): string[] {
    return (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === "file").map((f) => f.uri.fsPath);
  }

  private async startClient(): Promise<void> {
    const roots = this.workspaceRoots();
    if (roots.length === 0) {
      this.setState("noFolder");
      return;
    }
    const config = vscode.workspace.getConfiguration("cao");
    this.socket = tmuxSocketName(config.get<string>("tmuxSocket"), roots[0]);
    const trusted = vscode.workspace.isTrusted;
    const resolved = this.resolveSidecar(roots, trusted);
    if (!resolved.path) {
      this.setState("stopped");
      this.log.error(`${resolved.how}; tried: ${resolved.tried.join(", ")}`);
      const choice = await vscode.window.showErrorMessage(`CAO: ${resolved.how}.`, "Open Settings");
      if (choice === "Open Settings") await vscode.commands.executeCommand("workbench.action.openSettings", "cao.sidecarPath");
      return;
    }
    this.log.info(`starting ${resolved.path} (${resolved.how}) with tmux socket ${this.socket}; workspace trusted: ${trusted}`);
    this.sidecarPath = resolved.path;
    this.trust = [];

    const serverOptions: ServerOptions = {
      command: resolved.path,
      args: sidecarArgs(this.socket),
      transport: TransportKind.stdio,
      options: { cwd: roots[0], env: { ...process.env } },
    };
    const clientOptions: LanguageClientOptions = {
      // Profile and flow files: the sidecar watches them itself and pushes diagnostics for them
      // (Problems panel); selecting them also lets the editor tell it about open documents.
      documentSelector: [
        { scheme: "file", pattern: "**/.cao/agents/**/*.md" },
        { scheme: "file", pattern: "**/.cao/flows/**/*.md" },
        { scheme: "file", pattern: "**/cao-sidecar/agents/*.md" },
        { scheme: "file", pattern: "**/cao-sidecar/flows/*.md" },
      ],
      diagnosticCollectionName: "cao-sidecar",
      outputChannel: this.log,
      // The sidecar asks the user (window/showMessageRequest) when an agent waits for an answer.
      // VS Code keeps the workspace's trust: the sidecar follows it instead of its own store.
      initializationOptions: { askUser: true, workspaceTrusted: trusted },
    };
    const client = new LanguageClient("cao-sidecar", "CAO Sidecar", serverOptions, clientOptions);
    this.client = client;
    client.onNotification("cao/agentStatus", (n: AgentStatusNotification) => this.onAgentStatus(n));
    client.onNotification("cao/workerCompleted", (n: WorkerCompletedNotification) => this.onWorkerCompleted(n));
    // "Open terminal" in an agent's question (window/showMessageRequest) comes back as this.
    client.onNotification("cao/openTerminal", (n: { terminalId: string; attachCommand?: string[] }) => {
      this.openTerminalFor(n.terminalId, n.attachCommand).catch((err) => {
        void vscode.window.showErrorMessage(`CAO: ${errorText(err)}`);
      });
    });
    client.onNotification("cao/trustChanged", (n: { folders?: TrustInfo[] }) => this.onTrustChanged(n.folders ?? []));
    client.onNotification("cao/workflowRun", (n: WorkflowRunInfo) => this.workflows.onRun(n));
    this.context.subscriptions.push(
      client.onDidChangeState((e) => {
        if (this.client !== client) return; // an old client going down after a restart
        if (e.newState === State.Running) {
          // Also after a crash and restart: the new sidecar adopted the agents left in tmux.
          this.setState("running");
          void this.refresh();
          void this.refreshTrust();
        } else if (e.newState === State.Starting) {
          this.setState("starting");
        } else {
          this.setState("stopped");
        }
      }),
    );
    this.setState("starting");
    try {
      await client.start();
    } catch (err) {
      this.setState("stopped");
      this.log.error(`the sidecar did not start: ${errorText(err)}`);
      void vscode.window.showErrorMessage(`CAO: the sidecar did not start: ${errorText(err)}`, "Show Log").then((c) => {
        if (c) this.log.show();
      });
    }
  }

  /** The sidecar executable for these roots; in an untrusted workspace nothing of the workspace's. */
  private resolveSidecar(roots: string[], trusted: boolean): ReturnType<typeof resolveSidecarPath> {
    const layers = vscode.workspace.getConfiguration("cao").inspect<string>("sidecarPath");
    const { setting, ignored } = effectiveSidecarSetting(
      { user: layers?.globalValue, workspace: layers?.workspaceFolderValue ?? layers?.workspaceValue },
      trusted,
    );
    if (ignored) this.log.warn(ignored);
    return resolveSidecarPath({
      setting,
      workspaceRoots: roots,
      workspaceTrusted: trusted,
      envPath: process.env.PATH,
      home: os.homedir(),
      isExecutable: (file) => {
        try {
          fs.accessSync(file, fs.constants.X_OK);
          return fs.statSync(file).isFile();
        } catch {
          return false;
        }
      },
    });
  }

  /** The user trusted the workspace: its own sidecar (if any) now runs, else the sidecar is told. */
  private async onTrustGranted(): Promise<void> {
    const roots = this.workspaceRoots();
    if (roots.length === 0) return;
    const resolved = this.resolveSidecar(roots, true);
    // Not running (yet): a new sidecar, started trusted. Another program now: that one.
    if (!this.client || this.state !== "running" || (resolved.path && resolved.path !== this.sidecarPath)) {
      this.log.info(`workspace trusted: starting ${resolved.path ?? "the sidecar"} (${resolved.how})`);
      await this.restartSidecar();
      return;
    }
    if (!hasMethod(this.client.initializeResult?.capabilities, "cao/setTrust")) {
      this.log.warn("workspace trusted, but this sidecar has no cao/setTrust: CAO: Restart Sidecar to apply it");
      return;
    }
    try {
      const { folders } = await this.request<{ folders: TrustInfo[] }>("cao/setTrust", { trusted: true, persist: false });
      this.log.info(`cao/setTrust: ${folders.map((f) => `${f.path} ${f.trusted ? "trusted" : "untrusted"}`).join(", ")}`);
      this.onTrustChanged(folders ?? []);
    } catch (err) {
      this.log.error(`cao/setTrust: ${errorText(err)}`);
    }
  }

  private async refreshTrust(): Promise<void> {
    if (!this.client || !hasMethod(this.client.initializeResult?.capabilities, "cao/getTrust")) return;
    try {
      const { folders } = await this.request<{ folders: TrustInfo[] }>("cao/getTrust", {});
      this.trust = folders ?? [];
      this.render();
    } catch (err) {
      this.log.warn(`cao/getTrust: ${errorText(err)}`);
    }
  }

  private onTrustChanged(folders: TrustInfo[]): void {
    const changed = trustChanges(this.trust, folders);
    this.trust = folders;
    this.render();
    for (const folder of changed) {
      const text = trustChangeMessage(folder);
      this.log.info(text);
      void (folder.trusted ? vscode.window.showInformationMessage(text) : vscode.window.showWarningMessage(text));
    }
  }

  async stopClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    try {
      await client.dispose(5000);
    } catch (err) {
      this.log.warn(`stopping the sidecar: ${errorText(err)}`);
    }
  }

  private async restartSidecar(): Promise<void> {
    await this.stopClient();
    this.store.reset([]);
    await this.startClient();
  }

  private onConfigurationChanged(e: vscode.ConfigurationChangeEvent): void {
    if (e.affectsConfiguration("cao.sidecarPath") || e.affectsConfiguration("cao.tmuxSocket")) {
      void vscode.window
        .showInformationMessage("CAO: restart the sidecar to use the new setting?", "Restart")
        .then((c) => c && this.restartSidecar());
    }
  }

  private running(): LanguageClient {
    if (!this.client || this.state !== "running") {
      throw new Error(
        this.state === "noFolder" ? "open a folder first: the sidecar runs per workspace" : "the sidecar is not running (CAO: Restart Sidecar)",
      );
    }
    return this.client;
  }

  private request<R>(method: string, params: object): Promise<R> {
    // Never pass an undefined token: vscode-jsonrpc would send the params as an array.
    return this.running().sendRequest<R>(method, params);
  }

  // ------------------------------------------------------------ state and rendering

  private setState(state: ConnectionState): void {
    this.state = state;
    this.render();
  }

  private render(): void {
    const agents = this.store.list();
    const view = statusBarView(agents, this.state, this.trust);
    this.statusItem.text = view.text;
    this.statusItem.tooltip = view.tooltip;
    this.statusItem.command = this.state === "stopped" ? "cao.restartSidecar" : "cao.showAgents";
    this.statusItem.backgroundColor = view.background ? new vscode.ThemeColor(view.background) : undefined;
    const waiting = countAgents(agents).waiting;
    this.treeView.badge = waiting > 0 ? { value: waiting, tooltip: `${waiting} agent(s) asking you` } : undefined;
    this.tree.refresh();
  }

  private async refresh(): Promise<void> {
    if (!this.client || this.state !== "running") return;
    try {
      const { agents } = await this.request<{ agents: AgentInfo[] }>("cao/listAgents", {});
      this.store.reset(agents ?? []);
      this.render();
      if (!this.readyLogged) {
        this.readyLogged = true;
        this.log.info(
          `sidecar ready, ${this.store.list().length} agent(s) listed ${Date.now() - this.activatedAt} ms after activation`,
        );
      }
    } catch (err) {
      this.log.warn(`cao/listAgents: ${errorText(err)}`);
    }
  }

  private scheduleRefresh(): void {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      void this.refresh();
    }, 100);
  }

  private onAgentStatus(n: AgentStatusNotification): void {
    const agent = this.store.applyStatus(n);
    if (n.status === "stalled") {
      this.log.warn(`cao/agentStatus ${n.terminalId}: stalled`);
      void vscode.window.showWarningMessage(stalledMessage(agent));
    }
    if (n.status === "exited") this.store.remove(n.terminalId);
    if (this.store.needsRefresh) this.scheduleRefresh();
    this.render();
  }

  private async onWorkerCompleted(n: WorkerCompletedNotification): Promise<void> {
    const message = workerCompletedMessage(n);
    this.log.info(`cao/workerCompleted ${n.terminalId} ${n.status}: ${message.text}`);
    const openAnswer = () => this.outputs.show({ terminalId: n.terminalId, profile: n.profile }, "last", n.output || n.error || "");
    if (n.worktree) return this.worktrees.offer(n.worktree, openAnswer);
    const show = message.ok ? vscode.window.showInformationMessage : vscode.window.showWarningMessage;
    const choice = await show(message.text, "Open Answer", "Open Terminal");
    if (choice === "Open Answer") {
      await this.outputs.show({ terminalId: n.terminalId, profile: n.profile }, "last", n.output || n.error || "");
    } else if (choice === "Open Terminal") {
      await this.openTerminalFor(n.terminalId);
    }
  }

  // ------------------------------------------------------------ picking

  private async pickAgent(title: string, filter: (a: AgentInfo) => boolean = (a) => a.status !== "exited"): Promise<AgentInfo | undefined> {
    const agents = this.store.list().filter(filter);
    if (agents.length === 0) {
      void vscode.window.showInformationMessage(`CAO: no agent to ${title.toLowerCase()}.`);
      return undefined;
    }
    if (agents.length === 1) return agents[0];
    const picked = await vscode.window.showQuickPick(agentPickItems(agents), { title, placeHolder: "Agent", matchOnDescription: true });
    return picked ? this.store.get(picked.terminalId) : undefined;
  }

  private async pickProfile(title: string): Promise<string | undefined> {
    const { profiles } = await this.request<{ profiles: ProfileInfo[] }>("cao/listProfiles", {});
    const picked = await vscode.window.showQuickPick(profilePickItems(profiles, this.defaultProvider()), {
      title,
      placeHolder: "Profile",
      matchOnDescription: true,
      matchOnDetail: true,
    });
    return picked?.profile;
  }

  /** Params of a new worker with the user's settings: its provider, whether it gets a worktree. */
  private newWorker<T extends object>(params: T): T & { provider?: string; worktree?: boolean } {
    const setting = vscode.workspace.getConfiguration("cao").get<string>("workerWorktrees");
    return withWorktree(withProvider(params, this.defaultProvider()), setting);
  }

  private defaultProvider(): string | undefined {
    return vscode.workspace.getConfiguration("cao").get<string>("defaultProvider") || undefined;
  }

  private async askText(title: string, prompt: string, placeHolder: string): Promise<string | undefined> {
    const text = await vscode.window.showInputBox({ title, prompt, placeHolder, ignoreFocusOut: true });
    return text && text.trim() ? text : undefined;
  }

  // ------------------------------------------------------------ commands

  private async spawn(): Promise<void> {
    this.running();
    const profile = await this.pickProfile("CAO: spawn an agent");
    if (!profile) return;
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: `Starting ${profile}…` },
      () => this.request<{ terminalId: string; profile: string; provider: string }>("cao/spawn", this.newWorker({ profile })),
    );
    this.log.info(`spawned ${result.profile} (${result.terminalId}) on ${result.provider}`);
    vscode.window.setStatusBarMessage(`$(check) ${result.profile} (${result.terminalId}) is ready`, 5000);
    await this.refresh();
  }

  private async handoff(agent?: AgentInfo): Promise<void> {
    this.running();
    let target: { terminalId: string } | { profile: string };
    let label: string;
    if (agent) {
      target = { terminalId: agent.terminalId };
      label = `${agentLabel(agent)} (${agent.terminalId})`;
    } else {
      const { profiles } = await this.request<{ profiles: ProfileInfo[] }>("cao/listProfiles", {});
      const live = this.store.list().filter((a) => a.status !== "exited");
      type Item = vscode.QuickPickItem & { terminalId?: string; profile?: string };
      const items: Item[] = [
        ...(live.length ? [{ label: "Running agents", kind: vscode.QuickPickItemKind.Separator } as Item] : []),
        ...agentPickItems(live),
        { label: "New worker from a profile (torn down afterwards)", kind: vscode.QuickPickItemKind.Separator },
        ...profilePickItems(profiles, this.defaultProvider()),
      ];
      const picked = await vscode.window.showQuickPick(items, {
        title: "CAO: hand off a task to…",
        placeHolder: "Agent or profile",
        matchOnDescription: true,
        matchOnDetail: true,
      });
      if (!picked) return;
      if (picked.terminalId) {
        target = { terminalId: picked.terminalId };
        label = `${picked.label} (${picked.terminalId})`;
      } else {
        target = { profile: picked.profile! };
        label = picked.profile!;
      }
    }
    const message = await this.askText(`CAO: hand off to ${label}`, "The task; you get the answer when the agent is done", "e.g. Fix the failing test in tests/test_cart.py");
    if (!message) return;
    const token = `cao-handoff-${++this.handoffCounter}-${Date.now()}`;
    const params =
      "profile" in target
        ? { ...this.newWorker({ profile: target.profile, message }), workDoneToken: token }
        : { terminalId: target.terminalId, message, workDoneToken: token };
    const client = this.running();
    let result: { terminalId: string; status: string; output: string; worktree?: WorktreeInfo | null } | undefined;
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Hand off to ${label}`, cancellable: true },
      async (progress, cancel) => {
        const sub = client.onProgress(WorkDoneProgress.type, token, (value) => {
          if (value.kind !== "end" && value.message) progress.report({ message: value.message });
        });
        try {
          result = await client.sendRequest<typeof result>("cao/handoff", params, cancel);
        } catch (err) {
          if (cancel.isCancellationRequested || (err as { code?: number })?.code === REQUEST_CANCELLED) {
            vscode.window.setStatusBarMessage(`Hand off to ${label} cancelled`, 5000);
            return;
          }
          throw err;
        } finally {
          sub.dispose();
        }
      },
    );
    if (!result) return;
    this.log.info(`handoff to ${label} answered by ${result.terminalId}: ${firstLine(result.output)}`);
    const profile = "profile" in target ? target.profile : this.store.get(target.terminalId)?.profile ?? "agent";
    await this.outputs.show({ terminalId: result.terminalId, profile }, "last", result.output);
    const worktree = result.worktree;
    if (worktree) await this.worktrees.offer(worktree, () => undefined);
  }

  private async assign(): Promise<void> {
    this.running();
    const profile = await this.pickProfile("CAO: assign a task in the background to a new…");
    if (!profile) return;
    const message = await this.askText(`CAO: assign to ${profile}`, "The task; you are notified when the worker is done", "e.g. Add tests for cart.total()");
    if (!message) return;
    const result = await this.request<{ terminalId: string }>("cao/assign", this.newWorker({ profile, message }));
    this.log.info(`assigned to ${profile} (${result.terminalId})`);
    vscode.window.setStatusBarMessage(`$(run-all) Assigned to ${profile} (${result.terminalId})`, 5000);
    this.scheduleRefresh();
  }

  private async sendMessage(agent?: AgentInfo): Promise<void> {
    this.running();
    agent ??= await this.pickAgent("Send a message");
    if (!agent) return;
    const label = `${agentLabel(agent)} (${agent.terminalId})`;
    const message = await this.askText(`CAO: message to ${label}`, "Delivered when the agent is ready for input", "Message");
    if (!message) return;
    const result = await this.request<{ messageId: string; state: string }>("cao/sendMessage", { terminalId: agent.terminalId, message });
    vscode.window.setStatusBarMessage(`$(comment) Message to ${label} ${result.state}`, 5000);
  }

  private async answer(agent?: AgentInfo): Promise<void> {
    this.running();
    agent ??= await this.pickAgent("Answer", (a) => a.status === "waiting_user_answer");
    if (!agent) return;
    agent = this.store.get(agent.terminalId) ?? agent;
    if (agent.status !== "waiting_user_answer") {
      void vscode.window.showInformationMessage(`CAO: ${agentLabel(agent)} is not waiting for an answer.`);
      return;
    }
    const prompt = agent.prompt;
    const title = `${agentLabel(agent)} (${agent.terminalId}) asks: ${prompt?.text ?? "(open its terminal to see the question)"}`;
    let answer: string | undefined;
    if (prompt && prompt.choices.length > 0) {
      const items: vscode.QuickPickItem[] = [
        ...prompt.choices.map((c) => ({ label: c })),
        { label: "$(terminal) Open Terminal", description: "answer there" },
      ];
      const picked = await vscode.window.showQuickPick(items, { title, placeHolder: "Answer" });
      if (!picked) return;
      if (picked === items[items.length - 1]) return this.openTerminal(agent);
      answer = picked.label;
    } else {
      answer = await this.askText(title, "Your answer", "Answer");
    }
    if (!answer) return;
    await this.request("cao/answer", { terminalId: agent.terminalId, answer, promptId: prompt?.id });
    vscode.window.setStatusBarMessage(`$(check) Answered ${agentLabel(agent)}: ${answer}`, 5000);
  }

  private async openTerminal(agent?: AgentInfo): Promise<void> {
    agent ??= await this.pickAgent("Open the terminal of");
    if (!agent) return;
    await this.openTerminalFor(agent.terminalId);
  }

  private async openTerminalFor(terminalId: string, attachCommand?: string[]): Promise<void> {
    const existing = this.terminals.get(terminalId);
    if (existing && existing.exitStatus === undefined) {
      existing.show();
      return;
    }
    let agent = this.store.get(terminalId);
    if (!attachCommand?.length && !agent?.attachCommand?.length) {
      await this.refresh();
      agent = this.store.get(terminalId);
    }
    if (!agent && !attachCommand?.length) throw new Error(`no agent ${terminalId}`);
    const argv = attachCommand?.length ? attachCommand : attachArgv(agent!, this.socket);
    const name = agent ? `${agentLabel(agent)} ${terminalId}` : terminalId;
    const terminal = vscode.window.createTerminal({
      name: `CAO: ${name}`,
      shellPath: argv[0],
      shellArgs: argv.slice(1),
      cwd: agent?.workingDirectory ?? undefined,
      iconPath: new vscode.ThemeIcon("hubot"),
    });
    this.terminals.set(terminalId, terminal);
    terminal.show();
  }

  private async showOutput(agent: AgentInfo | undefined, mode: "last" | "full"): Promise<void> {
    this.running();
    agent ??= await this.pickAgent(mode === "last" ? "Show the last answer of" : "Show the output of");
    if (!agent) return;
    const { output } = await this.request<{ output: string }>("cao/getOutput", { terminalId: agent.terminalId, mode });
    if (!output && mode === "last") {
      void vscode.window.showInformationMessage(`CAO: ${agentLabel(agent)} (${agent.terminalId}) has not answered yet.`);
      return;
    }
    await this.outputs.show(agent, mode, output);
  }

  private async terminate(agent?: AgentInfo): Promise<void> {
    this.running();
    agent ??= await this.pickAgent("Terminate");
    if (!agent) return;
    const label = `${agentLabel(agent)} (${agent.terminalId})`;
    const choice = await vscode.window.showWarningMessage(
      `Terminate ${label}?`,
      { modal: true, detail: "Its CLI is asked to exit and its tmux window is closed." },
      "Terminate",
    );
    if (choice !== "Terminate") return;
    await this.request("cao/terminate", { terminalId: agent.terminalId });
    this.terminals.get(agent.terminalId)?.dispose();
    this.store.remove(agent.terminalId);
    this.render();
    vscode.window.setStatusBarMessage(`$(trash) Terminated ${label}`, 5000);
  }

  private async showAgents(): Promise<void> {
    type Item = vscode.QuickPickItem & { run: () => unknown };
    const agents = this.store.list().filter((a) => a.status !== "exited");
    const items: Item[] = [
      ...agentPickItems(agents).map((item) => ({ ...item, run: () => this.agentActions(this.store.get(item.terminalId)!) })),
      { label: "", kind: vscode.QuickPickItemKind.Separator, run: () => undefined },
      { label: "$(add) Spawn Agent from Profile…", run: () => this.spawn() },
      { label: "$(run) Hand Off Task…", run: () => this.handoff() },
      { label: "$(run-all) Assign Task in Background…", run: () => this.assign() },
      { label: "$(git-branch) Workers' Worktrees (Changes, Merge, Discard)…", run: () => this.worktrees.showAll() },
      { label: "$(list-tree) Show the Agents View", run: () => vscode.commands.executeCommand("cao.agents.focus") },
    ];
    const picked = await vscode.window.showQuickPick(items, {
      title: `CAO: ${agents.length} agent(s) on tmux socket ${this.socket}`,
      placeHolder: "Agent or action",
      matchOnDescription: true,
    });
    await picked?.run();
  }

  private async agentActions(agent: AgentInfo): Promise<void> {
    type Item = vscode.QuickPickItem & { run: () => unknown };
    const items: Item[] = [
      ...(agent.status === "waiting_user_answer" ? [{ label: "$(question) Answer…", run: () => this.answer(agent) }] : []),
      { label: "$(terminal) Open Terminal", run: () => this.openTerminal(agent) },
      { label: "$(output) Show Last Answer", run: () => this.showOutput(agent, "last") },
      { label: "$(run) Hand Off Task…", run: () => this.handoff(agent) },
      { label: "$(comment) Send Message…", run: () => this.sendMessage(agent) },
      { label: "$(trash) Terminate", run: () => this.terminate(agent) },
    ];
    const picked = await vscode.window.showQuickPick(items, { title: `${agentLabel(agent)} (${agent.terminalId})` });
    await picked?.run();
  }
}

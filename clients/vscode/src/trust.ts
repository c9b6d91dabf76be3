// Workspace trust on the extension's side, free of `vscode` imports (unit-tested): which
// cao.sidecarPath value counts, what the sidecar says about its folders' trust (TrustInfo), and
// how that shows. VS Code keeps the trust itself (Workspace Trust); the sidecar follows it through
// initializationOptions.workspaceTrusted and cao/setTrust {persist: false}.

/** One workspace folder's trust as the sidecar reports it (cao/getTrust, cao/trustChanged). */
export interface TrustInfo {
  path: string;
  trusted: boolean;
  source: "store" | "editor" | "none";
  /** the folder has a .cao/ */
  hasConfig: boolean;
  /** one readable line per thing held back while the folder is not trusted */
  heldBack: string[];
}

/** What `inspect("cao.sidecarPath")` says, by where the value was set. */
export interface SettingLayers {
  /** user (and remote machine) settings: the user's own, always in force */
  user?: string;
  /** workspace or folder settings: the workspace's, in force only once it is trusted */
  workspace?: string;
}

/**
 * The cao.sidecarPath to use: in a trusted workspace the usual precedence (folder, workspace,
 * user); in an untrusted one only the user's value, and a note when a workspace value is ignored.
 */
export function effectiveSidecarSetting(layers: SettingLayers, trusted: boolean): { setting?: string; ignored?: string } {
  const user = (layers.user ?? "").trim() || undefined;
  const workspace = (layers.workspace ?? "").trim() || undefined;
  if (trusted) return { setting: workspace ?? user };
  return {
    setting: user,
    ignored: workspace ? `cao.sidecarPath '${workspace}' from the workspace settings is not used: the workspace is not trusted` : undefined,
  };
}

/** The folders whose trust differs from what `before` said (new folders do not count). */
export function trustChanges(before: TrustInfo[], after: TrustInfo[]): TrustInfo[] {
  const known = new Map(before.map((f) => [f.path, f.trusted]));
  return after.filter((f) => known.has(f.path) && known.get(f.path) !== f.trusted);
}

/** The folders with a .cao/ that is held back (untrusted). */
export function heldBackFolders(folders: TrustInfo[]): TrustInfo[] {
  return folders.filter((f) => f.hasConfig && !f.trusted);
}

/** Status bar tooltip lines about trust (empty when nothing is held back). */
export function trustTooltipLines(folders: TrustInfo[]): string[] {
  const held = heldBackFolders(folders);
  if (held.length === 0) return [];
  const lines = ["", "Not trusted, so its .cao/ is not in force:"];
  for (const f of held) {
    lines.push(`${f.path}`);
    for (const what of f.heldBack.slice(0, 5)) lines.push(`  · ${what}`);
    if (f.heldBack.length > 5) lines.push(`  · and ${f.heldBack.length - 5} more`);
  }
  lines.push("Trust the workspace (Workspaces: Manage Workspace Trust) to use it.");
  return lines;
}

/** The message shown when a folder's trust changed. */
export function trustChangeMessage(f: TrustInfo): string {
  if (f.trusted) return `CAO: ${f.path} is now trusted: its .cao/ is in force.`;
  const held = f.heldBack.length ? ` Held back: ${f.heldBack.join("; ")}.` : "";
  return `CAO: ${f.path} is no longer trusted: its .cao/ is not in force.${held}`;
}

/** The sidecar's announced methods (capabilities.experimental.cao.methods) include `method`. */
export function hasMethod(capabilities: unknown, method: string): boolean {
  const methods = (capabilities as { experimental?: { cao?: { methods?: unknown } } } | undefined)?.experimental?.cao?.methods;
  return Array.isArray(methods) && methods.includes(method);
}

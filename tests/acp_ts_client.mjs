// Drives `cao-sidecar --acp` with the TypeScript ACP SDK (@agentclientprotocol/sdk), as Zed-like
// editors built on it do. Run by tests/test_acp_ts.py: node acp_ts_client.mjs SDK_DIR CWD CMD...
// Prints one JSON line with what it saw; exits non-zero on a failed check.
import { spawn } from "node:child_process";
import { Readable, Writable } from "node:stream";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [sdkDir, cwd, ...command] = process.argv.slice(2);
const acp = await import(pathToFileURL(path.join(sdkDir, "dist/v1/stable/acp.js")).href);
const { client, methods, ndJsonStream, PROTOCOL_VERSION } = acp;

const child = spawn(command[0], command.slice(1), { stdio: ["pipe", "pipe", "inherit"], cwd });
const stream = ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout));

const updates = [];
const permissions = [];
const app = client({ name: "cao-ts-test" })
  .onNotification(methods.client.session.update, (ctx) => { updates.push(ctx.params); })
  .onRequest(methods.client.session.requestPermission, (ctx) => {
    permissions.push(ctx.params);
    const yes = ctx.params.options.find((o) => o.name === "Yes");
    return { outcome: { outcome: "selected", optionId: yes ? yes.optionId : "missing" } };
  });

function check(ok, what) {
  if (!ok) { console.error(`check failed: ${what}`); console.log(JSON.stringify({ ok: false, what, updates, permissions })); process.exit(1); }
}
const text = (sid) => updates.filter((u) => u.sessionId === sid && u.update.sessionUpdate === "agent_message_chunk")
  .map((u) => u.update.content.text).join("");

const result = await app.connectWith(stream, async (ctx) => {
  const init = await ctx.request(methods.agent.initialize, { protocolVersion: PROTOCOL_VERSION, clientCapabilities: {} });
  check(init.agentInfo?.name === "cao-sidecar", "agent info");
  const { sessionId } = await ctx.request(methods.agent.session.new, { cwd, mcpServers: [] });

  const first = await ctx.request(methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: "echo hello" }] });
  check(first.stopReason === "end_turn" && text(sessionId) === "hello", `answer 'hello', got '${text(sessionId)}'`);

  await ctx.request(methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: "handoff mock_developer echo hi" }] });
  const tools = updates.filter((u) => u.sessionId === sessionId && u.update.sessionUpdate?.startsWith("tool_call"));
  check(tools.some((u) => u.update.sessionUpdate === "tool_call" && u.update.title.startsWith("mock_developer")), "worker tool call");
  check(tools.at(-1).update.status === "completed", "worker completed");

  const asked = await ctx.request(methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: "ask Proceed?" }] });
  check(asked.stopReason === "end_turn" && permissions.length === 1, "permission asked");
  check(text(sessionId).endsWith("answered: y"), "permission answer reached the agent");

  const turn = ctx.request(methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: "sleep 10 x" }] });
  await new Promise((r) => setTimeout(r, 800));
  await ctx.notify(methods.agent.session.cancel, { sessionId });
  const cancelled = await turn;
  check(cancelled.stopReason === "cancelled", `cancelled, got ${cancelled.stopReason}`);

  const agents = await ctx.request("_cao/listAgents", { sessionId });
  check(agents.agents.length === 1 && agents.agents[0].profile === "mock_supervisor", "listAgents");
  return { ok: true, updates: updates.length, permissions: permissions.length };
});
console.log(JSON.stringify(result));
child.stdin.end();
child.kill("SIGTERM");
process.exit(0);

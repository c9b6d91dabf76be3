"""What the `initialize` answer lists, as plain data: the forwarder (`cao-sidecar --stdio`) answers
`initialize` itself and must not import the wire types (cattrs) or the providers to do it.

Kept equal to `wire.COMMANDS`, `wire.METHODS`, `wire.NOTIFICATIONS` and the providers' names by
tests/test_forwarder_imports.py (it prints the new lists when they differ).
"""

COMMANDS = (
    "cao-sidecar.answer",
    "cao-sidecar.assign",
    "cao-sidecar.discardWorktree",
    "cao-sidecar.getOutput",
    "cao-sidecar.handoff",
    "cao-sidecar.listAgents",
    "cao-sidecar.listProfiles",
    "cao-sidecar.listWorktrees",
    "cao-sidecar.mergeWorktree",
    "cao-sidecar.sendMessage",
    "cao-sidecar.spawn",
    "cao-sidecar.terminate",
)
METHODS = (
    "cao/answer",
    "cao/assign",
    "cao/cancelWorkflow",
    "cao/discardWorktree",
    "cao/doctor",
    "cao/getLog",
    "cao/getOutput",
    "cao/getTrust",
    "cao/getWorkflowRun",
    "cao/handoff",
    "cao/installProfile",
    "cao/listAgents",
    "cao/listFlows",
    "cao/listProfiles",
    "cao/listWorkflowRuns",
    "cao/listWorkflows",
    "cao/listWorktrees",
    "cao/mergeWorktree",
    "cao/resumeWorkflow",
    "cao/runFlow",
    "cao/runWorkflow",
    "cao/sendMessage",
    "cao/setFlowEnabled",
    "cao/setTrust",
    "cao/shutdown",
    "cao/spawn",
    "cao/stats",
    "cao/terminate",
    "cao/workflowStep",
)
NOTIFICATIONS = (
    "cao/agentStatus",
    "cao/flowsChanged",
    "cao/openTerminal",
    "cao/profilesChanged",
    "cao/trustChanged",
    "cao/workerCompleted",
    "cao/workflowRun",
)
PROVIDERS = (
    "aider",
    "claude_code",
    "codex",
    "copilot",
    "cursor",
    "gemini_cli",
    "grok_cli",
    "kiro_cli",
    "mock",
    "opencode",
    "q_cli",
    "qwen_code",
)

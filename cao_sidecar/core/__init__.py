"""Orchestration core: agents, turns, handoff/assign/messages. Shared by every face."""

"""Flows: scheduled runs of an agent on a task, defined as Markdown files (see docs/flows.md)."""

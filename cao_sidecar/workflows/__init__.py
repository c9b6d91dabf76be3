"""Workflows: multi-step team runs written as scripts, journaled so they survive a crash
(docs/workflows.md)."""

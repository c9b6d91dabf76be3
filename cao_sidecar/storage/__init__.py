"""Durable state under the state dir (SQLite)."""

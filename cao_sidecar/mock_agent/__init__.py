"""The built-in deterministic test agent (provider `mock`)."""

"""`python -m cao_sidecar.mock_agent [--delay-ms 50] [--transcript PATH] [--profile NAME]`: the
built-in deterministic test agent (see cao_sidecar/mock_agent/tasks.py for what it understands)."""

from cao_sidecar.mock_agent.agent import main

if __name__ == "__main__":
    raise SystemExit(main())

"""Built-in agent profiles, shipped inside the package as cao_sidecar.agent_profiles."""

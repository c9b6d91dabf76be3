"""A team spread over hosts (issue 19): hosts.yaml, the node on each host, one SSH link per host."""

"""Agent profiles: Markdown files with YAML frontmatter."""

"""A project-owned shim over localstripe (a test-only tool, run as a separate process)."""

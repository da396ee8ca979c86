"""SpiffWorkflow integration: hardened parsing, our task-spec subclasses, sandboxed scripts, storage."""

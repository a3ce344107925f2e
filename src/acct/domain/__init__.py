"""domain: pure decisions with no I/O. Which account to pick (policies), what a tool's ending
means (classify), how long a limited account rests (limits), how to resume a tool (resume)."""

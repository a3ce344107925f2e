"""Per-provider protocol code (login, refresh, usage) behind the same acct interfaces."""

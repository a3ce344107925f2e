"""A fake ChatGPT (OAuth, wham/usage, Responses API) for tests; see server.py."""

from __future__ import annotations

from .server import AUTH_CLAIM, CLIENT_ID, sha8

__all__ = ["AUTH_CLAIM", "CLIENT_ID", "sha8"]

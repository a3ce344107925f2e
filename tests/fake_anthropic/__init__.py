"""A fake of Anthropic's OAuth, usage, profile and Messages endpoints for tests.

The server (``server.py``) runs as its own process on 127.0.0.1 and is configured at
run time through ``/_admin/*`` endpoints; ``client.FakeAnthropic`` starts it and wraps
those endpoints. ``server.py`` describes the behaviour of each endpoint.
"""

from __future__ import annotations

from .server import CLAUDE_CODE_SCOPES, CLIENT_ID, MANUAL_REDIRECT_URI, OAUTH_BETA, sha8

__all__ = ["CLAUDE_CODE_SCOPES", "CLIENT_ID", "MANUAL_REDIRECT_URI", "OAUTH_BETA", "sha8"]

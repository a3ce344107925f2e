"""``python -m tests.fake_chatgpt --port 0``: run the fake ChatGPT server."""

from __future__ import annotations

from .server import main

if __name__ == "__main__":
    raise SystemExit(main())

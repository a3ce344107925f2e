"""Entry point. ``acct prompt``, completion's ``acct __complete`` and ``acct --version`` take fast
paths that import the standard library only."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["prompt"] and not {"-h", "--help"} & set(args):
        from acct.fast.prompt import main as prompt_main

        return prompt_main(args[1:])
    if args == ["--version"]:  # nothing else to parse: no CLI to build
        from acct import __version__

        sys.stdout.write(f"acct {__version__}\n")
        return 0
    if args[:1] == ["__complete"]:
        from acct.fast.names import main as names_main

        return names_main(args[1:])
    from acct.cli import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())

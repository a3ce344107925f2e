"""fast: the paths that run on every shell prompt and every <Tab> (``acct prompt``,
``acct __complete``). Standard library only; nothing else in acct is imported from here."""

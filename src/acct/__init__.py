"""acct: keep several Claude accounts and run coding tools on the best one."""

__version__ = "0.1.0"

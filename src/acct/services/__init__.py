"""services: everything that touches a file, a process or the network on acct's behalf. The
account store, the shared state database, custody of refresh-token lineages, sessions, OAuth,
usage polling, the loopback usage proxy, the child-process runner and one module per tool
(targets). Built from ``Ctx``; returns data and raises acct errors, never prints."""

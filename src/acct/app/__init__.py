"""app: the use cases, one module each: what a command does, as typed results or events that
the CLI renders. No printing, no prompting, no typer/rich/questionary."""

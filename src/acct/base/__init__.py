"""base: what every layer stands on. Models, errors (with their exit codes), paths, config,
endpoints, and atomic files and locks. Imports nothing of acct above it."""

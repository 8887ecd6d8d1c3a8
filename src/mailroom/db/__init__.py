"""PostgreSQL, the system of record: engine, sessions, schema and migrations.

engine      engines and sessions; ``open_database`` for a command or the worker
base        the declarative base the models share
text_search case-insensitive "contains" filters that trigram indexes serve
migrate     applying Alembic's migrations (creating the database if needed)
migrations  the schema, one revision at a time
"""

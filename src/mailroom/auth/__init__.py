"""API keys: who may call Mailroom, with which scopes."""

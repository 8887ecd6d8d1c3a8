"""API keys: who may call Mailroom, with which scopes.

keys     generating, hashing and recognising a key
scopes   what a key may do (send, logs:read, emails:write, metrics:read)
service  creating, listing and revoking keys; checking one (cached per process)
models   the api_keys table
"""

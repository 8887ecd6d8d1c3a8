"""API keys: who may call Mailroom, with which scopes, for which project.

keys     generating, hashing and recognising a key
scopes   what a key may do (send, logs:read, emails:write, metrics:read, suppressions:write,
         webhooks:write, admin)
service  creating, listing and revoking keys; checking one (cached per process) into a
         Principal, which names the key's project and what it may reach
models   the api_keys table (each key belongs to one project: mailroom.projects)
"""

"""The HTTP API: thin routes over the email use cases, and what surrounds them.

app              the application factory (lifespan, routers, middleware)
routes/          one module per group of endpoints; ``dev_inbox`` only under `mailroom dev`
dashboard/       the web dashboard at /dashboard (server-rendered pages, sessions, live log)
security         API keys, scopes and the rate limit on POST /send
ratelimit        the sliding-window limiter in Redis
middleware       body limit, per-request headers, the request log
request_metrics  requests by route template and status, emails accepted
errors           the one JSON error shape
server           how uvicorn runs it (one process or several)
"""

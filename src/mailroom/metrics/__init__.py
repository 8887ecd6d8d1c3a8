"""Prometheus metrics.

registry     the API's and the worker's registries, rendering, multi-process mode
http         the API's: requests (by method, route template and status), emails accepted
delivery     the worker's: attempts by outcome, emails sent and failed, delivery latency
collectors   values read at scrape time: emails by status, BullMQ jobs, open SMTP connections
server       the worker's own HTTP endpoint (WORKER_METRICS_PORT)

Labels never carry an address, a key, a raw path or anything else a client chose.
"""

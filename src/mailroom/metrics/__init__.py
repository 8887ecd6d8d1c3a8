"""Prometheus metrics: the registries, the worker's delivery metrics and the values read at
scrape time. The API's request metrics live with the API (``api/request_metrics``).

registry     the API's and the worker's registries, rendering, multi-process mode
delivery     the worker's: attempts by outcome, emails sent and failed, delivery latency
collectors   values read at scrape time: emails by status, BullMQ jobs, open SMTP connections
server       the worker's own HTTP endpoint (WORKER_METRICS_PORT)

Labels never carry an address, a key, a raw path or anything else a client chose. Nothing
here imports the API.
"""

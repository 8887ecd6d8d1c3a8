"""Webhooks: signed status events (Standard Webhooks) pushed to a project's endpoints.

Every status change of an email writes an event in its own transaction (an outbox, by
triggers: see ``events``); each event becomes one delivery per subscribed endpoint,
which the worker dispatches on its own BullMQ queue, signs, sends with aiohttp and
retries on a schedule of about three days, recording every attempt.
"""

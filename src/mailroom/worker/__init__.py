"""The delivery worker: takes jobs from BullMQ, delivers through a transport, logs every attempt.

runner     its lifecycle: resources (an AsyncExitStack), the BullMQ consumer, the loops, drain
delivery   one job: claim, send, record, with leases kept while it runs
sweeper    re-dispatches what Redis lost
processes  several worker processes under one command
"""

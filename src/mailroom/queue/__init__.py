"""Dispatch through BullMQ on Redis. Redis only carries email ids; PostgreSQL holds the truth.

jobs        what a job carries (one email, or a batch of them) and its id
dispatcher  hands jobs to BullMQ; never raises (a job Redis did not take is the sweeper's)
"""

"""Dispatch through BullMQ on Redis. Redis only carries email ids; PostgreSQL holds the truth."""

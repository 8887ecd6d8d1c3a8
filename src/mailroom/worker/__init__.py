"""The delivery worker: takes jobs from BullMQ, delivers through a transport, logs every attempt."""

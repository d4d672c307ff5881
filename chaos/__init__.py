"""Failure scenarios run against the real stack, with figures of what was lost.

Each scenario drives the connector as its own process against the local broker and
the simulator, breaks something on purpose, and counts what came out: requests
without an outcome (lost), requests with more than one (duplicates), and secrets or
device tokens found in the connector's logs or outcomes (leaked). The test suite runs
small versions; `make chaos` runs the large ones and prints the table.
"""

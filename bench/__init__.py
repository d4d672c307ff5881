"""`make bench`: the connector against the fastest Python APNs client and the wire.

See `bench/README.md` for what runs, how it is measured and how to read the table.
"""

"""`apns-connector`, the command line: the connector itself and the tools around it.

    run            consume requests and deliver them
    send           one notification to APNs now, and Apple's answer
    produce        JSON lines into the requests topic
    tail           follow outcomes and invalid-token events
    simulator      the APNs simulator
    check-config   the settings and credentials; with --connect, Kafka and APNs
    schemas        the JSON Schemas of the events

`connector.cli.exits` says what each exit code means.
"""

from connector.cli.main import main

__all__ = ["main"]

"""`python -m connector`: the same as the `apns-connector` command."""

from __future__ import annotations

import sys

from connector import early_stop

# Before the heavy imports below: a SIGTERM during start-up must mean "stop cleanly".
if sys.argv[1:2] == ["run"]:
    early_stop.install()

from connector.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())

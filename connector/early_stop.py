"""SIGTERM that arrives while the connector is still starting.

Importing the service and connecting take a second or two; a pod stopped in that
window would otherwise die on the default SIGTERM action instead of exiting cleanly.
`install` is called first thing by `apns-connector run`; the service asks `requested`
once its own handlers are in place.
"""

from __future__ import annotations

import signal
from types import FrameType

_requested = False


def install() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _remember)


def requested() -> bool:
    return _requested


def _remember(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = True

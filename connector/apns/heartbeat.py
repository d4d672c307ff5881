"""Whether the peer of a connection is still there: PING when it has gone quiet.

Every `interval_s` the heartbeat looks whether anything was heard from the peer since
its last look. If not, it sends a PING and gives the peer `timeout_s` to say anything
at all (the PING's acknowledgement, or any other frame); silence then means the peer is
dead, though the socket may not know it yet. APNs also drops connections that stay
idle for long without a PING, which the same PINGs prevent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Heartbeat:
    """Calls `ping` when the peer has been quiet, and `dead` when it stays so."""

    def __init__(
        self,
        *,
        interval_s: float,
        timeout_s: float,
        ping: Callable[[], None],
        dead: Callable[[], None],
    ) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._ping = ping
        self._dead = dead
        self._heard = False
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._look)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def heard(self) -> None:
        """Something arrived from the peer."""
        self._heard = True

    def _look(self) -> None:
        loop = asyncio.get_running_loop()
        if self._heard:
            self._heard = False
            self._timer = loop.call_later(self.interval_s, self._look)
            return
        self._ping()
        self._timer = loop.call_later(self.timeout_s, self._check)

    def _check(self) -> None:
        if self._heard:
            self._heard = False
            self._timer = asyncio.get_running_loop().call_later(
                self.interval_s, self._look
            )
            return
        self._timer = None
        self._dead()

"""How many streams one connection may have open at a time.

The server announces its limit in SETTINGS_MAX_CONCURRENT_STREAMS and may lower it at
any moment, also below the number of streams already open: those finish, and no new
stream starts until the count has fallen under the new limit. Under token
authentication APNs allows a single stream until a request carrying a valid token has
been answered, so a new connection is on probation, with a budget of one stream, until
its first answer that is not an authentication failure.
"""

from __future__ import annotations

# What HTTP/2 assumes until the server's first SETTINGS frame says otherwise is
# "unlimited"; a connection never sends before that frame, but the field needs a value.
UNANNOUNCED = 100


class StreamBudget:
    """Streams open on one connection, and how many the server allows."""

    __slots__ = ("in_flight", "on_probation", "server_limit")

    def __init__(self, *, on_probation: bool) -> None:
        self.server_limit = UNANNOUNCED
        self.in_flight = 0
        self.on_probation = on_probation

    @property
    def limit(self) -> int:
        return 1 if self.on_probation else self.server_limit

    @property
    def free(self) -> int:
        """Streams that may start now; zero (never negative) after a shrink."""
        return max(0, self.limit - self.in_flight)

    @property
    def saturated(self) -> bool:
        """Whether this connection runs at the server's own limit, not on probation."""
        return not self.on_probation and self.in_flight >= self.server_limit

    def take(self) -> None:
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1

    def accept(self) -> bool:
        """The first authenticated answer came: lift the probation. True if it was on."""
        was_on = self.on_probation
        self.on_probation = False
        return was_on

    def announce(self, server_limit: int) -> bool:
        """The server's new limit; True when more streams may start than before."""
        before = self.free
        self.server_limit = server_limit
        return self.free > before

    def __repr__(self) -> str:
        return (
            f"StreamBudget(in_flight={self.in_flight}, limit={self.limit}, "
            f"server_limit={self.server_limit}, on_probation={self.on_probation})"
        )

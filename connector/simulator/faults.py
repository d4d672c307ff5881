"""What APNs does to connections, on demand: the simulator's fault injection.

Standing rules live in a `Faults` on the simulator (`Simulator.faults`, or
`--answer-delay-ms` and friends on the command line) and apply to every connection;
a test may change them at any moment. Each connection counts its complete requests
from 1, and for request number n:

- `drop_every`: when n is a multiple, the connection is cut at once, without an
  answer or a GOAWAY, as a network failure would;
- `refuse_every`: when n is a multiple, the stream is reset with REFUSED_STREAM, as
  APNs does to streams it will not process;
- `goaway_every`: when n is a multiple, the request is answered and a GOAWAY follows
  naming its stream as the last one processed: later streams go unanswered, the
  connection closes once the earlier ones are answered;
- `goaway_debug_data`: what that GOAWAY carries as debug data (APNs sometimes sends
  a JSON reason there);
- `answer_delay_s`: every answer waits this long (a slow APNs);
- `stall`: nothing at all is written, neither answers nor PING acknowledgements (a
  peer that died without closing).

One-off acts on the connections open now are methods of the simulator:
`announce_stream_limit`, `send_goaway` and `drop_connections`.
"""

from __future__ import annotations

import dataclasses
import enum

import h2.errors
from hyperframe.frame import GoAwayFrame


class Act(enum.Enum):
    """What a connection does with one complete request."""

    ANSWER = "answer"
    REFUSE = "refuse"
    ANSWER_THEN_GOAWAY = "answer then goaway"
    DROP = "drop"


@dataclasses.dataclass
class Faults:
    """The standing misbehaviours; all off by default."""

    answer_delay_s: float = 0.0
    refuse_every: int = 0
    goaway_every: int = 0
    goaway_debug_data: bytes = b""
    drop_every: int = 0
    stall: bool = False

    def __post_init__(self) -> None:
        for name in ("refuse_every", "goaway_every", "drop_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off) or more")
        if self.answer_delay_s < 0:
            raise ValueError("answer_delay_s must be 0 or more")

    def act(self, number: int) -> Act:
        """What to do with a connection's request `number` (counted from 1)."""
        if self.drop_every and number % self.drop_every == 0:
            return Act.DROP
        if self.refuse_every and number % self.refuse_every == 0:
            return Act.REFUSE
        if self.goaway_every and number % self.goaway_every == 0:
            return Act.ANSWER_THEN_GOAWAY
        return Act.ANSWER


def goaway_frame(last_stream_id: int, debug_data: bytes = b"") -> bytes:
    """A GOAWAY (NO_ERROR) frame, built by hand: h2's own would also stop the
    connection reading, while a server going away still reads and answers the
    streams up to `last_stream_id`."""
    frame = GoAwayFrame(0)
    frame.last_stream_id = last_stream_id
    frame.error_code = h2.errors.ErrorCodes.NO_ERROR
    frame.additional_data = debug_data
    data: bytes = frame.serialize()
    return data

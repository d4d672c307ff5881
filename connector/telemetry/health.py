"""What `/readyz` reports: whether this replica can do its work.

Ready means both:

- the consumer is in its group, with partitions assigned or waiting for an assignment
  (a replica beyond the partition count waits as a healthy standby); not while
  starting nor while draining to stop;
- APNs answers for every configured app, by the latest evidence. Each attempt to send
  is evidence: an answer of any status shows the host answers, a failure to get one
  shows it may not. When no attempt was made within `EVIDENCE_TTL_S`, the check opens
  a TCP connection to the app's host and closes it. Probing only when idle keeps the
  connector from opening connections to Apple beside its own while it is busy.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from connector.settings import AppSettings

log = logging.getLogger(__name__)

EVIDENCE_TTL_S = 30.0
PROBE_TIMEOUT_S = 3.0
REACHABLE = "reachable"


class KafkaState(enum.StrEnum):
    STARTING = "starting"
    WAITING = "waiting for assignment"
    ASSIGNED = "assigned"
    STOPPING = "stopping"


READY_STATES = frozenset({KafkaState.WAITING, KafkaState.ASSIGNED})


@dataclass(frozen=True, slots=True)
class _Evidence:
    # REACHABLE, or why not.
    verdict: str
    at: float


class Reachability:
    """Whether each configured app's APNs host answers."""

    def __init__(
        self,
        apps: Iterable[AppSettings],
        *,
        ttl_s: float = EVIDENCE_TTL_S,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hosts = {app.bundle_id: (app.apns_host, app.port) for app in apps}
        self._evidence: dict[str, _Evidence] = {}
        self._ttl_s = ttl_s
        self._probe_timeout_s = probe_timeout_s
        self._clock = clock
        self._probing = asyncio.Lock()

    def answered(self, app_topic: str) -> None:
        self._record(app_topic, REACHABLE)

    def unanswered(self, app_topic: str, error: BaseException) -> None:
        self._record(app_topic, f"no answer: {type(error).__name__}")

    def _record(self, app_topic: str, verdict: str) -> None:
        if app_topic in self._hosts:
            self._evidence[app_topic] = _Evidence(verdict, self._clock())

    async def check(self) -> dict[str, str]:
        """Each app's verdict, probing the hosts without recent evidence."""
        async with self._probing:
            stale = [
                app
                for app in self._hosts
                if app not in self._evidence
                or self._clock() - self._evidence[app].at >= self._ttl_s
            ]
            verdicts = await asyncio.gather(*(self._probe(app) for app in stale))
            for app, verdict in zip(stale, verdicts):
                self._record(app, verdict)
        return {app: self._evidence[app].verdict for app in sorted(self._hosts)}

    async def _probe(self, app_topic: str) -> str:
        host, port = self._hosts[app_topic]
        try:
            async with asyncio.timeout(self._probe_timeout_s):
                _, writer = await asyncio.open_connection(host, port)
                writer.close()
                await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            log.warning(
                "APNs host unreachable",
                extra={
                    "app_topic": app_topic,
                    "host": host,
                    "port": port,
                    "error": type(exc).__name__,
                },
            )
            return f"unreachable: {type(exc).__name__}"
        return REACHABLE


@dataclass(frozen=True, slots=True)
class Report:
    ready: bool
    kafka: KafkaState
    apns: dict[str, str]

    def as_dict(self) -> dict[str, object]:
        return {"ready": self.ready, "kafka": self.kafka.value, "apns": self.apns}


class Readiness:
    """Puts the consumer's state and APNs' reachability together."""

    def __init__(
        self, kafka: Callable[[], KafkaState], reachability: Reachability
    ) -> None:
        self._kafka = kafka
        self._reachability = reachability

    async def report(self) -> Report:
        kafka = self._kafka()
        apns = await self._reachability.check()
        ready = kafka in READY_STATES and all(v == REACHABLE for v in apns.values())
        return Report(ready=ready, kafka=kafka, apns=apns)

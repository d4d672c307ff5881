"""From one decoded request to its one outcome: check, send, resend, classify.

Kafka is not seen here. The pipeline hands a request in and gets back the outcome and,
for a dead device token, the invalid-token event to publish beside it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec

from connector.apns.client import ApnsClient, ApnsResponse
from connector.apns.notification import (
    LocalRejection,
    Notification,
    has_expired,
    prepare,
)
from connector.apns.push_types import bundle_id_of
from connector.apns.reasons import (
    ENVIRONMENT_MISMATCH_REASONS,
    TOKEN_INVALID_REASONS,
    LocalReason,
    Verdict,
    classify,
)
from connector.errors import DeliveryError
from connector.events import InvalidToken, NotificationRequest, Outcome, Status
from connector.redaction import token_digest
from connector.settings import DeliverySettings
from connector.telemetry.health import Reachability
from connector.telemetry.metrics import metrics
from connector.telemetry.tracing import Tracing, record_answer

log = logging.getLogger(__name__)

_STATUS_OF_VERDICT = {
    Verdict.DELIVERED: Status.DELIVERED,
    Verdict.PERMANENT: Status.REJECTED,
    Verdict.TOKEN_INVALID: Status.REJECTED,
    Verdict.CONFIGURATION: Status.FAILED,
    Verdict.RETRIABLE: Status.FAILED,
}


@dataclass(frozen=True, slots=True)
class Result:
    """What to publish for one request."""

    outcome: Outcome
    invalid_token: InvalidToken | None = None


class Delivery:
    """Delivers requests with the clients of the configured apps."""

    def __init__(
        self,
        clients: Mapping[str, ApnsClient],
        settings: DeliverySettings,
        *,
        clock: Callable[[], float] = time.time,
        tracing: Tracing | None = None,
        reachability: Reachability | None = None,
    ) -> None:
        self._clients = clients
        self._settings = settings
        self._tracing = tracing or Tracing()
        self._reachability = reachability or Reachability(())
        # UNIX seconds, for expirations; tests pass their own.
        self._clock = clock

    async def deliver(self, request: NotificationRequest, outcome: Outcome) -> Result:
        """`outcome` carries the record's coordinates; the answer fills in the rest."""
        client = self._clients.get(bundle_id_of(request.topic))
        if client is None:
            detail = f"topic: no app is configured for {bundle_id_of(request.topic)!r}"
            return Result(_rejected(outcome, LocalReason.UNKNOWN_TOPIC, detail))

        prepared = prepare(request)
        if isinstance(prepared, LocalRejection):
            return self._rejected_locally(request, outcome, prepared)

        problem = client.credential_problem()
        if problem is not None:
            # The app cannot send at all (its certificate expired): Apple is not
            # asked, and the outcome says what to fix.
            return Result(
                completed(
                    outcome,
                    status=Status.FAILED,
                    reason=problem.reason.value,
                    detail=problem.detail,
                    apns_id=prepared.apns_id,
                    attempts=0,
                )
            )

        return await self._send(client, request, prepared, outcome)

    def _rejected_locally(
        self, request: NotificationRequest, outcome: Outcome, rejection: LocalRejection
    ) -> Result:
        rejected = _rejected(outcome, rejection.reason, rejection.detail)
        if rejection.reason not in TOKEN_INVALID_REASONS:
            return Result(rejected)

        invalid = InvalidToken(
            device_token=request.device_token,
            topic=request.topic,
            reason=rejection.reason,
            found_locally=True,
            request_id=request.id,
        )
        return Result(rejected, invalid)

    async def _send(
        self,
        client: ApnsClient,
        request: NotificationRequest,
        notification: Notification,
        outcome: Outcome,
    ) -> Result:
        attempts = self._settings.max_attempts
        # Resends stop at the attempt limit or the time budget, whichever comes first.
        budget_ends = time.monotonic() + self._settings.retry_budget_s
        for attempt in range(1, attempts + 1):
            # Apple would drop it unsent; no need to ask (a resend after a
            # backoff may find it past too).
            if has_expired(notification, self._clock()):
                return Result(_expired(outcome, notification, attempt - 1))
            try:
                response = await self._attempt(client, notification, attempt)
            except DeliveryError as exc:
                log.debug(
                    "send failed",
                    extra={"apns_id": notification.apns_id, "attempt": attempt},
                )
                delay_s = self._backoff_s(attempt)
                if attempt == attempts or time.monotonic() + delay_s > budget_ends:
                    return Result(
                        completed(
                            outcome,
                            status=Status.FAILED,
                            reason=LocalReason.DELIVERY_FAILED.value,
                            detail=str(exc),
                            apns_id=notification.apns_id,
                            attempts=attempt,
                            retriable=True,
                        )
                    )
                metrics.retried(client.app.bundle_id, type(exc).__name__)
                await asyncio.sleep(delay_s)
                continue

            verdict = classify(response.status, response.reason)
            if verdict is Verdict.RETRIABLE and attempt < attempts:
                delay_s = self._backoff_s(attempt)
                if time.monotonic() + delay_s <= budget_ends:
                    reason = response.reason or str(response.status)
                    metrics.retried(client.app.bundle_id, reason)
                    await asyncio.sleep(delay_s)
                    continue
            return self._answered(
                request, notification, response, verdict, outcome, attempt
            )

        raise AssertionError("the attempt loop always returns")

    async def _attempt(
        self, client: ApnsClient, notification: Notification, attempt: int
    ) -> ApnsResponse:
        """One request to APNs: traced, timed, and evidence of whether APNs answers."""
        app = client.app
        started = time.perf_counter()
        try:
            with self._tracing.apns_request(
                host=app.apns_host,
                port=app.port,
                apns_id=notification.apns_id,
                attempt=attempt,
            ) as span:
                response = await client.send(notification)
                record_answer(span, response.status, response.reason, response.apns_id)
        except DeliveryError as exc:
            self._reachability.unanswered(app.bundle_id, exc)
            raise
        finally:
            metrics.apns_request(app.bundle_id, time.perf_counter() - started)

        self._reachability.answered(app.bundle_id)
        return response

    def _answered(
        self,
        request: NotificationRequest,
        notification: Notification,
        response: ApnsResponse,
        verdict: Verdict,
        outcome: Outcome,
        attempt: int,
    ) -> Result:
        answered = completed(
            outcome,
            status=_STATUS_OF_VERDICT[verdict],
            reason=response.reason,
            # A refusal of our own (a certificate the TLS handshake refused) has
            # no HTTP status: Apple never answered.
            http_status=None if response.local else response.status,
            apns_id=response.apns_id or notification.apns_id,
            invalidated_at_ms=response.timestamp_ms,
            attempts=attempt,
            retriable=verdict is Verdict.RETRIABLE,
        )
        log.debug(
            "answered",
            extra={
                "apns_id": answered.apns_id,
                "status": response.status,
                "reason": response.reason,
                "token": token_digest(notification.device_token),
            },
        )
        if verdict is not Verdict.TOKEN_INVALID:
            return Result(answered)

        mismatch = response.reason in ENVIRONMENT_MISMATCH_REASONS
        if mismatch:
            answered = msgspec.structs.replace(
                answered,
                possible_environment_mismatch=True,
                detail=f"device_token: {_ENVIRONMENT_HINT}",
            )
        invalid = InvalidToken(
            device_token=notification.device_token,
            topic=request.topic,
            reason=response.reason or "",
            invalidated_at_ms=response.timestamp_ms,
            request_id=request.id,
            possible_environment_mismatch=mismatch,
        )
        return Result(answered, invalid)

    def _backoff_s(self, attempt: int) -> float:
        # Exponential with full jitter, so resends of many requests spread out.
        ceiling = self._settings.retry_backoff_s * 2 ** (attempt - 1)
        return random.uniform(0, ceiling)


_ENVIRONMENT_HINT = (
    "Apple says it is not a token of this app's environment; it may belong to "
    "the other one (sandbox or production)"
)


def _expired(outcome: Outcome, notification: Notification, attempts: int) -> Outcome:
    return completed(
        outcome,
        status=Status.EXPIRED,
        reason=LocalReason.EXPIRED.value,
        detail=f"expiration: {notification.expiration} passed before sending",
        apns_id=notification.apns_id,
        attempts=attempts,
    )


def _rejected(outcome: Outcome, reason: str, detail: str) -> Outcome:
    return completed(outcome, status=Status.REJECTED, reason=reason, detail=detail)


def completed(outcome: Outcome, **changes: object) -> Outcome:
    """`outcome` with `changes`, stamped with the time it was completed."""
    changed = msgspec.structs.replace(outcome, **changes)
    return msgspec.structs.replace(
        changed, timings=msgspec.structs.replace(outcome.timings, completed_ms=now_ms())
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000

"""The retry policy: what is resent, how often, and what outcome ends it; against the
simulator over TLS."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from connector import stack
from connector.apns.client import ApnsClient
from connector.apns.reasons import Reason
from connector.delivery import Delivery
from connector.events import NotificationRequest, Outcome, Status, Timings
from connector.settings import AppSettings, DeliverySettings
from connector.simulator.server import Simulator

BUNDLE_ID = "com.example.demo"
BOUND_S = 20


@pytest.fixture
async def client(
    simulator: Simulator, credentials: stack.Credentials
) -> AsyncIterator[ApnsClient]:
    app = AppSettings(
        bundle_id=BUNDLE_ID,
        key_file=str(credentials.key_file),
        key_id=stack.KEY_ID,
        team_id=stack.TEAM_ID,
        host="127.0.0.1",
        port=simulator.port,
        ca_file=str(credentials.cert_file),
    )
    apns = ApnsClient(app, request_timeout_s=2)
    yield apns
    await apns.aclose()


async def deliver(
    client: ApnsClient, token: str, **settings: float
) -> tuple[Outcome, int]:
    delivery = Delivery(
        {BUNDLE_ID: client},
        DeliverySettings(**{"retry_backoff_s": 0.01, **settings}),  # type: ignore[arg-type]
    )
    request = NotificationRequest(
        id=f"retry-{secrets.token_hex(4)}",
        device_token=token,
        topic=BUNDLE_ID,
        aps={"alert": "hi"},
    )
    blank = Outcome(request_id=request.id, status=Status.FAILED, timings=Timings())
    async with asyncio.timeout(BOUND_S):
        result = await delivery.deliver(request, blank)
    return result.outcome, result.outcome.attempts


@pytest.mark.parametrize(
    "reason",
    [
        Reason.TOO_MANY_REQUESTS,
        Reason.INTERNAL_SERVER_ERROR,
        Reason.SERVICE_UNAVAILABLE,
        Reason.SHUTDOWN,
        Reason.IDLE_TIMEOUT,
    ],
)
async def test_passing_refusals_are_resent_then_fail_as_retriable(
    client: ApnsClient, simulator: Simulator, reason: Reason
) -> None:
    token = secrets.token_hex(32)
    simulator.inject(token, reason)

    outcome, attempts = await deliver(client, token, max_attempts=3)

    assert (outcome.status, outcome.reason, outcome.retriable) == (
        Status.FAILED,
        reason.value,
        True,
    )
    assert attempts == 3
    assert [r.reason for r in simulator.received] == [reason] * 3


@pytest.mark.parametrize(
    "reason", [Reason.BAD_PRIORITY, Reason.PAYLOAD_EMPTY, Reason.UNREGISTERED]
)
async def test_permanent_rejections_are_never_resent(
    client: ApnsClient, simulator: Simulator, reason: Reason
) -> None:
    token = secrets.token_hex(32)
    simulator.inject(token, reason)

    outcome, attempts = await deliver(client, token, max_attempts=5)

    assert (outcome.status, outcome.reason, outcome.retriable) == (
        Status.REJECTED,
        reason.value,
        False,
    )
    assert attempts == 1
    assert len(simulator.received) == 1


async def test_transport_failures_are_resent_then_fail_as_retriable(
    client: ApnsClient, simulator: Simulator
) -> None:
    simulator.faults.drop_every = 1

    outcome, attempts = await deliver(client, secrets.token_hex(32), max_attempts=3)

    assert (outcome.status, outcome.reason, outcome.retriable) == (
        Status.FAILED,
        "DeliveryFailed",
        True,
    )
    assert attempts == 3
    assert outcome.detail == "APNs closed the connection"


async def test_a_resend_that_succeeds_is_delivered(
    client: ApnsClient, simulator: Simulator
) -> None:
    await deliver(client, secrets.token_hex(32))
    simulator.faults.drop_every = 2

    outcome, attempts = await deliver(client, secrets.token_hex(32), max_attempts=3)

    assert (outcome.status, outcome.retriable, attempts) == (
        Status.DELIVERED,
        False,
        2,
    )


async def test_resends_stop_when_the_retry_budget_is_spent(
    client: ApnsClient, simulator: Simulator
) -> None:
    token = secrets.token_hex(32)
    simulator.inject(token, Reason.TOO_MANY_REQUESTS)

    # The first backoff (jittered over 0 to 10 s) outlasts a budget of 1 ms, but
    # for a draw below 1 ms: once in ten thousand runs.
    outcome, attempts = await deliver(
        client, token, max_attempts=50, retry_backoff_s=10, retry_budget_s=0.001
    )

    assert (outcome.status, outcome.reason, outcome.retriable) == (
        Status.FAILED,
        "TooManyRequests",
        True,
    )
    assert attempts == 1

"""The failure scenarios at a size CI can afford; `make chaos` runs them large."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos import scenarios
from chaos.figures import count_leaks
from chaos.inputs import bad_inputs
from connector import stack
from connector.errors import DecodeError
from connector.events import decode_request
from connector.simulator.server import Simulator


@pytest.fixture
def stage(
    kafka_bootstrap: str,
    credentials: stack.Credentials,
    simulator: Simulator,
    tmp_path: Path,
) -> Iterator[scenarios.Stage]:
    stage = scenarios.Stage(kafka_bootstrap, credentials, simulator, tmp_path)
    yield stage
    stage.kill_leftovers()


async def test_sigkill_at_random_moments_loses_nothing(stage: scenarios.Stage) -> None:
    figures = await scenarios.sigkill(stage, requests=3000, kills=5, seed=11)
    print(figures)
    assert (figures.lost, figures.leaked_secrets) == (0, 0)
    assert figures.details["committed_ahead"] == 0
    assert figures.details["exit"] == 0


async def test_broker_outage_is_ridden_out(
    stage: scenarios.Stage, tmp_path: Path
) -> None:
    figures = await scenarios.broker_outage(
        stage, requests=2000, down_s=5, directory=tmp_path
    )
    print(figures)
    assert (figures.lost, figures.leaked_secrets) == (0, 0)
    assert figures.details["crashed"] == 0
    assert figures.details["committed_ahead"] == 0
    assert figures.details["exit"] == 0


async def test_connectors_joining_and_leaving_lose_nothing(
    stage: scenarios.Stage,
) -> None:
    figures = await scenarios.rebalance(stage, requests=3000)
    print(figures)
    assert (figures.lost, figures.leaked_secrets) == (0, 0)
    assert figures.details["exits"] == "0/0/0"


async def test_every_bad_input_gets_one_rejected_outcome(
    stage: scenarios.Stage,
) -> None:
    figures = await scenarios.bad_input(stage, count=1000, seed=5)
    print(figures)
    assert (figures.lost, figures.duplicates, figures.leaked_secrets) == (0, 0, 0)
    assert figures.details == {"statuses": "rejected", "good_after": 10, "exit": 0}


async def test_apps_with_broken_credentials_fail_at_once_and_the_other_flows(
    stage: scenarios.Stage,
) -> None:
    figures = await scenarios.credential_fault(stage, requests=200)
    print(figures)
    assert (figures.lost, figures.duplicates, figures.leaked_secrets) == (0, 0, 0)
    broken_connections = figures.details.pop("broken_connections_per_min")
    assert figures.details == {
        "good_delivered": 200,
        "wrong_key_failed": 200,
        "revoked_key_failed": 200,
        "expired_certificate_failed": 200,
        # Failed at the first attempt, and not to be resent.
        "broken_max_attempts": 1,
        "broken_retriable": 0,
        # Never sent: the connector knows the certificate is past its date.
        "expired_certificate_sent": 0,
        "expired_warnings": 1,
        "exit": 0,
    }
    assert isinstance(broken_connections, float) and broken_connections <= 60


def test_generated_bad_inputs_never_decode_to_another_request() -> None:
    for key, value in bad_inputs(2000, seed=5):
        try:
            request = decode_request(value)
        except DecodeError:
            continue
        assert request.id == key


def test_leak_scan_finds_tokens_jwts_and_keys() -> None:
    token = "ab" * 32
    texts = [
        b'{"msg": "sent", "token": "' + token.encode() + b'"}',
        b"authorization: bearer eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJURUFNIn0.sig",
        b"-----BEGIN PRIVATE KEY-----",
        b'{"token_digest": "0123456789ab", "trace": "' + b"cd" * 16 + b'"}',
    ]
    assert count_leaks(texts, [token]) == 3


async def test_apns_faults_lose_nothing_and_stay_within_the_attempts(
    stage: scenarios.Stage,
) -> None:
    figures = await scenarios.apns_faults(stage, requests=3000)
    print(figures)
    assert (figures.lost, figures.leaked_secrets) == (0, 0)
    # Every 25th request is answered 500, 503 or 429 on every attempt.
    assert figures.details["failed_retriable"] == 120
    assert figures.details["delivered"] == 2880
    assert figures.details["max_attempts"] == 3
    assert figures.details["exit"] == 0

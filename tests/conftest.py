"""Fixtures shared by the whole test tree."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from connector import stack
from connector.kafka.broker import LocalBroker, external_bootstrap
from connector.kafka.topics import ensure_topics
from connector.simulator.server import Simulator


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[LocalBroker | None]:
    """The session's local broker, or None when ``KAFKA_BOOTSTRAP`` names one to use."""
    if external_bootstrap() is not None:
        yield None
        return
    with LocalBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalBroker | None) -> str:
    """``host:port`` of the one Kafka broker every test of the session shares."""
    if kafka_broker is not None:
        return kafka_broker.bootstrap
    external = external_bootstrap()
    assert external is not None
    return external


BUNDLE_ID = "com.example.demo"


@pytest.fixture(scope="session")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> stack.Credentials:
    return stack.Credentials(tmp_path_factory.mktemp("credentials"))


@pytest.fixture
async def simulator(credentials: stack.Credentials) -> AsyncIterator[Simulator]:
    async with Simulator(
        tls=credentials.tls, signing_keys=credentials.signing_keys
    ) as running:
        yield running


@pytest.fixture
def unstarted_run(
    kafka_bootstrap: str,
    tmp_path: Path,
    credentials: stack.Credentials,
    simulator: Simulator,
) -> Iterator[stack.Run]:
    """A run whose topics the test creates itself."""
    run = stack.Run(kafka_bootstrap, tmp_path, credentials, simulator.port, BUNDLE_ID)
    yield run
    run.kill_leftovers()


@pytest.fixture
async def run(unstarted_run: stack.Run) -> stack.Run:
    await ensure_topics(unstarted_run.bootstrap, stack.topics(unstarted_run.prefix))
    return unstarted_run

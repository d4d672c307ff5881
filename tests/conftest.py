"""Fixtures shared by the whole test tree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.kafka.broker import LocalBroker, external_bootstrap


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

"""The connector's lifecycle: start everything, run, drain on SIGTERM, stop.

Everything that can be checked before connecting is checked in `Service.start`: the
settings, every app's credentials, and that the four topics exist. A failure there
stops the process with a message naming the problem.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from connector.apns.client import ApnsClient
from connector.delivery import Delivery
from connector.errors import ConfigurationError
from connector.pipeline import Pipeline
from connector.settings import Settings

log = logging.getLogger(__name__)


class Service:
    """The running connector: Kafka clients, APNs clients and the pipeline."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[str, ApnsClient] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.pipeline: Pipeline | None = None
        self._stop_requested = False

    async def start(self) -> None:
        if self.pipeline is not None:
            return
        settings = self.settings
        kafka = settings.kafka

        # Credentials first: a bad key must stop us before anything connects.
        for app in settings.apps:
            self._clients[app.bundle_id] = ApnsClient(
                app, request_timeout_s=settings.delivery.request_timeout_s
            )

        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap,
            client_id=kafka.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )
        await self._producer.start()

        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap,
            client_id=kafka.client_id,
            group_id=kafka.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self._consumer.start()
        await self._check_topics()

        delivery = Delivery(self._clients, settings.delivery)
        self.pipeline = Pipeline(settings, self._consumer, self._producer, delivery)
        self._consumer.subscribe([kafka.requests_topic], listener=self.pipeline)
        log.info(
            "started",
            extra={
                "bootstrap": kafka.bootstrap,
                "group": kafka.group_id,
                "apps": sorted(self._clients),
            },
        )

    async def _check_topics(self) -> None:
        assert self._consumer is not None
        kafka = self.settings.kafka
        wanted = {
            kafka.requests_topic,
            kafka.results_topic,
            kafka.invalid_tokens_topic,
            kafka.dlq_topic,
        }
        missing = wanted - await self._consumer.topics()
        if missing:
            raise ConfigurationError(
                f"kafka topics missing on {kafka.bootstrap}: {', '.join(sorted(missing))}"
            )

    async def run(self) -> None:
        await self.start()
        assert self.pipeline is not None
        if self._stop_requested:
            self.pipeline.stop()
        await self.pipeline.run()

    def request_stop(self) -> None:
        self._stop_requested = True
        if self.pipeline is not None:
            self.pipeline.stop()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        for client in self._clients.values():
            await client.aclose()
        log.info("stopped")


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain within the deadline and stop."""
    service = Service(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.request_stop)

    try:
        await service.run()
    finally:
        await service.stop()

"""The connector's lifecycle: start everything, run, drain on SIGTERM, stop.

Everything that can be checked before connecting is checked in `Service.start`: the
settings, every app's credentials, and that the four topics exist. A failure there
stops the process with a message naming the problem.

The telemetry listener (`/livez`, `/readyz`, `/metrics`) starts before Kafka is
reached, so a slow start shows as alive and not ready, and stops last.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry import trace

from connector import early_stop
from connector.apns.client import ApnsClient
from connector.delivery import Delivery
from connector.errors import ConfigurationError
from connector.pipeline import Pipeline
from connector.settings import Settings
from connector.telemetry.health import KafkaState, Reachability, Readiness
from connector.telemetry.listener import Listener
from connector.telemetry.metrics import metrics
from connector.telemetry.tracing import Tracing, provider_from_environment

log = logging.getLogger(__name__)

# The collector's thresholds while running (Python's default is 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 10)


class Service:
    """The running connector: Kafka clients, APNs clients and the pipeline."""

    def __init__(
        self,
        settings: Settings,
        *,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self._clients: dict[str, ApnsClient] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.pipeline: Pipeline | None = None
        self._stop_requested = False

        # Spans go where the OTEL_* variables say, unless the caller brings a
        # provider of its own (and then shuts it down itself).
        self._own_provider = None
        if tracer_provider is None:
            tracer_provider = self._own_provider = provider_from_environment()
        self._tracing = Tracing(tracer_provider)
        self._reachability = Reachability(settings.apps)
        self.listener = Listener(
            settings.telemetry,
            Readiness(self._kafka_state, self._reachability),
            metrics.registry,
        )

    async def start(self) -> None:
        if self.pipeline is not None:
            return
        settings = self.settings
        kafka = settings.kafka

        # Credentials first: a bad key must stop us before anything connects.
        for app in settings.apps:
            self._clients[app.bundle_id] = ApnsClient(
                app,
                request_timeout_s=settings.delivery.request_timeout_s,
                max_connections=settings.delivery.max_connections_per_app,
                ping_interval_s=settings.delivery.ping_interval_s,
            )

        for bundle_id, client in self._clients.items():
            metrics.count_connections(bundle_id, functools.partial(_open, client))
        await self.listener.start()

        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap,
            client_id=kafka.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            # With a batch of aiokafka's default 16 KiB, a thousand outcomes in
            # flight queue for room batch after batch, each wait waking them all.
            max_batch_size=512 * 1024,
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

        delivery = Delivery(
            self._clients,
            settings.delivery,
            tracing=self._tracing,
            reachability=self._reachability,
        )
        self.pipeline = Pipeline(
            settings, self._consumer, self._producer, delivery, tracing=self._tracing
        )
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

    def _kafka_state(self) -> KafkaState:
        if self._stop_requested or (self.pipeline and self.pipeline.stopping):
            return KafkaState.STOPPING
        if self.pipeline is None:
            return KafkaState.STARTING
        if self.pipeline.assigned:
            return KafkaState.ASSIGNED
        return KafkaState.WAITING

    async def run(self) -> None:
        await self.start()
        assert self.pipeline is not None
        # What starting made (modules, clients, settings) lives as long as the
        # process; frozen, the collector's full passes skip it instead of pausing
        # every request in flight for tens of milliseconds to scan it.
        gc.freeze()
        # A request's objects are freed by reference counting (collections during
        # a benchmark run found nothing to collect), so the collector runs
        # rarely: at Python's default it paused the loop 5-30 ms many times a
        # second and cost a fifth of the throughput.
        gc.set_threshold(*GC_THRESHOLDS)
        if self._stop_requested:
            self.pipeline.stop()
        await self.pipeline.run()

    def request_stop(self) -> None:
        self._stop_requested = True
        if self.pipeline is not None:
            self.pipeline.stop()

    async def stop(self) -> None:
        # With the broker gone, aiokafka's stop can wait on its coordinator for
        # ever; the drain deadline bounds it too.
        deadline_s = self.settings.delivery.drain_timeout_s
        for kafka_client in (self._consumer, self._producer):
            if kafka_client is None:
                continue
            try:
                await asyncio.wait_for(kafka_client.stop(), deadline_s)
            except TimeoutError:
                log.warning(
                    "kafka client did not stop in time",
                    extra={"client": type(kafka_client).__name__},
                )
        for client in self._clients.values():
            await client.aclose()
        await self.listener.stop()
        if self._own_provider is not None:
            # Exports what is still queued; the exporter blocks, the loop must not.
            await asyncio.to_thread(self._own_provider.shutdown)
        log.info("stopped")


def _open(client: ApnsClient) -> int:
    return len(client.pool.connections)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain within the deadline and stop."""
    service = Service(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.request_stop)
    if early_stop.requested():
        service.request_stop()

    try:
        await service.run()
    finally:
        await service.stop()

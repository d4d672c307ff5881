"""One trace per request, from its producer to the consumers of its outcome.

The producer's context arrives as W3C `traceparent` in the request record's headers.
`processing` continues it with a CONSUMER span, `apns_request` adds a CLIENT span per
attempt to send, and `sending` a PRODUCER span per outgoing record, whose context goes
into that record's headers so that whoever reads the outcome continues the same trace.
Contexts are read and written by OpenTelemetry's global propagators (W3C trace context
and baggage, unless `OTEL_PROPAGATORS` names others).

Which exporter, if any, is chosen by the standard variables, read once at start:
`OTEL_TRACES_EXPORTER` (`otlp`, `console` or `none`), or, when it is unset, OTLP if
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set and none
otherwise. OTLP goes over HTTP with protobuf; the exporter reads its own `OTEL_*`
variables (endpoint, headers, timeout). Without an exporter no span is made (the SDK's
spans cost about as much again as the rest of the telemetry of a request): the
producer's context then passes unchanged to the records written and to log lines.

Spans never carry a device token (the URL is a template, `url.full` is redacted), a
JWT or key material, and no exception is recorded on them: an exception's message and
traceback are not ours to vet. Only its class is kept, as `error.type`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata

from aiokafka import ConsumerRecord
from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from connector.errors import ConfigurationError
from connector.telemetry import semconv

SERVICE = "apns-connector"
MAX_KEY_BYTES = 256
OTLP_PROTOCOL = "http/protobuf"

Headers = list[tuple[str, bytes]]


# Kafka headers as a carrier of trace context


class _HeaderGetter(Getter[Sequence[tuple[str, bytes]]]):
    def get(self, carrier: Sequence[tuple[str, bytes]], key: str) -> list[str] | None:
        values = [
            value.decode("ascii", "replace")
            for name, value in carrier
            if name.lower() == key and value is not None
        ]
        return values or None

    def keys(self, carrier: Sequence[tuple[str, bytes]]) -> list[str]:
        return [name for name, _ in carrier]


class _HeaderSetter(Setter[Headers]):
    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier.append((key, value.encode("ascii")))


_getter = _HeaderGetter()
_setter = _HeaderSetter()


# The spans


class Sending:
    """The PRODUCER span of one outgoing record, and the headers that carry it."""

    def __init__(self, span: Span | None) -> None:
        """`span` None: no span is made; the current context is passed on as is."""
        self.span = span or trace.INVALID_SPAN
        self.headers: Headers = []
        where = None if span is None else trace.set_span_in_context(span)
        propagate.inject(self.headers, context=where, setter=_setter)

    def acknowledged(self, partition: int, offset: int) -> None:
        self.span.set_attribute(
            semconv.MESSAGING_DESTINATION_PARTITION_ID, str(partition)
        )
        self.span.set_attribute(semconv.MESSAGING_KAFKA_OFFSET, offset)
        self.span.end()

    def failed(self, error: BaseException) -> None:
        record_failure(self.span, error)
        self.span.end()


class Tracing:
    """Makes the spans of requests with one tracer provider."""

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        provider = provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer("connector", _version())
        # With OpenTelemetry's no-op provider a span records nothing, yet making one
        # costs about a tenth of a request: then none is made, and only the
        # producer's context is passed on.
        self._recording = not isinstance(
            provider, (trace.NoOpTracerProvider, trace.ProxyTracerProvider)
        )

    @contextmanager
    def processing(self, record: ConsumerRecord, group: str) -> Iterator[Span]:
        """The CONSUMER span of one request record, a child of its producer's."""
        if not self._recording:
            with self._producer_context(record):
                yield trace.get_current_span()
            return

        attributes: dict[str, AttributeValue] = {
            semconv.MESSAGING_SYSTEM: semconv.KAFKA,
            semconv.MESSAGING_OPERATION_TYPE: semconv.PROCESS,
            semconv.MESSAGING_OPERATION_NAME: semconv.PROCESS,
            semconv.MESSAGING_DESTINATION_NAME: record.topic,
            semconv.MESSAGING_DESTINATION_PARTITION_ID: str(record.partition),
            semconv.MESSAGING_KAFKA_OFFSET: record.offset,
            semconv.MESSAGING_CONSUMER_GROUP_NAME: group,
        }
        if record.key is not None:
            # The request id, as the README asks producers; cut, for a span is no
            # place for whatever else a producer may have put there.
            key = record.key[:MAX_KEY_BYTES].decode("utf-8", "replace")
            attributes[semconv.MESSAGING_KAFKA_MESSAGE_KEY] = key

        with self._producer_context(record):
            name = f"{semconv.PROCESS} {record.topic}"
            with self._span(name, SpanKind.CONSUMER, attributes) as span:
                yield span

    @contextmanager
    def _producer_context(self, record: ConsumerRecord) -> Iterator[None]:
        # Attached, not only used as the parent: the producer's baggage then travels
        # on to the outgoing records too.
        if not record.headers:
            yield
            return
        token = context.attach(propagate.extract(record.headers, getter=_getter))
        try:
            yield
        finally:
            context.detach(token)

    @contextmanager
    def apns_request(
        self, *, host: str, port: int, apns_id: str, attempt: int
    ) -> Iterator[Span]:
        """The CLIENT span of one attempt to send a notification to APNs."""
        if not self._recording:
            yield trace.INVALID_SPAN
            return

        attributes: dict[str, AttributeValue] = {
            semconv.HTTP_REQUEST_METHOD: "POST",
            semconv.SERVER_ADDRESS: host,
            semconv.SERVER_PORT: port,
            semconv.URL_FULL: redacted_url(host, port),
            semconv.URL_TEMPLATE: semconv.DEVICE_PATH_TEMPLATE,
            semconv.APNS_ID: apns_id,
        }
        if attempt > 1:
            attributes[semconv.HTTP_REQUEST_RESEND_COUNT] = attempt - 1

        name = f"POST {semconv.DEVICE_PATH_TEMPLATE}"
        with self._span(name, SpanKind.CLIENT, attributes) as span:
            yield span

    def sending(self, topic: str, key: str | None) -> Sending:
        """A PRODUCER span for one record; pass no key when the key is a secret."""
        if not self._recording:
            return Sending(None)

        attributes: dict[str, AttributeValue] = {
            semconv.MESSAGING_SYSTEM: semconv.KAFKA,
            semconv.MESSAGING_OPERATION_TYPE: semconv.SEND,
            semconv.MESSAGING_OPERATION_NAME: semconv.SEND,
            semconv.MESSAGING_DESTINATION_NAME: topic,
        }
        if key is not None:
            attributes[semconv.MESSAGING_KAFKA_MESSAGE_KEY] = key
        span = self._tracer.start_span(
            f"{semconv.SEND} {topic}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        return Sending(span)

    @contextmanager
    def _span(
        self, name: str, kind: SpanKind, attributes: dict[str, AttributeValue]
    ) -> Iterator[Span]:
        with self._tracer.start_as_current_span(
            name,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as error:
                record_failure(span, error)
                raise


def record_answer(
    span: Span, status: int, reason: str | None, apns_id: str | None
) -> None:
    """Record Apple's answer on an `apns_request` span."""
    span.set_attribute(semconv.HTTP_RESPONSE_STATUS_CODE, status)
    if apns_id:
        span.set_attribute(semconv.APNS_ID, apns_id)
    if reason:
        span.set_attribute(semconv.APNS_REASON, reason)
    if status >= 400:
        span.set_attribute(semconv.ERROR_TYPE, str(status))
        span.set_status(Status(StatusCode.ERROR))


def record_outcome(span: Span, status: str, reason: str | None) -> None:
    """Record a request's outcome on its `processing` span."""
    span.set_attribute(semconv.APNS_STATUS, status)
    if reason:
        span.set_attribute(semconv.APNS_REASON, reason)


def record_failure(span: Span, error: BaseException) -> None:
    """Mark a span failed by the class of `error`, never its message."""
    name = type(error).__name__
    span.set_attribute(semconv.ERROR_TYPE, name)
    span.set_status(Status(StatusCode.ERROR, name))


def redacted_url(host: str, port: int) -> str:
    authority = host if port == 443 else f"{host}:{port}"
    return f"https://{authority}{semconv.DEVICE_PATH_REDACTED}"


# The provider


def provider_from_environment() -> TracerProvider | None:
    """The tracer provider the `OTEL_*` variables ask for; None, which leaves
    OpenTelemetry's no-op one, when they ask for no exporter or disable the SDK."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = exporters_from_environment()
    if not exporters:
        return None

    resource = Resource.create({SERVICE_VERSION: _version()})
    if str(resource.attributes.get(SERVICE_NAME)).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: SERVICE}))

    # The sampler comes from OTEL_TRACES_SAMPLER; the batching from OTEL_BSP_*.
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def exporters_from_environment() -> list[SpanExporter]:
    chosen = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not chosen:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
            os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        )
        chosen = "otlp" if endpoint else "none"

    exporters: list[SpanExporter] = []
    for name in (part.strip() for part in chosen.split(",")):
        if name == "none":
            continue
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            exporters.append(_otlp_exporter())
        else:
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER: {name!r} is not supported; "
                "use otlp, console or none"
            )
    return exporters


def _otlp_exporter() -> SpanExporter:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or (
        os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", OTLP_PROTOCOL)
    )
    if protocol.strip() != OTLP_PROTOCOL:
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; "
            f"the connector exports over {OTLP_PROTOCOL}"
        )

    # Imported here: it brings `requests` and protobuf, needed only when exporting.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter,
    )

    return OTLPSpanExporter()


def _version() -> str:
    try:
        return metadata.version("apns-connector")
    except metadata.PackageNotFoundError:
        return "unknown"

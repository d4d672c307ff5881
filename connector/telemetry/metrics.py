"""The connector's Prometheus metrics, and the calls that update them.

Made with `prometheus_client` rather than OpenTelemetry's metrics API behind its
Prometheus exporter: the names scraped are exactly the names written here (the
exporter derives its own, adding unit and `_total` suffixes by rules of its own), the
client library is stable where that exporter is still a beta, and the exporter would
bring `prometheus_client` along anyway. Traces stay with OpenTelemetry.

Every label has a small, known set of values, never a token or a request id:

- `app_topic`: the bundle id of a configured app, or "" (an undecodable request, or
  one whose topic no app is configured for);
- `push_type`: one of Apple's push types, or "" for an undecodable request;
- `status`: delivered, rejected, failed or expired;
- `reason`: one of Apple's documented reasons, one of the connector's own, the class
  of one of our errors, "" for none, or `other` for anything else (an undocumented
  reason, a proxy's error page);
- `partition`: a partition number of the requests topic.

A process is what Prometheus scrapes, so the metrics are process-wide: `metrics` below
is the one instance, and `metrics.registry` what `/metrics` shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.context_managers import InprogressTracker

from connector.apns.push_types import bundle_id_of
from connector.apns.reasons import LocalReason, Reason
from connector.errors import ConnectorError
from connector.events import Outcome

OTHER = "other"

# Apple answers within milliseconds when all is well; the request timeout is seconds.
APNS_REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# From consumed to acknowledged: resends and their backoff, and the outcome's write.
PROCESS_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# A Counter's `_created` series doubles the output and no dashboard reads it.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


def _error_classes() -> set[str]:
    found, pending = set(), [ConnectorError]
    while pending:
        cls = pending.pop()
        found.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return found


_KNOWN_REASONS = frozenset(
    {r.value for r in Reason} | {r.value for r in LocalReason} | _error_classes()
)


def reason_label(reason: str | None) -> str:
    """The `reason` label of a reason, bounded to the ones we know."""
    if not reason:
        return ""
    return reason if reason in _KNOWN_REASONS else OTHER


class Metrics:
    """The instruments, with one call per thing that happens."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # CPU, memory and open files of the process.
        ProcessCollector(registry=self.registry)

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=self.registry)

        self._outcomes = counter(
            "apns_connector_outcomes_total",
            "Outcomes published, one per request.",
            ("app_topic", "push_type", "status", "reason"),
        )
        self._apns_request_duration = Histogram(
            "apns_connector_apns_request_duration_seconds",
            "Time from sending one request to APNs to its answer, or to giving up.",
            ("app_topic",),
            buckets=APNS_REQUEST_BUCKETS_S,
            registry=self.registry,
        )
        self._process_duration = Histogram(
            "apns_connector_process_duration_seconds",
            "Time from consuming a request to the broker acknowledging its outcome.",
            buckets=PROCESS_BUCKETS_S,
            registry=self.registry,
        )
        self._in_flight = gauge(
            "apns_connector_in_flight",
            "Requests consumed whose outcome is not yet acknowledged.",
        )
        self._connections = gauge(
            "apns_connector_connections_open",
            "HTTP/2 connections to APNs that are open.",
            ("app_topic",),
        )
        self._token_mints = counter(
            "apns_connector_token_mints_total",
            "Provider tokens (JWTs) signed.",
            ("app_topic",),
        )
        self._retries = counter(
            "apns_connector_retries_total",
            "Requests sent to APNs again after a retriable failure.",
            ("app_topic", "reason"),
        )
        self._lag = gauge(
            "apns_connector_consumer_lag",
            "Records of the requests topic not yet consumed, per assigned partition.",
            ("partition",),
        )

    # The pipeline

    def working(self) -> InprogressTracker:
        """A context manager around one request's work, counting it in flight."""
        return self._in_flight.track_inprogress()

    def concluded(self, outcome: Outcome, seconds: float) -> None:
        """A request's outcome was acknowledged, `seconds` after it was consumed."""
        self._outcomes.labels(
            app_topic=_app_topic(outcome),
            push_type=outcome.push_type or "",
            status=outcome.status.value,
            reason=reason_label(outcome.reason),
        ).inc()
        self._process_duration.observe(seconds)

    def consumer_lag(self, partition: int, records: int) -> None:
        self._lag.labels(partition=str(partition)).set(records)

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Revoked partitions: their lag is another consumer's to report."""
        for partition in partitions:
            try:
                self._lag.remove(str(partition))
            except KeyError:
                pass

    # Delivery and the APNs client

    def apns_request(self, app_topic: str, seconds: float) -> None:
        self._apns_request_duration.labels(app_topic=app_topic).observe(seconds)

    def retried(self, app_topic: str, reason: str) -> None:
        self._retries.labels(app_topic=app_topic, reason=reason_label(reason)).inc()

    def token_minted(self, app_topic: str, count: int = 1) -> None:
        """A provider token was signed: the APNs client gives each token it makes
        this as its `minted` callback, so an app without token auth has no samples."""
        self._token_mints.labels(app_topic=app_topic).inc(count)

    def count_connections(self, app_topic: str, count: Callable[[], float]) -> None:
        """Report `count()`, called at each scrape, as the app's open connections:
        read from the pool itself, the number cannot drift."""
        self._connections.labels(app_topic=app_topic).set_function(count)


def _app_topic(outcome: Outcome) -> str:
    # An unknown topic is whatever the producer wrote: not a label value.
    if outcome.topic is None or outcome.reason == LocalReason.UNKNOWN_TOPIC:
        return ""
    return bundle_id_of(outcome.topic)


metrics = Metrics()

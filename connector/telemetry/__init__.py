"""What operators see of the connector: traces, metrics, health.

- `semconv`: the names of span attributes, in one place;
- `tracing`: the tracer provider chosen by the `OTEL_*` variables, and the spans of a
  request, from its record's `traceparent` to the outcome's;
- `metrics`: the Prometheus metrics and the calls that update them;
- `health`: what `/readyz` reports: the consumer's state and whether APNs answers;
- `listener`: the HTTP listener of `/livez`, `/readyz` and `/metrics`.

Log lines get their trace and span ids in `connector.logs`.
"""

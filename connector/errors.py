"""The one tree of errors the connector raises.

A rejection by Apple is not an error: it is an outcome. These classes are for failures
to do the work at all, and each says whether trying again may help::

    ConnectorError
    ├── ConfigurationError      a setting or credential is wrong; stop at start
    ├── DecodeError             a request on the topic cannot be read; reject it
    └── DeliveryError           sending to APNs failed before an answer came
        ├── ConnectionFailed    the connection could not be opened or broke
        ├── RequestTimedOut     no answer within the request timeout
        └── NotProcessed        APNs refused the stream or went away before
                                reading it; safe to resend at once

Errors of httpx, h2, aiokafka and msgspec are translated into these where they are
caught, with the original chained as the cause.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """The root of every error the connector raises."""

    retriable: bool = False


class ConfigurationError(ConnectorError):
    """A setting or a credential is wrong; the message names it and the fix."""


class DecodeError(ConnectorError):
    """A request record could not be decoded; the message names the field."""


class DeliveryError(ConnectorError):
    """Sending to APNs failed before any answer came back."""

    retriable = True


class ConnectionFailed(DeliveryError):
    """The connection to APNs could not be opened, or broke mid-request."""


class RequestTimedOut(DeliveryError):
    """APNs did not answer within the request timeout."""


class NotProcessed(DeliveryError):
    """APNs did not process the request: the stream was refused (REFUSED_STREAM) or
    lay beyond the last stream a GOAWAY promised to answer. Resending cannot make a
    duplicate, so the connection pool resends on another stream by itself."""

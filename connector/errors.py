"""The one tree of errors the connector raises.

A rejection by Apple is not an error: it is an outcome. These classes are for failures
to do the work at all, and each says whether trying again may help (`retriable`).
Most live here; those that belong to one part of the package live beside it, named
in brackets::

    ConnectorError
    ├── ConfigurationError      a setting or credential is wrong; stop at start
    ├── DecodeError             a request on the topic cannot be read; reject it
    ├── DeliveryError           sending to APNs failed before an answer came
    │   │                       (retriable)
    │   ├── ConnectionFailed    the connection could not be opened or broke
    │   ├── RequestTimedOut     no answer within the request timeout
    │   └── NotProcessed        APNs refused the stream or went away before
    │                           reading it; safe to resend at once
    ├── FramingError            [apns/frames.py] APNs broke HTTP/2's framing
    │                           rules; the connection ends, its requests fail
    │                           with ConnectionFailed
    ├── PublishFailed           [producer.py] the broker did not take a request
    │                           (retriable)
    ├── OutcomeTimedOut         [producer.py] no outcome for a request in time;
    │                           also a TimeoutError (retriable)
    ├── TopicError              [kafka/topics.py] a topic could not be created or
    │                           reconfigured
    ├── BrokerError             [kafka/broker.py] the local broker for development
    │                           and tests could not be fetched, started or stopped
    ├── UsageError              [cli/exits.py] the command line or a file it
    │                           names is wrong; exit code 2
    └── CommandFailed           [cli/exits.py] a command ran and its work failed;
                                exit code 1

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

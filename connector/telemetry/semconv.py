"""The names of span attributes, from OpenTelemetry's semantic conventions.

The messaging conventions are still evolving (`messaging.kafka.offset` was
`messaging.kafka.message.offset` not long ago); when a name changes, this module is the
one place to change it. Attributes of our own are under `apns.`; none of them ever
holds a device token, a JWT or key material.
"""

from __future__ import annotations

from connector.apns.push_types import DEVICE_PATH_PREFIX

# Messaging: the consumer span of a request and the producer spans of its outcome.
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
# A string, even for Kafka's numbered partitions.
MESSAGING_DESTINATION_PARTITION_ID = "messaging.destination.partition.id"
MESSAGING_CONSUMER_GROUP_NAME = "messaging.consumer.group.name"
MESSAGING_KAFKA_OFFSET = "messaging.kafka.offset"
MESSAGING_KAFKA_MESSAGE_KEY = "messaging.kafka.message.key"

KAFKA = "kafka"
PROCESS = "process"
SEND = "send"

# HTTP: the client span of each request to APNs.
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
# Set on resends only: 1 on the second attempt, 2 on the third.
HTTP_REQUEST_RESEND_COUNT = "http.request.resend_count"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
URL_FULL = "url.full"
URL_TEMPLATE = "url.template"
# The status code as a string for an error answer, the error's class when none came.
ERROR_TYPE = "error.type"

# The device token is the one part of the path that must never be recorded.
DEVICE_PATH_TEMPLATE = DEVICE_PATH_PREFIX + "{device_token}"
DEVICE_PATH_REDACTED = DEVICE_PATH_PREFIX + "REDACTED"

# Our own.
APNS_ID = "apns.id"
# Apple's reason, or the connector's own for a request Apple never saw.
APNS_REASON = "apns.reason"
# The outcome's status: delivered, rejected, failed or expired.
APNS_STATUS = "apns.status"

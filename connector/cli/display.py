"""How outcomes and invalid-token events read on a terminal.

One line each, the most telling part first. A device token is shown by its digest,
as everywhere else the connector writes for people.
"""

from __future__ import annotations

from datetime import UTC, datetime

from connector.events import InvalidToken, Outcome
from connector.redaction import token_digest


def outcome_line(outcome: Outcome) -> str:
    """`<request id>: <status> [<reason>] [(<http status>)][: <detail>] key=value...`"""
    line = f"{outcome.request_id}: {outcome.status.value}"
    if outcome.reason:
        line += f" {outcome.reason}"
    if outcome.http_status is not None:
        line += f" ({outcome.http_status})"
    if outcome.detail:
        line += f": {outcome.detail}"

    fields = {
        "apns-id": outcome.apns_id,
        "invalid-since": _time(outcome.invalidated_at_ms),
        "topic": outcome.topic,
        "token": outcome.token_digest,
        "attempts": str(outcome.attempts) if outcome.attempts else None,
    }
    return line + _fields(fields)


def invalid_token_line(event: InvalidToken) -> str:
    """`token <digest>: <reason> key=value...`"""
    fields = {
        "invalid-since": _time(event.invalidated_at_ms),
        "found-locally": "yes" if event.found_locally else None,
        "topic": event.topic,
        "request": event.request_id,
    }
    return f"token {token_digest(event.device_token)}: {event.reason}" + _fields(fields)


def timestamp(ms: int) -> str:
    """Milliseconds since the epoch as UTC ISO 8601, to the millisecond."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(ms: int | None) -> str | None:
    return None if ms is None else timestamp(ms)


def _fields(fields: dict[str, str | None]) -> str:
    return "".join(f" {name}={value}" for name, value in fields.items() if value)

"""`apns-connector send`: one notification to APNs now, and Apple's answer.

Kafka is not involved: the request goes straight to the app's APNs host with the
app's credentials from the settings, through the same checks, resends and
classification as in the connector, and its outcome is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from pathlib import Path
from typing import Any

from connector.apns.client import ApnsClient
from connector.apns.push_types import PushType, bundle_id_of
from connector.cli import exits
from connector.cli.display import outcome_line
from connector.cli.exits import UsageError
from connector.cli.options import json_object, load_settings, read_input
from connector.delivery import Delivery, now_ms
from connector.errors import DecodeError
from connector.events import (
    NotificationRequest,
    Outcome,
    Status,
    Timings,
    decode_request,
    encoder,
)
from connector.redaction import token_digest
from connector.settings import Settings

DESCRIPTION = """\
Send one notification to APNs now, with the configured app's credentials, and print
Apple's answer. The request comes from --request (JSON, as on the requests topic),
from the options below, or both: an option replaces the field it names. Exit code 0
when Apple accepted it, 1 when it was refused or could not be sent."""

EXAMPLE = """\
example:
  apns-connector send --config connector.toml --topic com.example.shop \\
      --token 740f4707bebcf74f... --alert 'Your order is on its way' --badge 1"""

# Options that set a request field of the same name.
_FIELD_OPTIONS = (
    "id",
    "device_token",
    "topic",
    "push_type",
    "priority",
    "expiration",
    "collapse_id",
    "alert",
    "badge",
    "sound",
)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "send",
        parents=parents,
        help="send one notification to APNs now and print Apple's answer",
        description=DESCRIPTION,
        epilog=f"{EXAMPLE}\n\n{exits.SUMMARY}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--request",
        type=Path,
        metavar="FILE",
        help="the request as a JSON object; '-' reads it from stdin",
    )
    parser.add_argument("--id", help="request id; default: send-<random hex>")
    parser.add_argument(
        "--token", dest="device_token", metavar="TOKEN", help="device token (hex)"
    )
    parser.add_argument(
        "--topic",
        help="the app's bundle id; default: the one app of the settings, if one",
    )
    parser.add_argument(
        "--push-type",
        choices=[push_type.value for push_type in PushType],
        metavar="TYPE",
        help="alert (the default), background, voip, ... as on the requests topic",
    )
    parser.add_argument("--priority", type=int, metavar="N", help="10, 5 or 1")
    parser.add_argument(
        "--expiration", type=int, metavar="SECONDS", help="UNIX time; 0: now or never"
    )
    parser.add_argument("--collapse-id", metavar="ID", help="at most 64 bytes")
    parser.add_argument("--alert", metavar="TEXT", help="the alert's text")
    parser.add_argument("--badge", type=int, metavar="N", help="the badge number")
    parser.add_argument("--sound", metavar="NAME", help="the sound's file name")
    parser.add_argument(
        "--aps",
        metavar="JSON",
        help="a ready aps dictionary, instead of --alert, --badge, --sound",
    )
    parser.add_argument("--data", metavar="JSON", help="custom keys beside aps")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    request = _request(args, settings)
    outcome = asyncio.run(_send(settings, request))

    if args.json:
        print(encoder.encode(outcome).decode())
    else:
        print(outcome_line(outcome))
    return exits.OK if outcome.status is Status.DELIVERED else exits.FAILURE


def _request(args: argparse.Namespace, settings: Settings) -> NotificationRequest:
    fields: dict[str, Any] = {}
    if args.request is not None:
        text = read_input(args.request, "--request").decode("utf-8", "replace")
        fields = json_object(text, "--request")

    for name in _FIELD_OPTIONS:
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.data is not None:
        fields["data"] = json_object(args.data, "--data")
    if args.aps is not None:
        fields["aps"] = json_object(args.aps, "--aps")

    fields.setdefault("id", f"send-{secrets.token_hex(8)}")
    if "topic" not in fields and len(settings.apps) == 1:
        fields["topic"] = settings.apps[0].bundle_id

    try:
        return decode_request(encoder.encode(fields))
    except DecodeError as exc:
        raise UsageError(str(exc)) from exc


async def _send(settings: Settings, request: NotificationRequest) -> Outcome:
    bundle_id = bundle_id_of(request.topic)
    app = settings.app(bundle_id)
    if app is None:
        configured = ", ".join(each.bundle_id for each in settings.apps) or "none"
        raise UsageError(
            f"topic: no app is configured for {bundle_id!r} (configured: {configured})"
        )

    client = ApnsClient(app, request_timeout_s=settings.delivery.request_timeout_s)
    try:
        delivery = Delivery({bundle_id: client}, settings.delivery)
        started = Outcome(
            request_id=request.id,
            status=Status.FAILED,
            topic=request.topic,
            push_type=request.push_type.value,
            token_digest=token_digest(request.device_token),
            timings=Timings(consumed_ms=now_ms()),
        )
        return (await delivery.deliver(request, started)).outcome
    finally:
        await client.aclose()

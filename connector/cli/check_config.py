"""`apns-connector check-config`: the settings and every credential, checked as `run`
checks them; with `--connect`, Kafka and each app's APNs host reached as well.

Reaching APNs means a TLS handshake that negotiates HTTP/2 and the server's first
SETTINGS frame: the host, the trust in its certificate and (for certificate
authentication) the client certificate are proven without sending a notification.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from connector.apns.client import ApnsClient, ssl_context
from connector.cli import exits
from connector.cli.options import config_source, load_settings
from connector.errors import ConfigurationError
from connector.producer import kafka_problem
from connector.settings import (
    AppSettings,
    Auth,
    KafkaSettings,
    Settings,
    require_apps,
)

DESCRIPTION = """\
Load the settings and every app's credentials as `run` does, and report them. With
--connect, also reach Kafka (and find the four topics) and open one HTTP/2 connection
per app to its APNs host, without sending anything. Exit code 2 when a setting or
credential is wrong, 1 when something cannot be reached."""

EXAMPLE = """\
example:
  apns-connector check-config --config connector.toml --connect"""

_READ_BYTES = 65536


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "check-config",
        parents=parents,
        help="load the settings and credentials; with --connect, reach Kafka and APNs",
        description=DESCRIPTION,
        epilog=f"{EXAMPLE}\n\n{exits.SUMMARY}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--connect",
        action="store_true",
        help="also connect to Kafka and to each app's APNs host",
    )
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    require_apps(settings)
    print(f"settings: {config_source(args.config)}")
    print(f"kafka: {_kafka_line(settings.kafka)}")
    return asyncio.run(_check(settings, connect=args.connect))


async def _check(settings: Settings, *, connect: bool) -> int:
    await _load_credentials(settings)
    if not connect:
        return exits.OK
    return exits.OK if await _connect(settings) else exits.FAILURE


async def _load_credentials(settings: Settings) -> None:
    for app in settings.apps:
        try:
            client = ApnsClient(
                app, request_timeout_s=settings.delivery.request_timeout_s
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"app {app.bundle_id}: TLS settings cannot be loaded: {exc}"
            ) from exc
        # `run` starts with it, failing only this app's requests; a check says so.
        problem = client.credential_problem()
        await client.aclose()
        if problem is not None:
            raise ConfigurationError(f"app {app.bundle_id}: {problem.detail}")
        print(f"app {app.bundle_id}: {_app_line(app)}")


async def _connect(settings: Settings) -> bool:
    timeout_s = settings.delivery.request_timeout_s
    reached = True

    kafka = settings.kafka
    try:
        async with asyncio.timeout(timeout_s):
            missing = await _missing_topics(kafka)
    except KafkaError as exc:
        print(kafka_problem(kafka.bootstrap, exc))
        reached = False
    except TimeoutError:
        print(f"kafka {kafka.bootstrap}: no answer in time")
        reached = False
    else:
        if missing:
            print(f"kafka {kafka.bootstrap}: topics missing: {', '.join(missing)}")
            reached = False
        else:
            print(f"kafka {kafka.bootstrap}: connected; the four topics exist")

    for app in settings.apps:
        address = f"{app.apns_host}:{app.port}"
        try:
            async with asyncio.timeout(timeout_s):
                found = await _http2_handshake(app)
        except (OSError, ssl.SSLError, TimeoutError, h2.exceptions.H2Error) as exc:
            print(f"app {app.bundle_id}: cannot connect to {address}: {_reason(exc)}")
            reached = False
        else:
            print(f"app {app.bundle_id}: connected to {address}, {found}")
    return reached


async def _missing_topics(kafka: KafkaSettings) -> list[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=None)
    try:
        await consumer.start()
        existing = await consumer.topics()
    finally:
        await consumer.stop()
    wanted = [
        kafka.requests_topic,
        kafka.results_topic,
        kafka.invalid_tokens_topic,
        kafka.dlq_topic,
    ]
    return [topic for topic in wanted if topic not in existing]


async def _http2_handshake(app: AppSettings) -> str:
    """Open a connection as the client would, read the server's SETTINGS, close."""
    reader, writer = await asyncio.open_connection(
        app.apns_host, app.port, ssl=ssl_context(app)
    )
    try:
        tls = writer.get_extra_info("ssl_object")
        if tls.selected_alpn_protocol() != "h2":
            raise ssl.SSLError("the server does not offer HTTP/2 (ALPN h2)")

        connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True)
        )
        connection.initiate_connection()
        writer.write(connection.data_to_send())
        while True:
            data = await reader.read(_READ_BYTES)
            if not data:
                raise ConnectionError("closed by the server before its SETTINGS")
            events = connection.receive_data(data)
            if any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events):
                break

        streams = connection.remote_settings.max_concurrent_streams
        connection.close_connection()
        writer.write(connection.data_to_send())
        await writer.drain()
        return f"HTTP/2 over {tls.version()}, max concurrent streams {streams}"
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)


def _kafka_line(kafka: KafkaSettings) -> str:
    return (
        f"{kafka.bootstrap}, group {kafka.group_id}, {kafka.requests_topic} -> "
        f"{kafka.results_topic}, {kafka.invalid_tokens_topic}, {kafka.dlq_topic}"
    )


def _app_line(app: AppSettings) -> str:
    if app.auth is Auth.TOKEN:
        credential = f"token auth, key {app.key_id} of team {app.team_id}"
    else:
        credential = f"certificate auth, {Path(app.certificate_file or '').name}"
    return f"{credential}, {app.environment.value}, sends to {app.apns_host}:{app.port}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__

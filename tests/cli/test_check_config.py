"""`apns-connector check-config`: settings, credentials, and with --connect the
real broker and the simulator."""

from __future__ import annotations

import datetime
import socket
from pathlib import Path

from cryptography import x509

from connector import stack
from connector.simulator.credentials import (
    write_certificate_authority,
    write_client_certificate,
)

BUNDLE_ID = "com.example.demo"


def app_line(port: int) -> str:
    return (
        f"app {BUNDLE_ID}: token auth, key {stack.KEY_ID} of team {stack.TEAM_ID}, "
        f"sandbox, sends to 127.0.0.1:{port}"
    )


def kafka_line(run: stack.Run) -> str:
    p = run.prefix
    return (
        f"kafka: {run.bootstrap}, group {run.group}, {p}apns.requests -> "
        f"{p}apns.results, {p}apns.invalid-tokens, {p}apns.requests.dlq"
    )


def free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return int(listener.getsockname()[1])


async def test_check_config_reports_the_settings_and_credentials(
    cli, run: stack.Run, simulator
) -> None:
    ran = await cli("check-config", "--config", run.config)

    assert (ran.code, ran.stderr) == (0, "")
    assert ran.lines == [
        f"settings: {run.config}",
        kafka_line(run),
        app_line(simulator.port),
    ]


async def test_check_config_connect_reaches_kafka_and_the_simulator(
    cli, run: stack.Run, simulator
) -> None:
    ran = await cli("check-config", "--config", run.config, "--connect")

    assert (ran.code, ran.stderr) == (0, "")
    assert ran.lines == [
        f"settings: {run.config}",
        kafka_line(run),
        app_line(simulator.port),
        f"kafka {run.bootstrap}: connected; the four topics exist",
        (
            f"app {BUNDLE_ID}: connected to 127.0.0.1:{simulator.port}, HTTP/2 over "
            "TLSv1.3, max concurrent streams 1000"
        ),
    ]
    # A connection was opened and nothing was sent on it.
    assert simulator.received == []


async def test_check_config_connect_fails_when_apns_cannot_be_reached(
    cli, unstarted_run: stack.Run, simulator
) -> None:
    port = free_port()
    config = unstarted_run.config
    config.write_text(
        config.read_text().replace(f"port = {simulator.port}", f"port = {port}")
    )

    ran = await cli("check-config", "--config", config, "--connect")

    assert (ran.code, ran.stderr) == (1, "")
    p = unstarted_run.prefix
    assert ran.lines[3:] == [
        (
            f"kafka {unstarted_run.bootstrap}: topics missing: {p}apns.requests, "
            f"{p}apns.results, {p}apns.invalid-tokens, {p}apns.requests.dlq"
        ),
        (
            f"app {BUNDLE_ID}: cannot connect to 127.0.0.1:{port}: Connect call failed "
            f"('127.0.0.1', {port})"
        ),
    ]


async def test_check_config_with_a_missing_key_file_is_a_configuration_error(
    cli, run: stack.Run, tmp_path: Path
) -> None:
    config = run.config.read_text()
    key_line = next(line for line in config.splitlines() if line.startswith("key_file"))
    run.config.write_text(config.replace(key_line, f'key_file = "{tmp_path}/none.p8"'))

    ran = await cli("check-config", "--config", run.config)

    assert ran.code == 2
    assert ran.stderr == (
        f"apns-connector: apps ({BUNDLE_ID}).key_file {tmp_path}/none.p8 does not "
        "exist\n"
    )


async def test_check_config_with_an_expired_certificate_is_a_configuration_error(
    cli, tmp_path: Path
) -> None:
    authority = write_certificate_authority(tmp_path / "ca")
    expired = write_client_certificate(
        authority, tmp_path / "cert", BUNDLE_ID, valid_for=-datetime.timedelta(days=1)
    )
    expired_on = x509.load_pem_x509_certificate(
        expired.cert_path.read_bytes()
    ).not_valid_after_utc
    config = tmp_path / "connector.toml"
    config.write_text(
        f"""[[apps]]
bundle_id = "{BUNDLE_ID}"
auth = "certificate"
certificate_file = "{expired.p12_path}"
certificate_password_file = "{expired.password_path}"
"""
    )

    ran = await cli("check-config", "--config", config)

    assert ran.code == 2
    assert [line for line in ran.lines if line.startswith("app ")] == []
    assert ran.stderr.splitlines()[-1] == (
        f"apns-connector: app {BUNDLE_ID}: the client certificate of {BUNDLE_ID} "
        f"expired on {expired_on:%Y-%m-%d %H:%M:%S} UTC; renew it"
    )


async def test_check_config_with_a_missing_settings_file_is_a_usage_error(
    cli, tmp_path: Path
) -> None:
    ran = await cli("check-config", "--config", tmp_path / "none.toml")

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == (
        f"apns-connector: settings file {tmp_path}/none.toml does not exist\n"
    )


async def test_check_config_with_a_bad_setting_names_it(cli, tmp_path: Path) -> None:
    config = tmp_path / "connector.toml"
    config.write_text("[delivery]\nmax_in_flight = 0\n")

    ran = await cli("check-config", "--config", config)

    assert ran.code == 2
    assert ran.stderr == (
        "apns-connector: invalid setting: delivery.max_in_flight: Expected `int` >= 1\n"
    )


async def test_check_config_with_an_argument_prints_usage(cli) -> None:
    ran = await cli("check-config", "connector.toml")

    assert ran.code == 2
    assert ran.stderr.splitlines()[-1] == (
        "apns-connector check-config: error: unrecognized arguments: connector.toml"
    )

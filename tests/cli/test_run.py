"""`apns-connector run`: the connector, as the container starts it."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
from pathlib import Path

import pytest

from connector import stack
from connector.events import NotificationRequest, encoder


async def test_run_delivers_until_sigterm_then_exits_0(
    cli_process, run: stack.Run
) -> None:
    request = NotificationRequest(
        id="run-1",
        device_token=secrets.token_hex(32),
        topic="com.example.demo",
        alert="hi",
    )
    await run.produce([("run-1", encoder.encode(request))])

    connector = await cli_process("run", "--config", run.config, "--log-level", "info")
    read = await stack.read_outcomes(
        run.bootstrap, {"run-1"}, topic=run.results, timeout_s=60, settle_s=0
    )
    connector.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        stdout, stderr = await connector.communicate()

    assert connector.returncode == 0
    assert [o.status.value for o, _ in read.outcomes["run-1"]] == ["delivered"]
    assert stdout == b""
    messages = [json.loads(line)["message"] for line in stderr.splitlines()]
    assert (messages.count("started"), messages.count("stopped")) == (1, 1)


async def test_run_with_missing_topics_stops_with_exit_code_2(
    cli, unstarted_run: stack.Run
) -> None:
    ran = await cli("run", "--config", unstarted_run.config)

    p = unstarted_run.prefix
    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr.splitlines()[-1] == (
        f"apns-connector: kafka topics missing on {unstarted_run.bootstrap}: "
        f"{p}apns.invalid-tokens, {p}apns.requests, {p}apns.requests.dlq, "
        f"{p}apns.results"
    )


async def test_run_with_a_missing_settings_file_stops_with_exit_code_2(
    cli, tmp_path: Path
) -> None:
    ran = await cli("run", "--config", tmp_path / "none.toml")

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == (
        f"apns-connector: settings file {tmp_path}/none.toml does not exist\n"
    )


async def test_run_without_an_app_stops_with_exit_code_2(cli, tmp_path: Path) -> None:
    config = tmp_path / "connector.toml"
    config.write_text('[kafka]\nbootstrap = "127.0.0.1:9"\n')

    ran = await cli("run", "--config", config)

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == (
        "apns-connector: apps: no app is configured; add an [[apps]] table to the "
        "settings file (--config or APNS_CONNECTOR_CONFIG)\n"
    )


async def test_run_with_config_but_no_path_prints_usage(cli) -> None:
    ran = await cli("run", "--config")

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr.splitlines()[-1] == (
        "apns-connector run: error: argument --config: expected one argument"
    )


@pytest.mark.parametrize(
    "setting", ["ca_file", "key_file", "certificate_file"], ids=lambda s: s
)
async def test_run_with_a_missing_credential_file_stops_with_exit_code_2(
    cli, credentials: stack.Credentials, tmp_path: Path, setting: str
) -> None:
    missing = tmp_path / "none.pem"
    app = {
        "bundle_id": "com.example.demo",
        "key_file": credentials.key_file,
        "key_id": stack.KEY_ID,
        "team_id": stack.TEAM_ID,
        "ca_file": credentials.cert_file,
        setting: missing,
    }
    if setting == "certificate_file":
        app["auth"] = "certificate"
    lines = "".join(f'{name} = "{value}"\n' for name, value in app.items())
    config = tmp_path / "connector.toml"
    # Credentials are read before anything connects: no broker or APNs is needed.
    config.write_text(f'[kafka]\nbootstrap = "127.0.0.1:9"\n\n[[apps]]\n{lines}')

    ran = await cli("run", "--config", config)

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr.splitlines()[-1] == (
        f"apns-connector: apps (com.example.demo).{setting} {missing} does not exist"
    )

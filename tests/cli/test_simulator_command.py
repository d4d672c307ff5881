"""`apns-connector simulator`: the simulator's own command line, behind ours."""

from __future__ import annotations

import asyncio
import secrets
import signal
from pathlib import Path

from connector import stack
from connector.apns.notification import apns_id_for
from connector.redaction import token_digest


async def test_simulator_answers_a_send_until_sigterm(
    cli,
    cli_process,
    credentials: stack.Credentials,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    ready = tmp_path / "port"
    simulator = await cli_process(
        "simulator",
        "--port",
        "0",
        "--tls-dir",
        credentials.directory / "tls",
        "--signing-key",
        f"{stack.TEAM_ID}:{stack.KEY_ID}:{credentials.key_file}",
        "--ready-file",
        ready,
    )
    async with asyncio.timeout(30):
        while not ready.exists():
            assert simulator.returncode is None
            await asyncio.sleep(0.05)
    config = stack.write_config(
        tmp_path / "connector.toml",
        bootstrap=kafka_bootstrap,
        group_id="unused",
        credentials=credentials,
        simulator_port=int(ready.read_text()),
    )
    token = secrets.token_hex(32)

    sent = await cli(
        "send", "--config", config, "--id", "sim-1", "--token", token, "--alert", "hi"
    )

    assert (sent.code, sent.stderr) == (0, "")
    assert sent.lines == [
        (
            f"sim-1: delivered (200) apns-id={apns_id_for('sim-1')} "
            f"topic=com.example.demo token={token_digest(token)} attempts=1"
        )
    ]
    simulator.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        assert await simulator.wait() == 0


async def test_simulator_help_is_the_simulators_own(cli) -> None:
    ran = await cli("simulator", "--help")

    assert ran.code == 0
    assert "--unregistered-file" in ran.stdout
    assert "A local APNs look-alike (TLS, HTTP/2) for integration tests." in ran.stdout


async def test_simulator_without_a_tls_dir_prints_usage(cli) -> None:
    ran = await cli("simulator", "--port", "0")

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr.splitlines()[-1].endswith(
        "error: the following arguments are required: --tls-dir"
    )


async def test_simulator_with_a_missing_key_file_is_a_usage_error(
    cli, tmp_path: Path
) -> None:
    missing = tmp_path / "none.p8"

    ran = await cli(
        "simulator",
        "--port",
        "0",
        "--tls-dir",
        tmp_path / "tls",
        "--signing-key",
        f"TEAMID1234:KEYID12345:{missing}",
    )

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == (
        f"apns-simulator: --signing-key: cannot read {missing}: "
        "No such file or directory\n"
    )

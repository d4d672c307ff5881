"""The simulator's faults from its command line: a client still gets every answer
once, and a bad value stops it at start."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from pathlib import Path

from connector import stack
from connector.apns.client import ApnsClient
from connector.apns.notification import Notification, prepare
from connector.events import NotificationRequest
from connector.settings import AppSettings

BUNDLE_ID = "com.example.demo"


def simulator_argv(credentials: stack.Credentials, ready: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "connector.simulator",
        "--port",
        "0",
        "--tls-dir",
        str(credentials.directory / "tls"),
        "--signing-key",
        f"{stack.TEAM_ID}:{stack.KEY_ID}:{credentials.key_file}",
        "--ready-file",
        str(ready),
    ]


async def test_faults_set_on_the_command_line_are_ridden_out(
    credentials: stack.Credentials, tmp_path: Path
) -> None:
    ready = tmp_path / "port"
    process = stack.Process(
        "simulator",
        [
            *simulator_argv(credentials, ready),
            "--max-streams",
            "3",
            "--refuse-every",
            "4",
            "--goaway-every",
            "7",
            "--goaway-debug",
            '{"reason":"Shutdown"}',
            "--answer-delay-ms",
            "20",
        ],
        tmp_path / "simulator.log",
    )
    try:
        deadline = time.monotonic() + 20
        while not (ready.exists() and ready.read_text().strip()):
            assert process.popen.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.05)
        app = AppSettings(
            bundle_id=BUNDLE_ID,
            key_file=str(credentials.key_file),
            key_id=stack.KEY_ID,
            team_id=stack.TEAM_ID,
            host="127.0.0.1",
            port=int(ready.read_text()),
            ca_file=str(credentials.cert_file),
        )
        client = ApnsClient(app, request_timeout_s=10)
        notes = []
        for number in range(20):
            note = prepare(
                NotificationRequest(
                    id=f"cli-{number}",
                    device_token=secrets.token_hex(32),
                    topic=BUNDLE_ID,
                    aps={"alert": "hi"},
                )
            )
            assert isinstance(note, Notification)
            notes.append(note)
        try:
            async with asyncio.timeout(30):
                responses = await asyncio.gather(*(client.send(n) for n in notes))
        finally:
            await client.aclose()
    finally:
        assert process.stop() == 0

    assert [(r.status, r.apns_id) for r in responses] == [
        (200, note.apns_id) for note in notes
    ]
    # GOAWAY after every 7th request of a connection: more than one was needed.
    assert client.pool.opened >= 3


def test_a_bad_fault_stops_the_simulator_at_start(
    credentials: stack.Credentials, tmp_path: Path
) -> None:
    result = subprocess.run(
        [*simulator_argv(credentials, tmp_path / "port"), "--drop-every", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "apns-simulator: faults: drop_every must be 0 (off) or more"
    )

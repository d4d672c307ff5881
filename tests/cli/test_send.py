"""`apns-connector send`: one notification to the simulator, and Apple's answer."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from connector import stack
from connector.apns.notification import apns_id_for
from connector.redaction import token_digest
from connector.simulator.server import Simulator

BUNDLE_ID = "com.example.demo"
INVALID_SINCE_MS = 1_700_000_000_123


async def test_send_delivers_from_options_and_prints_the_answer(
    cli, run: stack.Run, simulator: Simulator
) -> None:
    token = secrets.token_hex(32)

    ran = await cli(
        "send",
        "--config",
        run.config,
        "--id",
        "hello-1",
        "--token",
        token,
        "--alert",
        "Hello",
        "--badge",
        "3",
        "--data",
        '{"order": 4711}',
    )

    assert (ran.code, ran.stderr) == (0, "")
    assert ran.lines == [
        (
            f"hello-1: delivered (200) apns-id={apns_id_for('hello-1')} "
            f"topic={BUNDLE_ID} token={token_digest(token)} attempts=1"
        )
    ]
    (received,) = simulator.received
    assert received.path == f"/3/device/{token}"
    assert received.body == b'{"order":4711,"aps":{"alert":"Hello","badge":3}}'
    assert received.headers["apns-topic"] == BUNDLE_ID
    assert token not in ran.stdout


async def test_send_reads_a_json_request_and_prints_a_rejection_as_json(
    cli, run: stack.Run, simulator: Simulator, tmp_path: Path
) -> None:
    token = secrets.token_hex(32)
    simulator.register_unregistered(token, INVALID_SINCE_MS)
    request = tmp_path / "request.json"
    request.write_text(
        json.dumps(
            {
                "id": "gone-1",
                "device_token": token,
                "topic": BUNDLE_ID,
                "aps": {"alert": "hi"},
            }
        )
    )

    ran = await cli("send", "--config", run.config, "--request", request, "--json")

    assert ran.code == 1
    outcome = json.loads(ran.stdout)
    assert {key: outcome[key] for key in ("request_id", "status", "reason")} == {
        "request_id": "gone-1",
        "status": "rejected",
        "reason": "Unregistered",
    }
    assert (outcome["http_status"], outcome["invalidated_at_ms"]) == (
        410,
        INVALID_SINCE_MS,
    )
    assert outcome["token_digest"] == token_digest(token)
    assert token not in ran.stdout
    assert len(simulator.received) == 1


async def test_send_rejects_a_malformed_token_without_contacting_apns(
    cli, run: stack.Run, simulator: Simulator
) -> None:
    ran = await cli(
        "send", "--config", run.config, "--id", "bad-1", "--token", "zz", "--alert", "x"
    )

    assert ran.code == 1
    assert ran.lines == [
        (
            "bad-1: rejected BadDeviceToken: device_token: must be hex of even length "
            f"topic={BUNDLE_ID} token={token_digest('zz')}"
        )
    ]
    assert simulator.received == []


async def test_send_without_a_token_is_a_usage_error(cli, run: stack.Run) -> None:
    ran = await cli("send", "--config", run.config, "--alert", "x")

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == (
        "apns-connector: invalid request: Object missing required field "
        "`device_token`\n"
    )


async def test_send_to_an_unconfigured_app_is_a_usage_error(
    cli, run: stack.Run
) -> None:
    ran = await cli(
        "send", "--config", run.config, "--token", "ab", "--topic", "com.example.other"
    )

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == (
        "apns-connector: topic: no app is configured for 'com.example.other' "
        f"(configured: {BUNDLE_ID})\n"
    )


async def test_send_with_a_missing_request_file_is_a_usage_error(
    cli, run: stack.Run, tmp_path: Path
) -> None:
    missing = tmp_path / "none.json"

    ran = await cli("send", "--config", run.config, "--request", missing)

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == f"apns-connector: --request: {missing} does not exist\n"


async def test_send_with_an_unknown_option_prints_usage(cli) -> None:
    ran = await cli("send", "--tokn", "ab")

    assert ran.code == 2
    assert ran.stderr.splitlines()[-1] == (
        "apns-connector send: error: unrecognized arguments: --tokn ab"
    )

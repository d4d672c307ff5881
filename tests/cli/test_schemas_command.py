"""`apns-connector schemas`: the JSON Schemas of the events, printed or written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from connector import schemas

COMMITTED = Path(__file__).parents[2] / "schemas"


async def test_schemas_prints_one_event_as_the_committed_file(cli) -> None:
    ran = await cli("schemas", "outcome")

    assert (ran.code, ran.stderr) == (0, "")
    assert ran.stdout == (COMMITTED / "outcome.schema.json").read_text()


async def test_schemas_prints_all_four_keyed_by_name(cli) -> None:
    ran = await cli("schemas")

    assert ran.code == 0
    printed = json.loads(ran.stdout)
    assert list(printed) == [
        "notification-request",
        "outcome",
        "invalid-token",
        "dead-letter",
    ]
    for name, schema in printed.items():
        assert schema == json.loads((COMMITTED / f"{name}.schema.json").read_text())


async def test_schemas_write_creates_the_files_of_make_schemas(
    cli, tmp_path: Path
) -> None:
    target = tmp_path / "out"

    ran = await cli("schemas", "--write", target)

    assert (ran.code, ran.stderr) == (0, "")
    names = [f"{name}.schema.json" for name in schemas.EVENTS]
    assert ran.lines == [f"wrote {target / name}" for name in names]
    for name in names:
        assert (target / name).read_text() == (COMMITTED / name).read_text()


async def test_schemas_write_into_a_missing_directory_is_a_usage_error(
    cli, tmp_path: Path
) -> None:
    target = tmp_path / "missing" / "out"

    ran = await cli("schemas", "--write", target)

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == (
        f"apns-connector: --write: cannot write into {target}: "
        "No such file or directory\n"
    )


async def test_schemas_of_an_unknown_event_prints_usage(cli) -> None:
    ran = await cli("schemas", "request")

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr.splitlines()[-1] == (
        "apns-connector schemas: error: argument EVENT: invalid choice: 'request' "
        "(choose from 'notification-request', 'outcome', 'invalid-token', "
        "'dead-letter')"
    )


def test_a_reader_gone_away_ends_the_command_quietly() -> None:
    # As with `| head -1`: the pipe's reading end is closed before anything is written.
    reading, writing = os.pipe()
    os.close(reading)
    try:
        ran = subprocess.run(
            [sys.executable, "-m", "connector", "schemas"],
            stdout=writing,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writing)

    assert (ran.returncode, ran.stderr) == (1, b"")

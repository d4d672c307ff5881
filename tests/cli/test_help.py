"""Every command explains itself, and both ways of starting the CLI are the same."""

from __future__ import annotations

import sys

import pytest

COMMANDS = ["run", "send", "produce", "tail", "check-config", "schemas"]


@pytest.mark.parametrize("command", COMMANDS)
async def test_every_command_has_help_with_the_exit_codes(cli, command: str) -> None:
    ran = await cli(command, "--help")

    assert (ran.code, ran.stderr) == (0, "")
    assert ran.stdout.startswith(f"usage: apns-connector {command} ")
    assert "exit codes:\n  0    done\n" in ran.stdout


async def test_the_top_level_help_lists_every_command(cli) -> None:
    ran = await cli("--help")

    assert ran.code == 0
    listed = ran.stdout.split("positional arguments:")[1].split("options:")[0]
    assert [
        line.split()[0]
        for line in listed.splitlines()
        if line.startswith("    ") and not line.startswith("     ")
    ] == ["run", "send", "produce", "tail", "simulator", "check-config", "schemas"]


async def test_python_dash_m_connector_is_the_same_command(cli) -> None:
    script = await cli("--help")
    module = await cli("--help", program=[sys.executable, "-m", "connector"])

    assert module == script


async def test_no_command_prints_usage(cli) -> None:
    ran = await cli()

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == (
        "usage: apns-connector [-h] COMMAND ...\n"
        "apns-connector: error: the following arguments are required: COMMAND\n"
    )

"""Running `apns-connector` as its own process, as a person or a script would."""

from __future__ import annotations

import asyncio
import os
import sys
from asyncio.subprocess import Process
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

APNS_CONNECTOR = Path(sys.executable).parent / "apns-connector"


@dataclass(frozen=True)
class Ran:
    """How a command ended: its exit code and what it printed."""

    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def environment() -> dict[str, str]:
    """This process's environment without settings overrides, which would leak in."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("APNS_CONNECTOR_") or name == "APNS_CONNECTOR_CACHE"
    }


async def apns_connector(
    *args: str | Path,
    stdin: bytes | None = None,
    timeout_s: float = 60,
    program: list[str] | None = None,
) -> Ran:
    """Run the command to its end; awaited, so the test's simulator keeps answering."""
    process = await asyncio.create_subprocess_exec(
        *(program or [str(APNS_CONNECTOR)]),
        *map(str, args),
        stdin=asyncio.subprocess.PIPE
        if stdin is not None
        else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(),
    )
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await process.communicate(stdin)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


@pytest.fixture
def cli() -> Callable[..., Awaitable[Ran]]:
    """`await cli("send", "--config", path, ...)` runs `apns-connector send ...`."""
    return apns_connector


@pytest.fixture
async def cli_process() -> AsyncIterator[Callable[..., Awaitable[Process]]]:
    """`await cli_process("tail", ...)`: the command running, its output on pipes;
    killed at the end of the test if still running."""
    started: list[Process] = []

    async def start(*args: str | Path) -> Process:
        process = await asyncio.create_subprocess_exec(
            str(APNS_CONNECTOR),
            *map(str, args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment(),
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()

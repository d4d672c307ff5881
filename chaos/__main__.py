"""`make chaos`: the failure scenarios at full size, as a table and one last line."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable, Collection
from contextlib import ExitStack
from pathlib import Path

from chaos import scenarios
from chaos.figures import Figures, summary, table
from connector import stack
from connector.kafka.broker import LocalBroker, external_bootstrap
from connector.simulator.server import Simulator

SCENARIOS = (
    "sigkill",
    "broker-outage",
    "rebalance",
    "apns-faults",
    "bad-input",
    "credential-fault",
)


async def run_all(
    bootstrap: str,
    directory: Path,
    scale: float,
    only: Collection[str] = SCENARIOS,
) -> list[Figures]:
    credentials = stack.Credentials(directory / "credentials")
    async with Simulator(
        tls=credentials.tls, signing_keys=credentials.signing_keys
    ) as simulator:
        stage = scenarios.Stage(bootstrap, credentials, simulator, directory)
        # Each made only when it runs, so that a skipped one leaves no coroutine behind.
        steps: list[tuple[str, Callable[[], Awaitable[Figures]]]] = [
            (
                "sigkill",
                lambda: scenarios.sigkill(
                    stage, requests=int(20_000 * scale), kills=5, seed=7
                ),
            ),
            (
                "broker-outage",
                lambda: scenarios.broker_outage(
                    stage, requests=int(10_000 * scale), down_s=20, directory=directory
                ),
            ),
            (
                "rebalance",
                lambda: scenarios.rebalance(stage, requests=int(10_000 * scale)),
            ),
            (
                "apns-faults",
                lambda: scenarios.apns_faults(stage, requests=int(10_000 * scale)),
            ),
            (
                "bad-input",
                lambda: scenarios.bad_input(stage, count=int(10_000 * scale), seed=3),
            ),
            (
                "credential-fault",
                lambda: scenarios.credential_fault(stage, requests=int(1_000 * scale)),
            ),
        ]
        assert [name for name, _ in steps] == list(SCENARIOS)
        rows = []
        try:
            for name, step in steps:
                if name not in only:
                    continue
                print(f"chaos: running {name} ...", flush=True)
                rows.append(await step())
                print(table(rows[-1:]).splitlines()[-1], flush=True)
        finally:
            stage.kill_leftovers()
        return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the full sizes"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        metavar="SCENARIO",
        help=f"run only this scenario; repeatable; one of {', '.join(SCENARIOS)}",
    )
    args = parser.parse_args(argv)

    with ExitStack() as cleanup:
        directory = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        bootstrap = external_bootstrap()
        if bootstrap is None:
            broker = cleanup.enter_context(LocalBroker(directory / "kafka"))
            bootstrap = broker.bootstrap
        rows = asyncio.run(
            run_all(bootstrap, directory, args.scale, args.only or SCENARIOS)
        )

    print(table(rows))
    print(summary(rows))
    failed = any(row.lost or row.leaked_secrets for row in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

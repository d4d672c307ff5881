"""The `apns-connector` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from connector import logs, settings
from connector.errors import ConfigurationError
from connector.service import serve

EXIT_OK = 0
EXIT_CONFIGURATION = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="apns-connector",
        description="Deliver Apple push notifications from Kafka over HTTP/2.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="consume requests and deliver them")
    run.add_argument(
        "--config",
        type=Path,
        help="settings file (TOML); default: $APNS_CONNECTOR_CONFIG",
    )
    run.add_argument("--log-level", help="overrides the telemetry.log_level setting")
    args = parser.parse_args(argv)

    try:
        loaded = settings.load(args.config)
        logs.configure(args.log_level or loaded.telemetry.log_level)
        asyncio.run(serve(loaded))
    except ConfigurationError as exc:
        print(f"apns-connector: {exc}", file=sys.stderr)
        return EXIT_CONFIGURATION
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""The options several commands share, and reading the settings they point at."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from connector import logs, settings
from connector.cli.exits import UsageError
from connector.settings import Settings

TOOL_LOG_LEVEL = "WARNING"


def config_options() -> argparse.ArgumentParser:
    """`--config` and `--log-level`, as a parent of each command's parser."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings file (TOML); default: $APNS_CONNECTOR_CONFIG",
    )
    parent.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR; logs are JSON lines on stderr",
    )
    return parent


def kafka_options() -> argparse.ArgumentParser:
    """`--bootstrap`, for the commands that only talk to Kafka."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers; overrides the kafka.bootstrap setting",
    )
    return parent


def load_settings(args: argparse.Namespace) -> Settings:
    """The settings named by `--config` (or the environment), with `--bootstrap`
    applied; logging is configured for a tool, quiet unless asked."""
    loaded = settings.load(args.config)
    logs.configure(args.log_level or TOOL_LOG_LEVEL)
    if args.log_level is None:
        # aiokafka logs each failed connection; the command's own line says it once.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    bootstrap = getattr(args, "bootstrap", None)
    if bootstrap:
        kafka = msgspec.structs.replace(loaded.kafka, bootstrap=bootstrap)
        loaded = msgspec.structs.replace(loaded, kafka=kafka)
    return loaded


def config_source(path: Path | None) -> str:
    """Where the settings come from, as `settings.load` finds them."""
    if path is None and os.environ.get(settings.CONFIG_ENV):
        path = Path(os.environ[settings.CONFIG_ENV])
    if path is None:
        return "no file: the defaults and the environment"
    return str(path)


def read_input(path: Path, option: str) -> bytes:
    """The bytes of an input file, or of stdin for `-`."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(f"{option}: {path} does not exist") from exc
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {path}: {exc.strerror}") from exc


def json_object(text: str, option: str) -> dict[str, Any]:
    """An option's value that must be a JSON object."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{option}: not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{option}: must be a JSON object")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above zero: {text}")
    return value

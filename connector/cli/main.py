"""The `apns-connector` command: its commands, and how their errors end it.

Each command lives in a module of this package; `run`, `simulator` and `schemas`,
which hand their work to other parts of the connector, are here. Whatever goes wrong
ends the command with one line on stderr, `apns-connector: <what>`, and the exit code
of `connector.cli.exits`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop
from aiokafka.errors import KafkaError

from connector import logs, schemas, settings
from connector.cli import check_config, exits, produce, send, tail
from connector.cli.exits import UsageError
from connector.cli.options import config_options, kafka_options
from connector.errors import ConfigurationError, ConnectorError
from connector.service import serve
from connector.simulator import __main__ as simulator

log = logging.getLogger(__name__)

PROG = "apns-connector"
DESCRIPTION = "Deliver Apple push notifications from Kafka over HTTP/2."


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)

    # The simulator parses its own command line, --help included.
    if arguments[:1] == ["simulator"]:
        return simulator.main(arguments[1:], prog=f"{PROG} simulator")

    root = parser()
    args, unknown = root.parse_known_args(arguments)
    if unknown:
        # Said by the command's own parser, so its usage line is the one shown.
        command = _subcommands(root)[args.command]
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        code: int = args.execute(args)
        return code
    except (ConfigurationError, UsageError) as exc:
        return _stop(str(exc), exits.USAGE)
    except ConnectorError as exc:
        return _stop(str(exc), exits.FAILURE)
    except KafkaError as exc:
        return _stop(f"kafka: {exc}", exits.FAILURE)
    except KeyboardInterrupt:
        return _stop("interrupted", exits.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`| head`): what is left to print goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exits.FAILURE
    except Exception as exc:
        # A bug: one line here, the traceback in the logs at debug level.
        log.debug("unexpected error", exc_info=True)
        return _stop(f"unexpected error: {type(exc).__name__}: {exc}", exits.FAILURE)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=exits.SUMMARY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config, kafka = config_options(), kafka_options()

    _register_run(commands, [config])
    send.register(commands, [config])
    produce.register(commands, [config, kafka])
    tail.register(commands, [config, kafka])
    commands.add_parser(
        "simulator",
        help="run the APNs simulator (see: apns-connector simulator --help)",
        add_help=False,
    )
    check_config.register(commands, [config])
    _register_schemas(commands)
    return root


def _subcommands(root: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the root parser has its commands")


def _stop(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


# run


def _register_run(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    run = commands.add_parser(
        "run",
        parents=parents,
        help="consume requests and deliver them",
        description=(
            "Consume requests, deliver them to APNs and publish their outcomes, until "
            "SIGTERM or Ctrl-C; then finish the requests in flight and exit 0."
        ),
        epilog=f"example:\n  {PROG} run --config connector.toml\n\n{exits.SUMMARY}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.set_defaults(execute=_run)


def _run(args: argparse.Namespace) -> int:
    loaded = settings.load(args.config)
    settings.require_apps(loaded)
    logs.configure(args.log_level or loaded.telemetry.log_level)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(loaded))
    except (ConnectorError, KafkaError):
        raise
    except Exception:
        log.exception("stopped by an unexpected error")
        raise
    return exits.OK


# schemas


def _register_schemas(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    names = list(schemas.EVENTS)
    parser = commands.add_parser(
        "schemas",
        help="print or write the JSON Schemas of the events on the topics",
        description=(
            "Print the JSON Schema (draft-07) of one event, or of all four as one "
            "object keyed by name; or write them as <name>.schema.json files."
        ),
        epilog=(
            f"events: {', '.join(names)}\n\nexamples:\n"
            f"  {PROG} schemas notification-request\n"
            f"  {PROG} schemas --write schemas/\n\n{exits.SUMMARY}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("event", nargs="?", choices=names, metavar="EVENT")
    parser.add_argument(
        "--write",
        type=Path,
        metavar="DIR",
        help="write every schema into DIR (created if its parent exists)",
    )
    parser.set_defaults(execute=_schemas)


def _schemas(args: argparse.Namespace) -> int:
    if args.write is not None:
        if args.event is not None:
            raise UsageError("--write writes every schema; name no EVENT with it")
        try:
            args.write.mkdir(exist_ok=True)
            written = schemas.write(args.write)
        except OSError as exc:
            raise UsageError(
                f"--write: cannot write into {args.write}: {exc.strerror}"
            ) from exc
        for path in written:
            print(f"wrote {path}")
        return exits.OK

    if args.event is not None:
        print(schemas.render(schemas.EVENTS[args.event]), end="")
    else:
        every = {name: schemas.schema(event) for name, event in schemas.EVENTS.items()}
        print(json.dumps(every, indent=2, ensure_ascii=False))
    return exits.OK

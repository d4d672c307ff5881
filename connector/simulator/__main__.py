"""`python -m connector.simulator`: run the APNs simulator until SIGTERM or SIGINT.

Everything given on the command line is read and checked before the simulator
listens; a mistake ends the process with one line on stderr and exit code 2, so a
script starting the simulator sees at once what to fix. Once listening, the bound port
is written to `--ready-file` for such scripts to wait on.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from connector.errors import ConfigurationError
from connector.simulator.auth import load_public_key
from connector.simulator.credentials import TlsIdentity, write_tls_identity
from connector.simulator.faults import Faults
from connector.simulator.rules import is_device_token
from connector.simulator.server import Simulator

logger = logging.getLogger(__name__)

USAGE_ERROR = 2
_DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1")
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m connector.simulator"
) -> int:
    arguments = _parser(prog).parse_args(argv)
    logging.basicConfig(
        level=arguments.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # hpack logs every header it decodes at debug, bearer tokens included.
    logging.getLogger("hpack").setLevel(logging.INFO)

    try:
        if not 0 <= arguments.port <= 65535:
            raise ConfigurationError(f"--port must be 0 to 65535, got {arguments.port}")
        signing_keys = _signing_keys(arguments.signing_key)
        revoked_keys = _revoked_keys(arguments.revoked_key, signing_keys)
        unregistered = _unregistered(arguments.unregistered_file)
        # Files are generated only once everything else has been found right.
        tls = _tls_identity(arguments.tls_dir, arguments.host)
        simulator = Simulator(
            tls=tls,
            host=arguments.host,
            port=arguments.port,
            signing_keys=signing_keys,
            revoked_keys=revoked_keys,
            unregistered=unregistered,
            topics=arguments.topic or None,
            max_concurrent_streams=arguments.max_streams,
            faults=_faults(arguments),
        )
        asyncio.run(_serve(simulator, arguments.ready_file))
    except ConfigurationError as error:
        print(f"apns-simulator: {error}", file=sys.stderr)
        return USAGE_ERROR
    return 0


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A local APNs look-alike (TLS, HTTP/2) for integration tests.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=2197, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument(
        "--tls-dir",
        type=Path,
        required=True,
        help="directory with cert.pem and key.pem; both are generated if absent",
    )
    parser.add_argument(
        "--signing-key",
        action="append",
        default=[],
        metavar="TEAM_ID:KEY_ID:PATH",
        help="accept tokens signed by this key (public PEM or .p8); repeatable",
    )
    parser.add_argument(
        "--revoked-key",
        action="append",
        default=[],
        metavar="KEY_ID",
        help=(
            "a --signing-key Apple no longer accepts: its tokens get 403 "
            "InvalidProviderToken; repeatable"
        ),
    )
    parser.add_argument(
        "--unregistered-file",
        type=Path,
        help="device tokens to answer 410 Unregistered: 'token [timestamp_ms]' a line",
    )
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="BUNDLE_ID",
        help="accept only these bundle ids; repeatable; default accepts any",
    )
    parser.add_argument(
        "--ready-file", type=Path, help="written with the port once listening"
    )
    faults = parser.add_argument_group(
        "faults", "what APNs does to connections, on demand (see simulator/faults.py)"
    )
    faults.add_argument(
        "--max-streams", type=int, default=1000, help="MAX_CONCURRENT_STREAMS"
    )
    faults.add_argument("--answer-delay-ms", type=int, default=0, metavar="MS")
    for name, what in (
        ("refuse", "reset every Nth request of a connection with REFUSED_STREAM"),
        ("goaway", "answer every Nth request of a connection, then GOAWAY"),
        ("drop", "cut the connection at every Nth request, without a word"),
    ):
        faults.add_argument(
            f"--{name}-every", type=int, default=0, metavar="N", help=what
        )
    faults.add_argument(
        "--goaway-debug", default="", metavar="TEXT", help="debug data of the GOAWAY"
    )
    faults.add_argument(
        "--stall", action="store_true", help="read, but write nothing at all"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser


async def _serve(simulator: Simulator, ready_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    try:
        await simulator.start()
    except OSError as error:
        raise ConfigurationError(
            f"cannot listen on {simulator.host}:{simulator.port}: {error.strerror}"
        ) from error

    try:
        if ready_file is not None:
            _write_ready_file(ready_file, simulator.port)
        await stop.wait()
        logger.info("stop requested")
    finally:
        await simulator.stop()


def _faults(arguments: argparse.Namespace) -> Faults:
    if arguments.max_streams < 1:
        raise ConfigurationError("--max-streams must be at least 1")
    try:
        return Faults(
            answer_delay_s=arguments.answer_delay_ms / 1000,
            refuse_every=arguments.refuse_every,
            goaway_every=arguments.goaway_every,
            goaway_debug_data=arguments.goaway_debug.encode(),
            drop_every=arguments.drop_every,
            stall=arguments.stall,
        )
    except ValueError as error:
        raise ConfigurationError(f"faults: {error}") from error


def _tls_identity(directory: Path, host: str) -> TlsIdentity:
    identity = TlsIdentity(
        cert_path=directory / "cert.pem", key_path=directory / "key.pem"
    )
    cert_exists, key_exists = identity.cert_path.exists(), identity.key_path.exists()
    if cert_exists and key_exists:
        _check_tls_identity(identity)
        return identity
    if cert_exists or key_exists:
        present, absent = (
            (identity.cert_path, identity.key_path)
            if cert_exists
            else (identity.key_path, identity.cert_path)
        )
        raise ConfigurationError(
            f"--tls-dir has {present.name} but no {absent.name}; add it or remove both"
        )

    # The listening address, when it names one host, is a name clients may use too.
    hostnames = list(_DEFAULT_HOSTNAMES)
    if host not in _WILDCARD_HOSTS and host not in hostnames:
        hostnames.append(host)
    try:
        identity = write_tls_identity(directory, hostnames)
    except OSError as error:
        raise ConfigurationError(
            f"--tls-dir: cannot write {directory}: {error.strerror}"
        ) from error
    logger.info("tls identity generated cert=%s", identity.cert_path)
    return identity


def _check_tls_identity(identity: TlsIdentity) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(identity.cert_path, identity.key_path)
    except (OSError, ssl.SSLError) as error:
        raise ConfigurationError(
            f"--tls-dir: {identity.cert_path.name} and {identity.key_path.name} "
            "are not a usable certificate and key"
        ) from error


def _signing_keys(specs: Sequence[str]) -> dict[str, tuple[str, bytes]]:
    keys: dict[str, tuple[str, bytes]] = {}
    for spec in specs:
        team_id, _, rest = spec.partition(":")
        key_id, _, path = rest.partition(":")
        if not (team_id and key_id and path):
            raise ConfigurationError(
                f"--signing-key must be TEAM_ID:KEY_ID:PATH, got {spec!r}"
            )
        if key_id in keys:
            raise ConfigurationError(f"--signing-key: key id {key_id} given twice")

        pem = _read(Path(path), "--signing-key")
        try:
            public_key = load_public_key(pem)
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:
            raise ConfigurationError(
                f"--signing-key: {path} holds no unencrypted P-256 key (public PEM "
                "or .p8)"
            ) from error
        keys[key_id] = (
            team_id,
            public_key.public_bytes(
                encoding=serialization.Encoding.PEM,
                format=serialization.PublicFormat.SubjectPublicKeyInfo,
            ),
        )
    return keys


def _revoked_keys(
    key_ids: Sequence[str], signing_keys: dict[str, tuple[str, bytes]]
) -> set[str]:
    for key_id in key_ids:
        if key_id not in signing_keys:
            raise ConfigurationError(
                f"--revoked-key: {key_id} is not the key id of a --signing-key"
            )
    return set(key_ids)


def _unregistered(path: Path | None) -> dict[str, int]:
    """The tokens of an unregistered file; a line without a time died at start."""
    if path is None:
        return {}
    text = _read(path, "--unregistered-file").decode("utf-8", "replace")
    started_ms = time.time_ns() // 1_000_000

    tokens: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        token, timestamp = fields[0], fields[1:]
        if len(fields) > 2 or not is_device_token(token):
            raise ConfigurationError(
                f"--unregistered-file: line {number} of {path} is not "
                "'hex_token [timestamp_ms]'"
            )
        if timestamp and not (timestamp[0].isascii() and timestamp[0].isdigit()):
            raise ConfigurationError(
                f"--unregistered-file: line {number} of {path} has a timestamp that "
                "is not whole milliseconds"
            )
        tokens[token] = int(timestamp[0]) if timestamp else started_ms
    return tokens


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigurationError(
            f"{option}: cannot read {path}: {error.strerror}"
        ) from error


def _write_ready_file(path: Path, port: int) -> None:
    # Written whole under another name first, so a waiting script never reads half.
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(f"{port}\n")
        os.replace(partial, path)
    except OSError as error:
        raise ConfigurationError(
            f"--ready-file: cannot write {path}: {error.strerror}"
        ) from error
    logger.info("ready file written path=%s port=%d", path, port)


if __name__ == "__main__":
    sys.exit(main())

"""The failure scenarios: each breaks one thing during a run and counts the damage."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import random
import secrets
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from chaos.figures import Figures, count_leaks, log_texts
from chaos.inputs import bad_inputs
from connector import stack
from connector.apns.reasons import LocalReason, Reason
from connector.events import NotificationRequest, Outcome, encoder
from connector.kafka.broker import LocalBroker
from connector.kafka.topics import ensure_topics
from connector.simulator.credentials import (
    write_certificate_authority,
    write_client_certificate,
    write_signing_key,
)
from connector.simulator.faults import Faults
from connector.simulator.received import ReceivedRequest
from connector.simulator.server import Simulator

BUNDLE_ID = "com.example.demo"
WAIT_S = 600


@dataclass
class Stage:
    """What every scenario runs on: a broker, the simulator and their credentials."""

    bootstrap: str
    credentials: stack.Credentials
    simulator: Simulator
    directory: Path
    runs: list[stack.Run] = field(default_factory=list)

    def kill_leftovers(self) -> None:
        for run in self.runs:
            run.kill_leftovers()

    async def new_run(self, name: str, bootstrap: str | None = None) -> stack.Run:
        folder = self.directory / name
        folder.mkdir(parents=True, exist_ok=True)
        run = stack.Run(
            bootstrap or self.bootstrap,
            folder,
            self.credentials,
            self.simulator.port,
            BUNDLE_ID,
        )
        await ensure_topics(run.bootstrap, stack.topics(run.prefix))
        self.runs.append(run)
        return run


def valid_requests(count: int, tag: str) -> list[tuple[str, bytes, str]]:
    """(request id, record value, device token) for `count` deliverable requests."""
    requests = []
    for number in range(count):
        token = secrets.token_hex(32)
        request_id = f"{tag}-{number}"
        value = encoder.encode(
            NotificationRequest(
                id=request_id, device_token=token, topic=BUNDLE_ID, aps={"alert": "hi"}
            )
        )
        requests.append((request_id, value, token))
    return requests


async def wait_for_outcomes(run: stack.Run, at_least: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while await run.outcomes_written() < at_least:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {at_least} outcomes after {WAIT_S} s")
        await asyncio.sleep(0.1)


async def read_all(run: stack.Run, ids: Iterable[str]) -> stack.ReadBack:
    return await stack.read_outcomes(
        run.bootstrap, set(ids), topic=run.results, timeout_s=WAIT_S
    )


def leaks(run: stack.Run, read: stack.ReadBack, tokens: Iterable[str]) -> int:
    outcomes = [encoder.encode(o) for seen in read.outcomes.values() for o, _ in seen]
    return count_leaks(log_texts(run.directory) + outcomes, tokens)


def committed_ahead(
    committed: dict[int, int], outcomes: Iterable[list[tuple[Outcome, int]]]
) -> int:
    """Committed input offsets whose request has no outcome: must be 0."""
    done = {(o.partition, o.offset) for seen in outcomes for o, _ in seen}
    return sum(
        1
        for partition, position in committed.items()
        for offset in range(position)
        if (partition, offset) not in done
    )


async def sigkill(stage: Stage, *, requests: int, kills: int, seed: int) -> Figures:
    """SIGKILL the connector at random moments and restart it each time."""
    run = await stage.new_run("sigkill")
    records = valid_requests(requests, "kill")
    await run.produce([(rid, value) for rid, value, _ in records])

    marks = sorted(random.Random(seed).sample(range(requests // 10, requests), kills))
    connector = run.start_connector()
    for mark in marks:
        await wait_for_outcomes(run, mark)
        connector.kill()
        connector = run.start_connector()

    read = await read_all(run, (rid for rid, _, _ in records))
    # The last connector may have found nothing left to do; let it finish starting
    # so that SIGTERM meets its handler.
    await stack.wait_for_group(run.bootstrap, run.group)
    exit_code = connector.stop()
    committed = await run.committed()
    return Figures(
        "sigkill",
        requests,
        lost=read.missing(rid for rid, _, _ in records),
        duplicates=read.duplicates,
        leaked_secrets=leaks(run, read, (t for _, _, t in records)),
        details={
            "kills": kills,
            "exit": exit_code,
            "committed_ahead": committed_ahead(committed, read.outcomes.values()),
        },
    )


async def broker_outage(
    stage: Stage, *, requests: int, down_s: float, directory: Path
) -> Figures:
    """Stop the broker mid-run for `down_s` seconds; the connector rides it out."""
    with LocalBroker(directory / "outage-kafka") as broker:
        run = await stage.new_run("outage", bootstrap=broker.bootstrap)
        records = valid_requests(requests, "outage")
        await run.produce([(rid, value) for rid, value, _ in records])

        connector = run.start_connector()
        await wait_for_outcomes(run, requests // 3)
        await asyncio.to_thread(broker.restart, down_s)
        survived = connector.popen.poll() is None

        read = await read_all(run, (rid for rid, _, _ in records))
        still_running = connector.popen.poll() is None
        exit_code = connector.stop()
        committed = await run.committed()

    return Figures(
        "broker-outage",
        requests,
        lost=read.missing(rid for rid, _, _ in records),
        duplicates=read.duplicates,
        leaked_secrets=leaks(run, read, (t for _, _, t in records)),
        details={
            "down_s": down_s,
            "crashed": int(not (survived and still_running)),
            "exit": exit_code,
            "committed_ahead": committed_ahead(committed, read.outcomes.values()),
        },
    )


async def rebalance(stage: Stage, *, requests: int) -> Figures:
    """Two connectors in one group; a third joins, then one leaves."""
    run = await stage.new_run("rebalance")
    records = valid_requests(requests, "rebalance")
    await run.produce([(rid, value) for rid, value, _ in records])

    first, second = run.start_connector(), run.start_connector()
    await wait_for_outcomes(run, requests // 4)
    third = run.start_connector()
    await wait_for_outcomes(run, requests // 2)
    first.popen.send_signal(signal.SIGTERM)
    left = await asyncio.to_thread(first.popen.wait, 60)

    read = await read_all(run, (rid for rid, _, _ in records))
    exits = [left, second.stop(), third.stop()]
    return Figures(
        "rebalance",
        requests,
        lost=read.missing(rid for rid, _, _ in records),
        duplicates=read.duplicates,
        leaked_secrets=leaks(run, read, (t for _, _, t in records)),
        details={"connectors": 3, "exits": "/".join(map(str, exits))},
    )


async def bad_input(stage: Stage, *, count: int, seed: int) -> Figures:
    """Generated bad records: each gets exactly one rejected outcome."""
    run = await stage.new_run("bad-input")
    inputs = bad_inputs(count, seed)
    await run.produce(inputs)  # type: ignore[arg-type]
    good = valid_requests(10, "after-bad")
    await run.produce([(rid, value) for rid, value, _ in good])

    connector = run.start_connector()
    ids = [key for key, _ in inputs] + [rid for rid, _, _ in good]
    read = await read_all(run, ids)
    exit_code = connector.stop()

    statuses = {
        o.status.value for key, _ in inputs for o, _ in read.outcomes.get(key, [])
    }
    delivered_after = sum(
        1
        for rid, _, _ in good
        if [o.status.value for o, _ in read.outcomes.get(rid, [])] == ["delivered"]
    )
    return Figures(
        "bad-input",
        count,
        lost=read.missing(ids),
        duplicates=read.duplicates,
        leaked_secrets=leaks(run, read, ()),
        details={
            "statuses": "/".join(sorted(statuses)),
            "good_after": delivered_after,
            "exit": exit_code,
        },
    )


# The apps of the credential-fault scenario beside the one that works, each with one
# fault of issue 8's: a key APNs does not know, a key Apple revoked, a client
# certificate past its date.
WRONG_KEY_APP = "com.example.broken"
REVOKED_KEY_APP = "com.example.revoked"
EXPIRED_CERTIFICATE_APP = "com.example.expired"
REVOKED_KEY_ID = "REVOKED001"
_EXPIRED_WARNING = "client certificate expired"


async def credential_fault(stage: Stage, *, requests: int) -> Figures:
    """Three apps with broken credentials (a wrong key, a revoked key, an expired
    certificate) beside one that works: each broken app's requests fail at once
    with a configuration reason, the working app keeps flowing."""
    run = await stage.new_run("credentials")
    run.config.write_text(run.config.read_text() + _broken_apps(stage, run))
    expired_on = _expired_certificate(run).not_valid_after_utc

    apps = (BUNDLE_ID, WRONG_KEY_APP, REVOKED_KEY_APP, EXPIRED_CERTIFICATE_APP)
    by_app = {app: _requests_for(app, requests) for app in apps}
    mixed = [record for records in zip(*by_app.values()) for record in records]
    await run.produce([(rid, value) for rid, value, _ in mixed])

    started = time.monotonic()
    connector = run.start_connector()
    read = await read_all(run, (rid for rid, _, _ in mixed))
    minutes = max(time.monotonic() - started, 1.0) / 60
    exit_code = connector.stop()

    def first(app: str) -> list[Outcome | None]:
        return [
            seen[0][0] if (seen := read.outcomes.get(rid)) else None
            for rid, _, _ in by_app[app]
        ]

    def sent(*broken: str) -> list[ReceivedRequest]:
        paths = {f"/3/device/{t}" for app in broken for _, _, t in by_app[app]}
        return [r for r in stage.simulator.received if r.path in paths]

    broken = [o for app in apps[1:] for o in first(app) if o is not None]
    token_apps = sent(WRONG_KEY_APP, REVOKED_KEY_APP)
    return Figures(
        "credential-fault",
        len(mixed),
        lost=read.missing(rid for rid, _, _ in mixed),
        duplicates=read.duplicates,
        leaked_secrets=leaks(run, read, (t for _, _, t in mixed)),
        details={
            "good_delivered": _count(first(BUNDLE_ID), "delivered", None),
            "wrong_key_failed": _count(
                first(WRONG_KEY_APP), "failed", Reason.INVALID_PROVIDER_TOKEN
            ),
            "revoked_key_failed": _count(
                first(REVOKED_KEY_APP), "failed", Reason.INVALID_PROVIDER_TOKEN
            ),
            "expired_certificate_failed": _count(
                first(EXPIRED_CERTIFICATE_APP),
                "failed",
                LocalReason.CERTIFICATE_EXPIRED,
            ),
            "broken_max_attempts": max((o.attempts for o in broken), default=0),
            "broken_retriable": sum(1 for o in broken if o.retriable),
            "broken_connections_per_min": round(
                len({r.connection_id for r in token_apps}) / minutes, 1
            ),
            "expired_certificate_sent": len(sent(EXPIRED_CERTIFICATE_APP)),
            "expired_warnings": _expired_warnings(run, expired_on),
            "exit": exit_code,
        },
    )


def _broken_apps(stage: Stage, run: stack.Run) -> str:
    """The settings of the three broken apps; their keys and certificate written."""
    wrong_key = run.directory / "AuthKey_wrong.p8"
    write_signing_key(wrong_key)
    revoked_key = run.directory / f"AuthKey_{REVOKED_KEY_ID}.p8"
    stage.simulator.add_signing_key(
        REVOKED_KEY_ID, stack.TEAM_ID, write_signing_key(revoked_key)
    )
    stage.simulator.revoke_key(REVOKED_KEY_ID)
    authority = write_certificate_authority(run.directory / "client-ca")
    certificate = write_client_certificate(
        authority,
        run.directory / "expired",
        EXPIRED_CERTIFICATE_APP,
        valid_for=-datetime.timedelta(days=1),
    )
    where = f"""host = "127.0.0.1"
port = {stage.simulator.port}
ca_file = "{stage.credentials.cert_file}"
"""
    return f"""
[[apps]]
bundle_id = "{WRONG_KEY_APP}"
environment = "sandbox"
key_file = "{wrong_key}"
key_id = "{stack.KEY_ID}"
team_id = "{stack.TEAM_ID}"
{where}
[[apps]]
bundle_id = "{REVOKED_KEY_APP}"
environment = "sandbox"
key_file = "{revoked_key}"
key_id = "{REVOKED_KEY_ID}"
team_id = "{stack.TEAM_ID}"
{where}
[[apps]]
bundle_id = "{EXPIRED_CERTIFICATE_APP}"
environment = "sandbox"
auth = "certificate"
certificate_file = "{certificate.p12_path}"
certificate_password_file = "{certificate.password_path}"
{where}"""


def _expired_certificate(run: stack.Run) -> x509.Certificate:
    return x509.load_pem_x509_certificate(
        (run.directory / "expired" / "cert.pem").read_bytes()
    )


def _requests_for(app: str, count: int) -> list[tuple[str, bytes, str]]:
    records = []
    for number in range(count):
        token, request_id = secrets.token_hex(32), f"{app}-{number}"
        request = NotificationRequest(
            id=request_id, device_token=token, topic=app, aps={"alert": "hi"}
        )
        records.append((request_id, encoder.encode(request), token))
    return records


def _count(outcomes: list[Outcome | None], status: str, reason: str | None) -> int:
    return sum(
        1
        for o in outcomes
        if o is not None and (o.status.value, o.reason) == (status, reason)
    )


def _expired_warnings(run: stack.Run, expired_on: datetime.datetime) -> int:
    """Warnings in the connector's log naming the expired app and its expiry date."""
    found = 0
    for text in log_texts(run.directory):
        for line in text.splitlines():
            if _EXPIRED_WARNING.encode() not in line:
                continue
            fields = json.loads(line)
            found += (
                fields.get("level") == "WARNING"
                and fields.get("app") == EXPIRED_CERTIFICATE_APP
                and fields.get("not_valid_after") == expired_on.isoformat()
            )
    return found


async def apns_faults(stage: Stage, *, requests: int) -> Figures:
    """APNs misbehaves during the run: refused streams, GOAWAYs, dropped and stalled
    connections, the stream limit cut to 1, and tokens answered 500, 503 or 429."""
    run = await stage.new_run("apns-faults")
    records = valid_requests(requests, "faults")
    # Every 25th request is answered with a retriable error, whatever it tries.
    troubled = {
        token: reason
        for (_, _, token), reason in zip(
            records[::25], itertools.cycle(_RETRIABLE_ANSWERS), strict=False
        )
    }
    for token, reason in troubled.items():
        stage.simulator.inject(token, reason)
    await run.produce([(rid, value) for rid, value, _ in records])

    simulator = stage.simulator
    simulator.faults = Faults(refuse_every=97, goaway_every=499, drop_every=1499)
    connector = run.start_connector()
    try:
        await wait_for_outcomes(run, requests // 4)
        simulator.announce_stream_limit(1)
        await asyncio.sleep(2)
        simulator.announce_stream_limit(1000)
        await wait_for_outcomes(run, requests // 2)
        simulator.faults.stall = True
        await asyncio.sleep(3)
        simulator.faults.stall = False
        simulator.drop_connections()
        read = await read_all(run, (rid for rid, _, _ in records))
    finally:
        simulator.faults = Faults()
    exit_code = connector.stop()

    first = {rid: seen[0][0] for rid, seen in read.outcomes.items()}
    troubled_ids = {rid for rid, _, token in records if token in troubled}
    return Figures(
        "apns-faults",
        requests,
        lost=read.missing(rid for rid, _, _ in records),
        duplicates=read.duplicates,
        leaked_secrets=leaks(run, read, (t for _, _, t in records)),
        details={
            "delivered": sum(
                1
                for rid, o in first.items()
                if rid not in troubled_ids and o.status.value == "delivered"
            ),
            "failed_retriable": sum(
                1
                for rid in troubled_ids
                if rid in first and first[rid].status.value == "failed"
            ),
            "max_attempts": max((o.attempts for o in first.values()), default=0),
            "exit": exit_code,
        },
    )


_RETRIABLE_ANSWERS = (
    Reason.INTERNAL_SERVER_ERROR,
    Reason.SERVICE_UNAVAILABLE,
    Reason.TOO_MANY_REQUESTS,
)

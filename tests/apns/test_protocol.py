"""Apple's protocol end to end: one table of requests through the real broker, the
connector as its own process, and the simulator over TLS HTTP/2.

Every push type, every reason Apple gives, each way to authenticate and each rule the
connector applies before sending has a row. The rows run together in one connector
run; each row's test asserts its exact outcome, its invalid-token event (or that there
is none), and the headers and body the simulator received (or that nothing was sent).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from connector import stack
from connector.apns.notification import APNS_ID_NAMESPACE
from connector.apns.push_types import PushType
from connector.apns.reasons import REASON_STATUS, Reason, Verdict, classify
from connector.kafka.topics import ensure_topics
from connector.redaction import token_digest
from connector.simulator.credentials import (
    write_certificate_authority,
    write_client_certificate,
    write_signing_key,
)
from connector.simulator.received import ReceivedRequest
from connector.simulator.server import Simulator

TOKEN_APP = "com.example.token"
P12_APP = "com.example.p12"
PEM_APP = "com.example.pem"
COMBINED_PEM_APP = "com.example.combined"
# Token auth with a key Apple does not know: every request is InvalidProviderToken.
FORGED_APP = "com.example.forged"
# A certificate issued for another app: TopicDisallowed.
WRONG_CERT_APP = "com.example.wrongcert"
# An app Apple's side does not list: BadTopic.
UNLISTED_APP = "com.example.unlisted"
CERTIFICATE_APPS = (P12_APP, PEM_APP, COMBINED_PEM_APP, WRONG_CERT_APP)
LISTED = (TOKEN_APP, P12_APP, PEM_APP, COMBINED_PEM_APP, FORGED_APP, WRONG_CERT_APP)
MAX_ATTEMPTS = 2
DIED_AT_MS = 1_700_000_000_123
FAR_FUTURE = 4_102_444_800  # 2100-01-01


def device_token(case_id: str) -> str:
    return hashlib.sha256(case_id.encode()).hexdigest()


def apns_id(case_id: str) -> str:
    return str(uuid.uuid5(APNS_ID_NAMESPACE, case_id))


@dataclass(frozen=True)
class Case:
    """One request and everything that must come of it."""

    id: str
    request: dict[str, Any]
    outcome: dict[str, Any]
    # The apns-* headers and the body the simulator must receive, `sends` times; None
    # when nothing may reach it.
    headers: dict[str, str] | None = None
    body: bytes | None = None
    sends: int = 0
    invalid_token: dict[str, Any] | None = None
    inject: Reason | None = None
    died_at_ms: int | None = None
    # The raw record, for requests that must not decode.
    raw: bytes | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)


def request(case_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": case_id,
        "device_token": device_token(case_id),
        "topic": TOKEN_APP,
        **fields,
    }


def sent_headers(
    case_id: str, push_type: str, topic: str, **extra: str
) -> dict[str, str]:
    headers = {
        "apns-push-type": push_type,
        "apns-topic": topic,
        "apns-id": apns_id(case_id),
    }
    headers.update({f"apns-{name.replace('_', '-')}": v for name, v in extra.items()})
    return headers


def outcome_of(req: dict[str, Any], **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "request_id": req["id"],
        "status": "delivered",
        "reason": None,
        "http_status": None,
        "apns_id": None,
        "attempts": 0,
        "detail": None,
        "invalidated_at_ms": None,
        "possible_environment_mismatch": False,
        "topic": req.get("topic"),
        "push_type": req.get("push_type", "alert"),
        "token_digest": token_digest(req["device_token"]),
    }
    base.update(fields)
    return base


def delivered(
    case_id: str,
    fields: dict[str, Any],
    headers: dict[str, str],
    body: bytes,
    token: str | None = None,
) -> Case:
    req = request(case_id, **fields)
    if token is not None:
        req["device_token"] = token
    return Case(
        id=case_id,
        request=req,
        outcome=outcome_of(req, http_status=200, apns_id=apns_id(case_id), attempts=1),
        headers=headers,
        body=body,
        sends=1,
    )


def refused_locally(
    case_id: str,
    fields: dict[str, Any],
    reason: str,
    detail: str,
    *,
    token: str | None = None,
) -> Case:
    req = request(case_id, **fields)
    if token is not None:
        req["device_token"] = token
    invalid = None
    if reason == "BadDeviceToken":
        invalid = {
            "device_token": req["device_token"],
            "topic": req["topic"],
            "reason": reason,
            "invalidated_at_ms": None,
            "found_locally": True,
            "request_id": case_id,
            "possible_environment_mismatch": False,
        }
    return Case(
        id=case_id,
        request=req,
        outcome=outcome_of(req, status="rejected", reason=reason, detail=detail),
        invalid_token=invalid,
        reasons=(reason,),
    )


def answered(reason: Reason, *, app: str = TOKEN_APP, inject: bool = True) -> Case:
    """A push Apple answers with `reason`: injected for its token, or caused."""
    case_id = f"reason-{reason.value}"
    req = request(case_id, topic=app, alert="hi")
    status = REASON_STATUS[reason]
    verdict = classify(status, reason.value)
    retried = verdict is Verdict.RETRIABLE
    # The connection answered ExpiredProviderToken is replaced and the push resent
    # once on a new one, within each attempt.
    per_attempt = 2 if reason is Reason.EXPIRED_PROVIDER_TOKEN else 1
    attempts = MAX_ATTEMPTS if retried else 1
    mismatch = reason is Reason.BAD_DEVICE_TOKEN
    died_at = DIED_AT_MS if status == 410 else None
    outcome = outcome_of(
        req,
        status={
            Verdict.PERMANENT: "rejected",
            Verdict.TOKEN_INVALID: "rejected",
            Verdict.CONFIGURATION: "failed",
            Verdict.RETRIABLE: "failed",
        }[verdict],
        reason=reason.value,
        http_status=status,
        apns_id=apns_id(case_id),
        attempts=attempts,
        invalidated_at_ms=died_at,
        possible_environment_mismatch=mismatch,
        detail=(
            "device_token: Apple says it is not a token of this app's environment; "
            "it may belong to the other one (sandbox or production)"
            if mismatch
            else None
        ),
    )
    invalid = None
    if verdict is Verdict.TOKEN_INVALID:
        invalid = {
            "device_token": req["device_token"],
            "topic": app,
            "reason": reason.value,
            "invalidated_at_ms": died_at,
            "found_locally": False,
            "request_id": case_id,
            "possible_environment_mismatch": mismatch,
        }
    return Case(
        id=case_id,
        request=req,
        outcome=outcome,
        headers=sent_headers(case_id, "alert", app),
        body=b'{"aps":{"alert":"hi"}}',
        sends=attempts * per_attempt,
        invalid_token=invalid,
        inject=reason if inject else None,
        died_at_ms=died_at,
        reasons=(reason.value,),
    )


ALERT_FIELDS: dict[str, Any] = {
    "alert": {"title": "Shipped", "subtitle": "Order 4711", "body": "On its way"},
    "badge": 1,
    "sound": "default",
    "thread_id": "orders",
    "interruption_level": "time-sensitive",
}
ALERT_BODY = (
    b'{"order":4711,"aps":{"alert":{"title":"Shipped","subtitle":"Order 4711",'
    b'"body":"On its way"},"badge":1,"sound":"default","thread-id":"orders",'
    b'"interruption-level":"time-sensitive"}}'
)
READY_APS = {
    "alert": {"title": "Shipped", "subtitle": "Order 4711", "body": "On its way"},
    "badge": 1,
    "sound": "default",
    "thread-id": "orders",
    "interruption-level": "time-sensitive",
}
LIVE_FIELDS: dict[str, Any] = {
    "timestamp": 1_767_225_600,
    "event": "update",
    "content_state": {"home": 1, "away": 0},
    "relevance_score": 75,
}
LIVE_BODY = (
    b'{"aps":{"relevance-score":75,"timestamp":1767225600,"event":"update",'
    b'"content-state":{"home":1,"away":0}}}'
)
T = TOKEN_APP

PUSH_TYPES = [
    delivered(
        "alert",
        {**ALERT_FIELDS, "data": {"order": 4711}},
        sent_headers("alert", "alert", T),
        ALERT_BODY,
    ),
    delivered(
        "alert-ready-aps",
        {"aps": READY_APS, "data": {"order": 4711}},
        sent_headers("alert-ready-aps", "alert", T),
        ALERT_BODY,
    ),
    delivered(
        "background",
        {"push_type": "background", "content_available": 1},
        sent_headers("background", "background", T, priority="5"),
        b'{"aps":{"content-available":1}}',
    ),
    delivered(
        "voip",
        {"push_type": "voip", "topic": f"{T}.voip", "data": {"caller": "Ann"}},
        sent_headers("voip", "voip", f"{T}.voip"),
        b'{"caller":"Ann"}',
    ),
    delivered(
        "complication",
        {"push_type": "complication", "data": {"score": "2-1"}},
        sent_headers("complication", "complication", f"{T}.complication"),
        b'{"score":"2-1"}',
    ),
    delivered(
        "fileprovider",
        {"push_type": "fileprovider", "data": {"container-identifier": "root"}},
        sent_headers("fileprovider", "fileprovider", f"{T}.pushkit.fileprovider"),
        b'{"container-identifier":"root"}',
    ),
    delivered(
        "mdm",
        {"push_type": "mdm", "data": {"mdm": "push-magic"}},
        sent_headers("mdm", "mdm", T),
        b'{"mdm":"push-magic"}',
    ),
    delivered(
        "location",
        {"push_type": "location"},
        sent_headers("location", "location", f"{T}.location-query"),
        b'{"aps":{}}',
    ),
    delivered(
        "liveactivity",
        {"push_type": "liveactivity", **LIVE_FIELDS},
        sent_headers("liveactivity", "liveactivity", f"{T}.push-type.liveactivity"),
        LIVE_BODY,
    ),
    delivered(
        "liveactivity-start",
        {
            "push_type": "liveactivity",
            "topic": f"{T}.push-type.liveactivity",
            "alert": {"title": "Kick-off"},
            "timestamp": 1_767_225_000,
            "event": "start",
            "content_state": {"home": 0, "away": 0},
            "attributes_type": "MatchAttributes",
            "attributes": {"match": "A-B"},
        },
        sent_headers(
            "liveactivity-start", "liveactivity", f"{T}.push-type.liveactivity"
        ),
        b'{"aps":{"alert":{"title":"Kick-off"},"timestamp":1767225000,'
        b'"event":"start","content-state":{"home":0,"away":0},'
        b'"attributes-type":"MatchAttributes","attributes":{"match":"A-B"}}}',
    ),
    delivered(
        "pushtotalk",
        {"push_type": "pushtotalk", "data": {"speaker": "Ann"}},
        sent_headers("pushtotalk", "pushtotalk", f"{T}.voip-ptt"),
        b'{"speaker":"Ann"}',
    ),
    delivered(
        "widgets",
        {"push_type": "widgets", "content_changed": True},
        sent_headers("widgets", "widgets", f"{T}.push-type.widgets"),
        b'{"aps":{"content-changed":true}}',
    ),
    delivered(
        "controls",
        {"push_type": "controls", "content_changed": True},
        sent_headers("controls", "controls", T),
        b'{"aps":{"content-changed":true}}',
    ),
]

HEADERS_AND_SIZES = [
    delivered(
        "expiration-zero",
        {"alert": "once", "expiration": 0},
        sent_headers("expiration-zero", "alert", T, expiration="0"),
        b'{"aps":{"alert":"once"}}',
    ),
    delivered(
        "expiration-future",
        {"alert": "later", "expiration": FAR_FUTURE, "priority": 5},
        sent_headers(
            "expiration-future", "alert", T, expiration=str(FAR_FUTURE), priority="5"
        ),
        b'{"aps":{"alert":"later"}}',
    ),
    delivered(
        "priority-1-and-collapse-id-of-64-bytes",
        {"alert": "x", "priority": 1, "collapse_id": "€" * 21 + "x"},
        sent_headers(
            "priority-1-and-collapse-id-of-64-bytes",
            "alert",
            T,
            priority="1",
            collapse_id="€" * 21 + "x",
        ),
        b'{"aps":{"alert":"x"}}',
    ),
    delivered(
        "non-ascii-sent-raw",
        {"alert": "Grüße 👋", "priority": 10},
        sent_headers("non-ascii-sent-raw", "alert", T, priority="10"),
        '{"aps":{"alert":"Grüße 👋"}}'.encode(),
    ),
    # {"aps":{"alert":"..."}} is 20 bytes around the text; "é" is two bytes.
    delivered(
        "alert-of-4096-bytes",
        {"alert": "é" * 2038},
        sent_headers("alert-of-4096-bytes", "alert", T),
        ('{"aps":{"alert":"' + "é" * 2038 + '"}}').encode(),
    ),
    delivered(
        "voip-of-5120-bytes",
        {"push_type": "voip", "alert": "x" * 5100},
        sent_headers("voip-of-5120-bytes", "voip", f"{T}.voip"),
        ('{"aps":{"alert":"' + "x" * 5100 + '"}}').encode(),
    ),
    delivered(
        "token-normalised",
        {"alert": "hi"},
        sent_headers("token-normalised", "alert", T),
        b'{"aps":{"alert":"hi"}}',
        token="<" + " ".join(["ABCDEF01"] * 8) + ">",
    ),
]

LOCAL_RULES = [
    refused_locally(
        "alert-of-4097-bytes",
        {"alert": "é" * 2038 + "x"},
        "PayloadTooLarge",
        "payload: 4097 bytes, over the 4096-byte limit for alert",
    ),
    refused_locally(
        "voip-of-5121-bytes",
        {"push_type": "voip", "alert": "x" * 5101},
        "PayloadTooLarge",
        "payload: 5121 bytes, over the 5120-byte limit for voip",
    ),
    refused_locally(
        "collapse-id-of-65-bytes",
        {"alert": "x", "collapse_id": "€" * 21 + "xy"},
        "BadCollapseId",
        "collapse_id: at most 64 bytes of UTF-8",
    ),
    refused_locally(
        "background-at-priority-10",
        {"push_type": "background", "content_available": 1, "priority": 10},
        "BadPriority",
        "priority: a background push must not use 10",
    ),
    refused_locally(
        "priority-7",
        {"alert": "x", "priority": 7},
        "BadPriority",
        "priority: must be 1, 5 or 10",
    ),
    refused_locally(
        "negative-expiration",
        {"alert": "x", "expiration": -5},
        "BadExpirationDate",
        "expiration: must be UNIX seconds, 0 or more",
    ),
    refused_locally(
        "token-not-hex",
        {"alert": "x"},
        "BadDeviceToken",
        "device_token: must be hex of even length",
        token="not-a-token",
    ),
    refused_locally(
        "token-of-odd-length",
        {"alert": "x"},
        "BadDeviceToken",
        "device_token: must be hex of even length",
        token="abc",
    ),
    refused_locally(
        "typed-and-ready-aps",
        {"alert": "x", "aps": {"badge": 1}},
        "InvalidPayload",
        "aps: give either the aps dictionary or typed fields "
        "(alert, badge, sound, ...), not both",
    ),
    refused_locally(
        "background-with-an-alert",
        {"push_type": "background", "aps": {"content-available": 1, "alert": "x"}},
        "InvalidPayload",
        "aps.alert: not allowed in a background push",
    ),
    refused_locally(
        "liveactivity-without-event",
        {"push_type": "liveactivity", "timestamp": 1},
        "InvalidPayload",
        "event: required in a liveactivity push",
    ),
    refused_locally(
        "widgets-without-content-changed",
        {"push_type": "widgets"},
        "InvalidPayload",
        "content_changed: a widgets push needs true",
    ),
    refused_locally(
        "unknown-topic",
        {"alert": "x", "topic": "com.example.nowhere.voip", "push_type": "voip"},
        "UnknownTopic",
        "topic: no app is configured for 'com.example.nowhere'",
    ),
]

EXPIRED_REQUEST = request("expired", alert="too late", expiration=1)
UNDECODABLE = (
    b'{"id": "badge-below-zero", "device_token": "ab", "topic": "t", "badge": -1}'
)
OTHER_LOCAL = [
    Case(
        id="expired",
        request=EXPIRED_REQUEST,
        outcome=outcome_of(
            EXPIRED_REQUEST,
            status="expired",
            reason="Expired",
            apns_id=apns_id("expired"),
            detail="expiration: 1 passed before sending",
        ),
        reasons=("Expired",),
    ),
    Case(
        id="badge-below-zero",
        request={},
        raw=UNDECODABLE,
        outcome={
            **outcome_of(
                {"id": "badge-below-zero", "device_token": ""},
                status="rejected",
                reason="MalformedRequest",
                detail="invalid request: Expected `int` >= 0 - at `$.badge`",
            ),
            "topic": None,
            "push_type": None,
            "token_digest": None,
        },
        reasons=("MalformedRequest",),
    ),
]

AUTH_MODES = [
    delivered(
        f"certificate-{name}",
        {"alert": "hi", "topic": app},
        sent_headers(f"certificate-{name}", "alert", app),
        b'{"aps":{"alert":"hi"}}',
    )
    for name, app in (
        ("p12", P12_APP),
        ("pem", PEM_APP),
        ("combined", COMBINED_PEM_APP),
    )
]

# Caused for real where the simulator can: a forged key, a certificate for another
# app, an app Apple does not list, a token registered dead.
CAUSED = {
    Reason.INVALID_PROVIDER_TOKEN: FORGED_APP,
    Reason.TOPIC_DISALLOWED: WRONG_CERT_APP,
    Reason.BAD_TOPIC: UNLISTED_APP,
    Reason.UNREGISTERED: TOKEN_APP,
}
REASONS = [
    answered(reason, app=CAUSED.get(reason, TOKEN_APP), inject=reason not in CAUSED)
    for reason in Reason
]

CASES = (
    PUSH_TYPES + HEADERS_AND_SIZES + LOCAL_RULES + OTHER_LOCAL + AUTH_MODES + REASONS
)


@dataclass
class Observed:
    """What one connector run produced, by request id."""

    outcomes: dict[str, dict[str, Any]]
    invalid_tokens: dict[str, dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    received: dict[str, list[ReceivedRequest]]
    exit_code: int
    log: str


def write_config(path: Path, run: dict[str, Any]) -> Path:
    apps = "".join(
        f"""
[[apps]]
bundle_id = "{bundle_id}"
environment = "sandbox"
host = "127.0.0.1"
port = {run["port"]}
ca_file = "{run["ca_file"]}"
{settings}"""
        for bundle_id, settings in run["apps"].items()
    )
    prefix = run["prefix"]
    path.write_text(
        f"""[kafka]
bootstrap = "{run["bootstrap"]}"
group_id = "group-{prefix}"
requests_topic = "{prefix}apns.requests"
results_topic = "{prefix}apns.results"
invalid_tokens_topic = "{prefix}apns.invalid-tokens"
dlq_topic = "{prefix}apns.requests.dlq"

[delivery]
max_attempts = {MAX_ATTEMPTS}
retry_backoff_s = 0.01
request_timeout_s = 5
drain_timeout_s = 10

[telemetry]
http_port = 0
{apps}"""
    )
    return path


def token_app(key_file: Path) -> str:
    return (
        f'key_file = "{key_file}"\nkey_id = "{stack.KEY_ID}"\n'
        f'team_id = "{stack.TEAM_ID}"\n'
    )


def certificate_app(
    certificate: Path, key: Path | None = None, password: Path | None = None
) -> str:
    lines = f'auth = "certificate"\ncertificate_file = "{certificate}"\n'
    if key is not None:
        lines += f'certificate_key_file = "{key}"\n'
    if password is not None:
        lines += f'certificate_password_file = "{password}"\n'
    return lines


async def read_all(
    bootstrap: str, topic: str, count: int, timeout_s: float
) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(values) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(msgspec.json.decode(r.value) for r in records)
    finally:
        await consumer.stop()
    return values


@pytest.fixture(scope="module")
async def observed(
    kafka_bootstrap: str,
    credentials: stack.Credentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Observed]:
    directory = tmp_path_factory.mktemp("protocol")
    authority = write_certificate_authority(directory / "ca")
    issued = write_client_certificate(authority, directory / "cert", P12_APP)
    pem = write_client_certificate(authority, directory / "pem", PEM_APP, rsa_key=True)
    combined = write_client_certificate(
        authority, directory / "combined", COMBINED_PEM_APP
    )
    elsewhere = write_client_certificate(
        authority, directory / "elsewhere", "com.example.elsewhere"
    )
    write_signing_key(directory / "AuthKey_forged.p8")

    simulator = Simulator(
        tls=credentials.tls,
        signing_keys=credentials.signing_keys,
        topics=LISTED,
        client_ca=authority.cert_path,
        strict_tokens=True,
    )
    for case in CASES:
        token = case.request.get("device_token", "")
        if case.died_at_ms is not None:
            simulator.register_unregistered(token, case.died_at_ms)
        if case.inject is not None:
            simulator.inject(token, case.inject)

    async with simulator:
        prefix = f"t{uuid.uuid4().hex[:8]}."
        await ensure_topics(kafka_bootstrap, stack.topics(prefix))
        config = write_config(
            directory / "connector.toml",
            {
                "bootstrap": kafka_bootstrap,
                "prefix": prefix,
                "port": simulator.port,
                "ca_file": credentials.cert_file,
                "apps": {
                    TOKEN_APP: token_app(credentials.key_file),
                    P12_APP: certificate_app(
                        issued.p12_path, password=issued.password_path
                    ),
                    PEM_APP: certificate_app(pem.cert_path, key=pem.key_path),
                    COMBINED_PEM_APP: certificate_app(combined.combined_path),
                    FORGED_APP: token_app(directory / "AuthKey_forged.p8"),
                    WRONG_CERT_APP: certificate_app(elsewhere.combined_path),
                    UNLISTED_APP: token_app(credentials.key_file),
                },
            },
        )

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for case in CASES:
                value = case.raw or msgspec.json.encode(case.request)
                await producer.send_and_wait(
                    prefix + "apns.requests", value, key=case.id.encode()
                )
        finally:
            await producer.stop()

        connector = stack.start_connector(config, directory)
        try:
            outcomes = await read_all(
                kafka_bootstrap, prefix + "apns.results", len(CASES), 120
            )
            expected_events = sum(1 for c in CASES if c.invalid_token is not None)
            events = await read_all(
                kafka_bootstrap, prefix + "apns.invalid-tokens", expected_events, 30
            )
            dead = await read_all(kafka_bootstrap, prefix + "apns.requests.dlq", 1, 30)
            # Anything sent late would show here too.
            await asyncio.sleep(0.5)
        finally:
            exit_code = await asyncio.to_thread(connector.stop)

    received: dict[str, list[ReceivedRequest]] = {}
    for r in simulator.received:
        received.setdefault(r.apns_id, []).append(r)
    yield Observed(
        outcomes={o["request_id"]: o for o in outcomes},
        invalid_tokens={e["request_id"]: e for e in events},
        dead_letters=dead,
        received=received,
        exit_code=exit_code,
        log=connector.log_tail(40),
    )


OUTCOME_FIELDS = (
    "request_id",
    "status",
    "reason",
    "http_status",
    "apns_id",
    "attempts",
    "detail",
    "invalidated_at_ms",
    "possible_environment_mismatch",
    "topic",
    "push_type",
    "token_digest",
)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_each_request_ends_as_apple_and_the_rules_say(
    observed: Observed, case: Case
) -> None:
    outcome = observed.outcomes.get(case.id)
    assert outcome is not None, f"no outcome for {case.id}:\n{observed.log}"
    assert {name: outcome.get(name) for name in OUTCOME_FIELDS} == case.outcome
    assert observed.invalid_tokens.get(case.id) == (
        None if case.invalid_token is None else {**case.invalid_token, "v": 1}
    )

    received = observed.received.get(apns_id(case.id), [])
    assert len(received) == case.sends
    for request in received:
        apns_headers = {
            k: v for k, v in request.headers.items() if k.startswith("apns-")
        }
        assert apns_headers == case.headers
        assert request.body == case.body
        assert request.path == f"/3/device/{request.path.rsplit('/', 1)[1]}"
        _assert_credentials(case, request)


def _assert_credentials(case: Case, request: ReceivedRequest) -> None:
    topic = case.request["topic"]
    authorization = request.headers.get("authorization")
    if topic in CERTIFICATE_APPS:
        # The certificate spoke at the handshake; no token travels.
        assert authorization is None
        return
    assert authorization is not None and authorization.startswith("bearer ")
    jwt_text = authorization.removeprefix("bearer ")
    assert jwt.get_unverified_header(jwt_text)["kid"] == stack.KEY_ID
    assert (
        jwt.decode(jwt_text, options={"verify_signature": False})["iss"]
        == stack.TEAM_ID
    )


async def test_normalised_token_is_the_one_sent(observed: Observed) -> None:
    (sent,) = observed.received[apns_id("token-normalised")]
    assert sent.path == "/3/device/" + "abcdef01" * 8


async def test_the_table_covers_every_push_type_reason_and_auth_mode(
    observed: Observed,
) -> None:
    push_types = {c.request.get("push_type", "alert") for c in PUSH_TYPES}
    assert push_types == {p.value for p in PushType}
    covered = {reason for case in CASES for reason in case.reasons}
    assert {r.value for r in Reason} <= covered
    assert {"UnknownTopic", "MalformedRequest", "Expired", "InvalidPayload"} <= covered
    assert observed.dead_letters[0]["error"] == (
        "invalid request: Expected `int` >= 0 - at `$.badge`"
    )
    assert len(observed.outcomes) == len(CASES)
    assert observed.exit_code == 0, observed.log

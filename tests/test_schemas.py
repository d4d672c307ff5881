"""The contract in `schemas/`: the JSON Schemas match the types, describe the records
the connector really writes, and the AsyncAPI document is valid and points at them.

The AsyncAPI document is checked by the AsyncAPI Initiative's own parser
(`@asyncapi/parser` on Node.js, pinned in tests/asyncapi/package-lock.json and
installed once into the cache outside the clone); the payloads by `jsonschema`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from connector import schemas
from connector.errors import DecodeError
from connector.events import (
    DeadLetter,
    InvalidToken,
    NotificationRequest,
    Outcome,
    Status,
    Timings,
    decode_request,
    encoder,
)
from connector.kafka.broker import cache_dir
from connector.settings import KafkaSettings

ROOT = Path(__file__).parents[1]
SCHEMAS = ROOT / "schemas"
ASYNCAPI = SCHEMAS / "asyncapi.yaml"
VALIDATOR = Path(__file__).parent / "asyncapi"
VALIDATOR_FILES = ("package.json", "package-lock.json", "validate.mjs")
NPM_TIMEOUT_S = 600
NODE_TIMEOUT_S = 120


def validator_for(name: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def errors(name: str, instance: Any) -> list[str]:
    found = validator_for(name).iter_errors(instance)
    return sorted(error.message for error in found)


# The committed files and the types


@pytest.mark.parametrize("name", list(schemas.EVENTS))
def test_committed_schema_is_generated_from_the_type(name: str) -> None:
    committed = (SCHEMAS / f"{name}.schema.json").read_text()

    assert committed == schemas.render(schemas.EVENTS[name]), (
        f"schemas/{name}.schema.json differs from connector/events.py: run "
        "`make schemas` and commit the result"
    )


def test_schemas_holds_exactly_the_generated_files_and_the_asyncapi_document() -> None:
    assert sorted(path.name for path in SCHEMAS.iterdir()) == sorted(
        [f"{name}.schema.json" for name in schemas.EVENTS] + ["asyncapi.yaml"]
    )


@pytest.mark.parametrize("name", list(schemas.EVENTS))
def test_every_schema_is_valid_draft_07(name: str) -> None:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())

    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["title"] == schemas.EVENTS[name].__name__


# The schemas describe what is really written


def test_encoded_events_are_valid_against_their_schemas() -> None:
    events = {
        "notification-request": NotificationRequest(
            id="r1",
            device_token="ab" * 32,
            topic="com.example.demo",
            priority=10,
            alert="hi",
            badge=1,
            data={"order": 4711},
        ),
        "outcome": Outcome(
            request_id="r1",
            status=Status.REJECTED,
            reason="Unregistered",
            http_status=410,
            invalidated_at_ms=1,
            timings=Timings(requested_ms=1, consumed_ms=2, completed_ms=3),
        ),
        "invalid-token": InvalidToken(
            device_token="ab" * 32, topic="com.example.demo", reason="Unregistered"
        ),
        "dead-letter": DeadLetter(
            error="not JSON",
            topic="apns.requests",
            partition=0,
            offset=7,
            key=b"k",
            value=b"\xff{",
            headers=[("traceparent", b"00-ab-cd-01")],
        ),
    }
    for name, event in events.items():
        assert errors(name, json.loads(encoder.encode(event))) == [], name


def test_a_request_missing_a_field_or_with_a_wrong_value_is_invalid() -> None:
    assert errors("notification-request", {"id": "r1", "topic": "a"}) == [
        "'device_token' is a required property"
    ]
    assert errors(
        "notification-request",
        {"id": "r1", "device_token": "ab", "topic": "a", "push_type": "fax"},
    ) == [
        (
            "'fax' is not one of ['alert', 'background', 'complication', 'controls', "
            "'fileprovider', 'liveactivity', 'location', 'mdm', 'pushtotalk', 'voip', "
            "'widgets']"
        )
    ]
    assert errors(
        "dead-letter",
        {
            "error": "e",
            "topic": "t",
            "partition": 0,
            "offset": 0,
            "key": None,
            "value": None,
            "headers": [["traceparent", "AA==", "extra"]],
        },
    ) == [
        "Additional items are not allowed ('extra' was unexpected)",
        "['traceparent', 'AA==', 'extra'] is too long",
    ]


def test_the_readme_example_request_is_valid() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Requests", 1)[1]
    example = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert example is not None

    assert errors("notification-request", json.loads(example.group(1))) == []


# The AsyncAPI document


@pytest.fixture(scope="session")
def asyncapi_parser() -> Path:
    """validate.mjs with its pinned parser installed beside it, in the cache."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed to validate schemas/asyncapi.yaml")

    pinned = b"".join((VALIDATOR / name).read_bytes() for name in VALIDATOR_FILES)
    digest = hashlib.sha256(pinned).hexdigest()[:12]
    installed = cache_dir() / f"asyncapi-parser-{digest}"
    if not (installed / "node_modules" / "@asyncapi" / "parser").is_dir():
        # Installed aside and renamed, so an interrupted install is never used.
        cache_dir().mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".asyncapi-parser-"))
        for name in VALIDATOR_FILES:
            shutil.copy(VALIDATOR / name, staging / name)
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=staging,
            check=True,
            capture_output=True,
            timeout=NPM_TIMEOUT_S,
        )
        try:
            staging.rename(installed)
        except OSError:
            # Installed meanwhile by another run.
            shutil.rmtree(staging)
    return installed / "validate.mjs"


def parse(parser: Path, document: Path) -> tuple[int, list[dict[str, str]]]:
    """The parser's exit code and its diagnostics of the document."""
    ran = subprocess.run(
        ["node", str(parser), str(document)],
        check=False,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
    )
    assert ran.stderr == ""
    return ran.returncode, json.loads(ran.stdout)


def test_asyncapi_document_is_valid(asyncapi_parser: Path) -> None:
    code, diagnostics = parse(asyncapi_parser, ASYNCAPI)

    assert code == 0
    assert [d for d in diagnostics if d["severity"] in ("error", "warning")] == []


def test_the_parser_refuses_a_broken_document(
    asyncapi_parser: Path, tmp_path: Path
) -> None:
    # The same document with one payload pointing at a missing file and one
    # operation with an action AsyncAPI does not have.
    for path in SCHEMAS.iterdir():
        shutil.copy(path, tmp_path / path.name)
    broken = tmp_path / "asyncapi.yaml"
    text = ASYNCAPI.read_text()
    text = text.replace("./outcome.schema.json", "./missing.schema.json")
    text = text.replace("action: receive", "action: consume")
    broken.write_text(text)

    code, diagnostics = parse(asyncapi_parser, broken)

    assert code == 1
    assert sorted(
        (d["code"], d["path"]) for d in diagnostics if d["severity"] == "error"
    ) == [
        ("asyncapi-document-resolved", "operations/receiveRequest/action"),
        ("invalid-ref", "components/messages/outcome/payload/schema/$ref"),
    ]


def asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return document


def test_asyncapi_channels_are_the_four_topics_of_the_settings() -> None:
    kafka = KafkaSettings()
    channels = asyncapi()["channels"]

    assert {name: channel["address"] for name, channel in channels.items()} == {
        "requests": kafka.requests_topic,
        "results": kafka.results_topic,
        "invalidTokens": kafka.invalid_tokens_topic,
        "deadLetters": kafka.dlq_topic,
    }


def test_asyncapi_payloads_refer_to_the_generated_schemas() -> None:
    messages = asyncapi()["components"]["messages"]

    assert {
        message["name"]: message["payload"]["schema"]["$ref"]
        for message in messages.values()
    } == {
        event.__name__: f"./{name}.schema.json"
        for name, event in schemas.EVENTS.items()
    }
    assert {message["payload"]["schemaFormat"] for message in messages.values()} == {
        "application/schema+json;version=draft-07"
    }


def test_asyncapi_examples_are_valid_records() -> None:
    document = asyncapi()
    headers = jsonschema.Draft7Validator(
        document["components"]["schemas"]["traceHeaders"]
    )
    checked = 0
    for message in document["components"]["messages"].values():
        name = message["payload"]["schema"]["$ref"][2:].removesuffix(".schema.json")
        for example in message["examples"]:
            assert errors(name, example["payload"]) == [], example["name"]
            assert list(headers.iter_errors(example.get("headers", {}))) == []
            checked += 1

    assert checked == 5


def test_the_dead_letter_example_holds_the_bytes_it_describes() -> None:
    messages = asyncapi()["components"]["messages"]
    (example,) = messages["deadLetter"]["examples"]

    payload = example["payload"]
    value = base64.b64decode(payload["value"])
    with pytest.raises(DecodeError) as raised:
        decode_request(value)
    assert (value, payload["error"]) == (b"\xff{not json", str(raised.value))
    assert base64.b64decode(payload["key"]) == b"broken"

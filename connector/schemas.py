"""The JSON Schemas of the four events, generated from their msgspec types.

The types in `connector.events` are the contract; the files in `schemas/` are derived
from them here and never edited by hand (`make schemas` writes them again). They are
JSON Schema draft-07, the dialect AsyncAPI 3.0 names for payloads, so the AsyncAPI
document beside them can refer to each file as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from connector.events import DeadLetter, InvalidToken, NotificationRequest, Outcome

DIALECT = "http://json-schema.org/draft-07/schema#"
SUFFIX = ".schema.json"

# The name of each event's file, as the AsyncAPI document refers to it.
EVENTS: dict[str, type[msgspec.Struct]] = {
    "notification-request": NotificationRequest,
    "outcome": Outcome,
    "invalid-token": InvalidToken,
    "dead-letter": DeadLetter,
}


def schema(event: type[msgspec.Struct]) -> dict[str, Any]:
    """The draft-07 JSON Schema of one event type, its own type at the root."""
    (_, components) = msgspec.json.schema_components(
        [event], ref_template="#/definitions/{name}"
    )
    root = components.pop(event.__name__)
    document: dict[str, Any] = {"$schema": DIALECT, **_as_draft_07(root)}
    if components:
        document["definitions"] = {
            name: _as_draft_07(part) for name, part in sorted(components.items())
        }
    return document


def render(event: type[msgspec.Struct]) -> str:
    """The schema as the committed file holds it: indented, with a final newline."""
    return json.dumps(schema(event), indent=2, ensure_ascii=False) + "\n"


def write(directory: Path) -> list[Path]:
    """Write every event's schema file into `directory`; the paths written."""
    written = []
    for name, event in EVENTS.items():
        path = directory / f"{name}{SUFFIX}"
        path.write_text(render(event), encoding="utf-8")
        written.append(path)
    return written


def _as_draft_07(node: Any) -> Any:
    # msgspec speaks draft 2020-12, where a tuple is `prefixItems` and `items: false`
    # closes it; draft-07 says the same with `items` as a list and `additionalItems`.
    if isinstance(node, list):
        return [_as_draft_07(item) for item in node]
    if not isinstance(node, dict):
        return node

    converted = {key: _as_draft_07(value) for key, value in node.items()}
    if "prefixItems" in converted:
        closed = converted.pop("items", None) is False
        converted["items"] = converted.pop("prefixItems")
        if closed:
            converted["additionalItems"] = False
    return converted

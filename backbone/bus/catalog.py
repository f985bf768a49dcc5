"""The event catalogue as JSON Schema and AsyncAPI 3, generated from the declared types.

Generated, never hand-written, so the documentation cannot drift from the code;
a test compares the committed files with a fresh generation.
"""

from __future__ import annotations

from typing import Any

from backbone.bus.envelope import Envelope
from backbone.bus.streams import EventCatalog, EventType


def _message_name(event_type: EventType[Any]) -> str:
    return f"{event_type.domain}.{event_type.name}.v{event_type.version}"


def _producer_schema(base: dict[str, Any], event_type: EventType[Any]) -> dict[str, Any]:
    # The declared producers are part of the contract: consumers dead-letter the rest.
    return {
        **base,
        "enum": list(event_type.producers),
        "description": "Declared producers; consumers dead-letter any other (unknown_producer).",
    }


def json_schemas(catalog: EventCatalog) -> dict[str, dict[str, Any]]:
    """One JSON Schema per stream: the envelope with `data` replaced by the event's model."""
    envelope = Envelope.model_json_schema()
    out: dict[str, dict[str, Any]] = {}
    for et in catalog:
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": et.stream_key,
            "description": et.description,
            **envelope,
        }
        data = et.model.model_json_schema()
        props = dict(schema["properties"])
        props["type"] = {**props["type"], "const": et.type}
        props["version"] = {**props["version"], "const": et.version}
        props["producer"] = _producer_schema(props["producer"], et)
        props["data"] = data
        schema["properties"] = props
        out[et.stream_key] = schema
    return out


def asyncapi_document(catalog: EventCatalog, *, title: str, version: str) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Envelope": Envelope.model_json_schema()}
    for et in catalog:
        name = _message_name(et)
        data = et.model.model_json_schema(ref_template="#/components/schemas/{model}")
        for def_name, definition in data.pop("$defs", {}).items():
            schemas[def_name] = definition
        schemas[et.model.__name__] = data
        messages[name] = {
            "name": name,
            "title": et.stream_key,
            "summary": et.description,
            "contentType": "application/json",
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/Envelope"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": et.type},
                            "version": {"const": et.version},
                            "producer": _producer_schema({}, et),
                            "data": {"$ref": f"#/components/schemas/{et.model.__name__}"},
                        },
                    },
                ]
            },
        }
        channels[name] = {
            "address": et.stream_key,
            "description": (
                f"Redis stream `{et.stream_key}`; each entry has one field, `envelope`, "
                f"holding the JSON envelope. Dead letters go to `{et.stream.dead_letter}`."
            ),
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"publish.{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": (
                f"{' or '.join(et.producers)} publishes {et.name} (XADD, approximate MAXLEN/MINID)."
            ),
            "x-producers": list(et.producers),
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Every event of the stack, generated from the code (`make docs`). "
                "Consumers read with XREADGROUP in named groups and ack only after "
                "their handler succeeded; an envelope whose `producer` is not one the "
                "event type declares is dead-lettered (`unknown_producer`), never handled."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }

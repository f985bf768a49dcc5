"""Writes (or checks) docs/events/: one JSON Schema per stream and docs/asyncapi.json."""

from __future__ import annotations

import json
from pathlib import Path

from backbone.bus.catalog import asyncapi_document, json_schemas
from contracts import CATALOG

DOCS = Path(__file__).resolve().parents[1] / "docs"


def rendered() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for stream, schema in json_schemas(CATALOG).items():
        files[DOCS / "events" / f"{stream}.schema.json"] = _dump(schema)
    document = asyncapi_document(CATALOG, title="AstraTrade events", version="1.0.0")
    files[DOCS / "asyncapi.json"] = _dump(document)
    return files


def _dump(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def write_catalog_docs(*, check: bool = False) -> int:
    stale = []
    for path, text in rendered().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print("stale event docs (run `make docs`):", *map(str, stale), sep="\n  ")
        return 1
    return 0

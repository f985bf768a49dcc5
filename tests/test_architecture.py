"""The dependency direction is the architecture: checked, not just drawn."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from stack.catalog_docs import DOCS, write_catalog_docs

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_FOR_KERNEL = ("gateway", "services", "stack", "chaos", "contracts")


def imported_top_levels(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_kernel_imports_no_outer_layer() -> None:
    offenders = {
        path: sorted(names & set(FORBIDDEN_FOR_KERNEL))
        for path, names in imported_top_levels("backbone").items()
        if names & set(FORBIDDEN_FOR_KERNEL)
    }
    assert offenders == {}


def test_services_never_import_each_other() -> None:
    services = [p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists()]
    for path in (ROOT / "services").rglob("*.py"):
        own = path.relative_to(ROOT / "services").parts[0]
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                parts = node.module.split(".")
                if parts[0] == "services" and len(parts) > 1:
                    assert parts[1] in (own,), f"{path} imports services.{parts[1]}"
                assert parts[0] not in ("gateway", "stack"), f"{path} imports {parts[0]}"
    assert isinstance(services, list)


def test_event_docs_are_generated_from_the_code() -> None:
    assert write_catalog_docs(check=True) == 0, "run `make docs` and commit docs/"
    document = json.loads((DOCS / "asyncapi.json").read_text())
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert "astra.trading.trade_executed.v1" in addresses
    assert document["asyncapi"].startswith("3.")

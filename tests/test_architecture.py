"""The dependency direction is the architecture: checked, not just drawn.

Every import of every form counts (see tests/support/imports.py), and the checker is
itself tested on synthetic packages first, so a checker that sees nothing cannot pass.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from stack.catalog_docs import DOCS, write_catalog_docs
from tests.support.imports import (
    ImportEdge,
    cycles,
    import_edges,
    import_graph,
    layer_of,
    upward_imports,
)

ROOT = Path(__file__).resolve().parents[1]
EVERYTHING = ("backbone", "contracts", "chaos", "gateway", "services.*", "stack")
# Which of our packages each may import (itself always). `services.*` is any one
# service: a service may import backbone and contracts, never another service (they
# talk over HTTP and the bus). Only `stack`, which starts every part, and `bench`,
# which measures them, know everything; nothing imports `bench`, and only `bench`
# imports `tests` (the test token issuer, tests.support.tokens, signs its requests).
ALLOWED: dict[str, tuple[str, ...]] = {
    "backbone": (),  # the kernel knows none of the outer layers
    "contracts": ("backbone",),  # event models on the kernel's EventType
    "chaos": ("backbone",),  # the fault proxy stands alone but for JSON logging
    "gateway": ("backbone", "contracts"),
    "services": (),  # the bare namespace package
    "services.*": ("backbone", "contracts"),
    "stack": EVERYTHING,
    "bench": (*EVERYTHING, "tests"),
    # Drives the stack from outside and judges it by its route table and SLO file.
    "loadtests": ("gateway", "stack"),
    # Chaos drills: start or attach to a stack, drive load and faults, read the results.
    # `astra drill` runs `python -m drills` rather than importing it (stack stays below).
    "drills": ("backbone", "chaos", "contracts", "gateway", "loadtests", "stack"),
}
KERNEL_OUTER = ("gateway", "services", "stack", "chaos", "contracts", "bench")


def product_packages() -> list[str]:
    return sorted(
        p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests"
    )


def product_edges() -> list[ImportEdge]:
    # `tests` is read too, only so that an import of it from product code is an
    # upward import; imports made by tests are not checked.
    edges = import_edges(ROOT, [*product_packages(), "tests"])
    return [edge for edge in edges if layer_of(edge.importer) != "tests"]


def _report(edges: list[ImportEdge]) -> str:
    return "\n".join(str(edge) for edge in edges)


# -- the real tree ------------------------------------------------------------------


def test_every_package_has_a_place_in_the_table() -> None:
    assert set(product_packages()) <= set(ALLOWED), "add the new package to ALLOWED"


def test_every_import_follows_the_dependency_table() -> None:
    upward = upward_imports(product_edges(), ALLOWED)
    assert upward == [], "imports against the dependency direction:\n" + _report(upward)


def test_kernel_imports_no_outer_layer() -> None:
    offenders = {
        str(edge)
        for edge in product_edges()
        if layer_of(edge.importer) == "backbone" and edge.imported.split(".")[0] in KERNEL_OUTER
    }
    assert offenders == set()


def test_services_never_import_each_other() -> None:
    services = [p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists()]
    assert services, "no services found: the checker would see nothing"
    for edge in product_edges():
        own, target = layer_of(edge.importer), layer_of(edge.imported)
        if not own.startswith("services."):
            continue
        if target.startswith("services."):
            assert target == own, str(edge)
        assert target not in ("gateway", "stack", "chaos", "bench"), str(edge)


def test_no_import_cycles() -> None:
    found = cycles(import_graph(ROOT, product_packages()))
    assert found == [], "import cycles (a type or function lives in the wrong module):\n" + (
        "\n".join(" -> ".join(cycle) for cycle in found)
    )


def test_event_docs_are_generated_from_the_code() -> None:
    assert write_catalog_docs(check=True) == 0, "run `make docs` and commit docs/"
    document = json.loads((DOCS / "asyncapi.json").read_text())
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert "astra.trading.trade_executed.v1" in addresses
    assert document["asyncapi"].startswith("3.")


# -- the checker, on synthetic packages ---------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_checker_reports_each_kind_of_cycle(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "cyc/__init__.py": "",
            # plain: `from x import module` one way, `import x.module` the other
            "cyc/a.py": "from cyc import b\n",
            "cyc/b.py": "import cyc.a\n",
            # one leg only inside a function, the other relative
            "cyc/c.py": "def late():\n    from cyc.d import thing\n",
            "cyc/d.py": "from .c import late\nthing = 1\n",
            # one leg only for the type checker
            "cyc/e.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from cyc.f import F
            """,
            "cyc/f.py": "from cyc import e\nclass F: ...\n",
            # three modules round, and a module importing itself
            "cyc/ring/__init__.py": "",
            "cyc/ring/x.py": "from ..ring import y\n",
            "cyc/ring/y.py": "from cyc.ring.z import Z\n",
            "cyc/ring/z.py": "from . import x\nZ = 1\n",
            "cyc/selfish.py": "import cyc.selfish\n",
        },
    )
    assert cycles(import_graph(root, ["cyc"])) == [
        ["cyc.a", "cyc.b", "cyc.a"],
        ["cyc.c", "cyc.d", "cyc.c"],
        ["cyc.e", "cyc.f", "cyc.e"],
        ["cyc.ring.x", "cyc.ring.y", "cyc.ring.z", "cyc.ring.x"],
        ["cyc.selfish", "cyc.selfish"],
    ]


def test_checker_reports_an_upward_import(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "low/__init__.py": "",
            "low/base.py": "def helper():\n    import high.top\n",
            "high/__init__.py": "",
            "high/top.py": "from low.base import helper\n",
            "services/__init__.py": "",
            "services/one/__init__.py": "",
            "services/one/app.py": "from services.two import api\nfrom low import base\n",
            "services/two/__init__.py": "",
            "services/two/api.py": "",
        },
    )
    allowed = {"low": (), "high": ("low",), "services.*": ("low",)}
    upward = upward_imports(import_edges(root, ["low", "high", "services"]), allowed)
    assert [(str(e.path), e.line, e.importer, e.imported) for e in upward] == [
        ("low/base.py", 2, "low.base", "high.top"),
        ("services/one/app.py", 1, "services.one.app", "services.two.api"),
    ]


def test_checker_passes_a_clean_package_it_fully_sees(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "low/__init__.py": "from low.core import Core\n",
            "low/core.py": "class Core: ...\n",
            "high/__init__.py": "",
            "high/top.py": """
                from typing import TYPE_CHECKING
                import low.core
                from . import util
                from .sub import leaf
                if TYPE_CHECKING:
                    from low import Core
                def later():
                    from high.util import helper
            """,
            "high/util.py": "import json\nfrom low.core import Core\n",
            "high/sub/__init__.py": "",
            "high/sub/leaf.py": "from .. import util\nfrom ..util import helper\n",
        },
    )
    graph = import_graph(root, ["low", "high"])
    # Every form was seen (external imports such as json are not ours, so not edges).
    assert graph["high.top"] == {"low.core", "low", "high.util", "high.sub.leaf"}
    assert graph["high.sub.leaf"] == {"high.util"}
    assert graph["low"] == {"low.core"}
    assert cycles(graph) == []
    allowed = {"low": (), "high": ("low",)}
    assert upward_imports(import_edges(root, ["low", "high"]), allowed) == []

"""delivery's building blocks stay leaves: they import only errors and models from the rest of the package.

The modules that wire them into a run (``deliver``, ``media``, ``store_acks``)
may import what lies below delivery (tests/test_layers.py keeps them pointing down).
"""
from __future__ import annotations

import ast
from pathlib import Path

import ddex_etl.delivery

PACKAGE = Path(ddex_etl.delivery.__file__).parent
WIRING = {"deliver.py", "media.py", "store_acks.py"}


def test_delivery_imports_only_errors_and_models() -> None:
    outside = {}
    for module in sorted(p for p in PACKAGE.glob("*.py") if p.name not in WIRING):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 2:  # from ..x import y
                name = node.module or ", ".join(a.name for a in node.names)
                if name not in ("errors", "models"):
                    outside[module.name] = name
            elif isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for n in names:
                    if n.startswith("ddex_etl"):
                        outside[module.name] = n
    assert outside == {}

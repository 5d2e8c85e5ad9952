"""ddex_etl.delivery stays a leaf: it imports only errors and models from the rest of the package."""
from __future__ import annotations

import ast
from pathlib import Path

import ddex_etl.delivery

PACKAGE = Path(ddex_etl.delivery.__file__).parent


def test_delivery_imports_only_errors_and_models() -> None:
    outside = {}
    for module in sorted(PACKAGE.glob("*.py")):
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

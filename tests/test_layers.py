"""The house's floors: every import of the package points down (or sideways within one part).

Floors, top to bottom (README, "How the code is laid out")::

    __main__ -> cli -> run -> delivery -> api, state -> extract, ern, load, demo -> the ground floor

A module may import its own part and any part on a lower floor, never one
above it, lazily inside a function included: a lazy import upward is the same
circle, only found later.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ddex_etl

PACKAGE = Path(ddex_etl.__file__).parent
GROUND = {"config", "db", "errors", "models", "logs", "masking", "progress", "retry", "procs", "dpid", "__init__"}
# executors (floor 1): the engines that run chunks (local worker processes, Dask), shared by run and api,
# so it sits below both; it needs only the ground floor.
FLOOR = {"__main__": 6, "cli": 5, "run": 4, "delivery": 3, "api": 2, "state": 2, "extract": 1, "ern": 1, "load": 1, "demo": 1,
         "executors": 1}
FLOOR.update(dict.fromkeys(GROUND, 0))
# (importing module, imported part): upward imports we know of, each with its reason.
KNOWN = {
    # config checks a recipient's target options against the target kinds once, up front
    ("ddex_etl/config.py", "delivery"),
}


def part_of(module: str) -> str:
    """``ddex_etl.run.loop`` -> ``run``; ``ddex_etl.config`` -> ``config``; ``ddex_etl`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[str]:
    """Every ddex_etl module the file names in an import, resolved to absolute names."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    here = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "ddex_etl":  # from ddex_etl import x: x is the module imported
                found.extend(f"ddex_etl.{a.name}" for a in node.names)
            elif target.startswith("ddex_etl"):
                found.append(target)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("ddex_etl"))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "_sql" not in p.parts and "_migrations" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_imports_point_down(path: Path) -> None:
    mine = part_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    assert mine in FLOOR, f"{path.relative_to(PACKAGE)}: a part with no floor; add it to FLOOR and to the README's map"
    rel = str(path.relative_to(PACKAGE.parent))
    upward = sorted(
        m for m in imports(path)
        if (other := part_of(m)) != mine and FLOOR.get(other, 0) >= FLOOR[mine] and (rel, other) not in KNOWN
        and not (FLOOR[mine] == 0 and FLOOR.get(other, 0) == 0)
    )
    assert upward == [], f"{rel} imports a part on its own floor or above: {upward}"


def test_the_floors_are_the_folders() -> None:
    """Every folder of the package has a floor, so a new one must be placed on purpose."""
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders - {"_sql", "_migrations"} <= set(FLOOR)

"""ddex-etl: turn a PostgreSQL music catalog into schema-valid DDEX ERN deliveries."""
from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"


def data_dir(name: str) -> Path:
    """The repository's top-level ``sql/`` or ``migrations/`` folder, wherever it is installed.

    A checkout (and an editable install) reads the folder beside the package;
    a wheel carries a copy inside it as ``ddex_etl/_sql`` and
    ``ddex_etl/_migrations`` (pyproject.toml maps them in).
    """
    here = Path(__file__).resolve().parent
    packaged = here / f"_{name}"
    return packaged if packaged.is_dir() else here.parent / name

# The batch API is reached lazily so `import ddex_etl` stays light (no lxml,
# pandas or multiprocessing until a builder is used).
_LAZY = {
    "DDEXBuilder": "ddex_etl.api.batch",
    "BatchResult": "ddex_etl.api.batch",
    "StreamingBatchProcessor": "ddex_etl.api.batch_stream",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ddex_etl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

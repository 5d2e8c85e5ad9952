"""ddex-etl: turn a PostgreSQL music catalog into schema-valid DDEX ERN deliveries."""
from __future__ import annotations

__version__ = "0.1.0"

# The batch API is reached lazily so `import ddex_etl` stays light (no lxml,
# pandas or multiprocessing until a builder is used).
_LAZY = {
    "DDEXBuilder": "ddex_etl.batch",
    "BatchResult": "ddex_etl.batch",
    "StreamingBatchProcessor": "ddex_etl.batch_stream",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ddex_etl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

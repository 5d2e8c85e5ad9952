"""Loaders: put built documents in a table or in files, crash-safely.

Load never builds XML and never decides what to build; it receives finished
``Document`` records. Two promises the pipeline relies on:

* ``TableLoader.write`` runs inside the pipeline's transaction, so a chunk's
  documents and its checkpoint commit together (exactly once).
* ``FileLoader.write`` returns only when every file of the chunk is complete
  under its final name and durable: temp file in the same folder, written,
  synced, ``os.replace``d, folder synced. A crash leaves at worst some
  ``*.etl-tmp`` files, which ``prepare`` removes on the next start.

The files loader never writes outside its output folder: every name it builds
(from release identifiers, or a batch id read back from the state table) is
validated, and opened relative to a folder descriptor without following links.
One run at a time writes a folder (``folder_lock``), so start-up clean-up only
ever touches what a stopped run left.

Files::

    base.py        Output, Written, the Loader protocol, release and batch names
    table.py       TableLoader
    files.py       FileLoader: folders, locks, start-up clean-up, settle, BatchComplete
    file_chunk.py  FileChunk: one chunk's files, temp names until its commit
    fs.py          safe steps inside the folder (no link followed), syncs, OSError -> OutputError
    folder_lock.py one run per folder (flock)
"""
from __future__ import annotations

from pathlib import Path

from ..errors import EtlError
from .base import PENDING_SUFFIX, TMP_SUFFIX, Committed, Loader, Output, Written, new_batch_id, release_identifier
from .file_chunk import FileChunk
from .files import FileLoader
from .fs import RESOURCES, remove_resources
from .fs import _output_error as output_error
from .table import TableLoader

__all__ = [
    "PENDING_SUFFIX", "RESOURCES", "TMP_SUFFIX", "Committed", "FileChunk", "FileLoader", "Loader", "Output",
    "TableLoader", "Written", "loader_for", "new_batch_id", "output_error", "release_identifier", "remove_resources",
]


def loader_for(cfg: object, *, run_id: int | None = None, batch_id: str | None = None) -> TableLoader | FileLoader:
    """The loader the configuration asks for (``cfg`` is a ``Config``).

    ``batch_id`` (ddex-batch) is a new one, or the one read back from run
    ``run_id``'s row: either way it must look like ``new_batch_id`` made it.
    """
    load = cfg.load  # type: ignore[attr-defined]
    if load.target == "table":
        recipient = getattr(cfg, "recipient", None)
        return TableLoader(cfg.database.state_schema, load.table, recipient.name if recipient else "")  # type: ignore[attr-defined]
    if load.target == "files":
        return FileLoader(Path(load.directory), load.layout, batch_id, run_id=run_id)
    raise EtlError(f"load.target: unknown target {load.target!r}")

"""Extract: page release keys out of the catalog and read whole releases, a chunk at a time.

Files::

    reader.py        the keys and rows queries (sql/ or the user's own), keyset/offset paging, chunk reads
    catalog_read.py  the default reference catalog read table by table (no JSON), assembled here
    records.py       the row contract: rows -> Release records, every value checked

``ddex_etl.extract`` offers the reader's functions under their own names.
"""
from __future__ import annotations

from .reader import (  # noqa: F401
    _SESSION_SETTINGS,
    CHANGED_KEYS_SQL,
    KEYS_OFFSET_SQL,
    KEYS_SQL,
    MIN_KEY,
    ROWS_PER_FETCH,
    ROWS_SQL,
    SQL_DIR,
    KeyChunk,
    changed_keys_query,
    copy_baseline,
    count_changed_releases,
    count_releases,
    fetch_releases,
    iter_changed_key_chunks,
    iter_chunks,
    iter_id_chunks,
    iter_key_chunks,
    keys_query,
    rows_query,
)

"""Where a run's chunks of release keys come from: full, incremental, targeted, or a retry's rejects.

A key source is a function of the checkpoint: it pages from there (keyset:
after the last key; offset: from the next offset), numbering chunks on from
``chunks_done``, so a resume pages exactly what is left. Only keys come from
here; the rows are read by the workers (``ddex_etl.run.worker``).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import state
from ..config import Config
from ..masking import mask_text

# The run's modules log under the name they always had ("pipeline" in log lines).
log = logging.getLogger("ddex_etl.pipeline")

KeySource = Callable[[state.Checkpoint], Iterator[Any]]


def count_total(engine: Engine, cfg: Config) -> int | None:
    """How many releases the run will see, if extract can say cheaply (for progress and ETA)."""
    from .. import extract

    counter = getattr(extract, "count_releases", None)
    if counter is None:
        return None
    try:
        return int(counter(engine, cfg.extract))
    except Exception as exc:  # progress only: never fail a run over the estimate
        log.debug("could not count releases: %s", mask_text(str(exc)))
        return None


def run_key_source(engine: Engine, cfg: Config, run: state.RunRow) -> KeySource:
    """The keys a full/incremental/targeted run pages, from what its row recorded (so a resume
    covers exactly the same window or id list)."""
    from .. import extract

    ids = run.options.get("release_ids")
    if run.mode == "targeted" and ids:
        return lambda cp: extract.iter_id_chunks(
            ids, cfg.extract.chunk_size, after_key=cp.last_key, start_number=cp.chunks_done
        )
    if run.mode in ("incremental", "targeted") and run.watermark_from is not None and run.watermark_to is not None:
        since, until = run.watermark_from, run.watermark_to
        return lambda cp: extract.iter_changed_key_chunks(
            engine, cfg.extract, since=since, until=until, after_key=cp.last_key, start_number=cp.chunks_done
        )
    return key_source(engine, cfg)


def run_total(engine: Engine, cfg: Config, run: state.RunRow) -> int | None:
    from .. import extract

    ids = run.options.get("release_ids")
    if run.mode == "targeted" and ids:
        return len(set(ids))
    if run.mode in ("incremental", "targeted") and run.watermark_from is not None and run.watermark_to is not None:
        try:
            return extract.count_changed_releases(
                engine, cfg.extract, since=run.watermark_from, until=run.watermark_to
            )
        except Exception as exc:  # progress only
            log.debug("could not count changed releases: %s", mask_text(str(exc)))
            return None
    return count_total(engine, cfg)


def key_source(engine: Engine, cfg: Config) -> KeySource:
    from .. import extract

    def source(cp: state.Checkpoint) -> Iterator[Any]:
        if cfg.extract.mode == "offset":
            return iter(extract.iter_key_chunks(engine, cfg.extract, offset=cp.next_offset, start_number=cp.chunks_done))
        return iter(extract.iter_key_chunks(engine, cfg.extract, after_key=cp.last_key, start_number=cp.chunks_done))

    return source


@dataclass(frozen=True)
class KeyChunk:
    number: int
    release_ids: tuple[int, ...]
    last_key: int | None
    next_offset: int


def retry_source(engine: Engine, cfg: Config, source_run_id: int) -> KeySource:
    """Chunks of a run's unresolved rejects, keyset by release id (so a resume picks up exactly)."""
    schema = cfg.database.state_schema
    size = cfg.extract.chunk_size

    def source(cp: state.Checkpoint) -> Iterator[Any]:
        number = cp.chunks_done
        after = cp.last_key
        while True:
            with engine.connect() as conn:
                ids = [
                    int(r[0])
                    for r in conn.execute(
                        sa.text(
                            f"""SELECT release_id FROM {state._t(schema, 'rejected_releases')}
                            WHERE run_id = :r AND resolved_at IS NULL AND release_id > :after
                            ORDER BY release_id LIMIT :n"""
                        ),
                        {"r": source_run_id, "after": after if after is not None else -(2**63), "n": size},
                    )
                ]
            if not ids:
                return
            yield KeyChunk(number, tuple(ids), ids[-1], 0)
            number += 1
            after = ids[-1]

    return source


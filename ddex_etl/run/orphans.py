"""Releases a store was sent that the catalog no longer has: reported by every run until resolved.

A release removed with ``DELETE`` (instead of setting ``deleted_at``) leaves
nothing for an incremental run to find, and a targeted run finds no rows for
it: the store would go on selling it with nobody told. The state knows what
each job (each recipient) delivered, so at the end of every full,
incremental and targeted run the releases this job delivered and never took
down that the keys query no longer returns are read with the rows query;
those it returns nothing for are rejected in this run, with the fix. So the
run exits 3, ``etl errors`` lists them, and the next run reports them again
until the takedown is sent.

Why a report and not the takedown itself: the takedown we send is a complete
``NewReleaseMessage`` (DDEX: the latest message replaces all earlier deals;
the profile rules still want its tracks, ISRCs, cover with its MD5 and the
release's identifiers), and only the catalog row holds those. The state keeps
a checksum, the kind and the folder name per release and recipient; a copy of
every delivered release in it (several kB each, per recipient) would double
what a catalog costs to keep, for a case the catalog's own contract rules
out (withdraw with ``deleted_at``). A ``PurgeReleaseMessage`` would need only
the identifiers, but DDEX keeps it for corrupt metadata and it erases the
release's history at the store.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import state
from ..config import Config
from ..db import map_db_error

log = logging.getLogger("ddex_etl.pipeline")

KIND = "DeletedWithoutTakedown"
LOGGED = 20  # orphans named one by one in the log per run; the rest are counted


def orphan_reject(sent: state.Sent, job: str, schema: str) -> state.RejectRecord:
    """The reject of a release ``job`` delivered (``sent``) that the catalog no longer has."""
    rid = sent.release_id
    folder = f", folder {sent.identifier}" if sent.identifier else ""
    quoted = job.replace("'", "''")
    return state.RejectRecord(
        release_id=rid,
        stage="extract",
        error_kind=KIND,
        message=(
            f"release {rid}: job {job!r} delivered it (run {sent.run_id}{folder}) and never took it down, but "
            "the catalog no longer has it (the rows query returns nothing: the row was deleted instead of "
            "withdrawn), so the store still offers it; a takedown is a complete message that needs the "
            "release's tracks, identifiers and cover; fix: restore the release's rows with deleted_at = now() "
            "(a soft delete): the next incremental run sends the takedown, or `etl run --release-id "
            f"{rid}` at once; if the store already removed it, `DELETE FROM {schema}.delivered WHERE "
            f"job = '{quoted}' AND release_id = {rid}` ends this report"
        ),
        retryable=False,
        input={"delivered": {"run_id": sent.run_id, "identifier": sent.identifier, "kind": sent.kind}},
    )


def missing_from_catalog(
    engine: Engine, cfg: Config, job: str, *, exclude: Iterable[int] = ()
) -> list[state.Sent]:
    """What ``job`` delivered, never took down, and the catalog no longer has (the rows query returns nothing)."""
    from .. import extract

    schema = cfg.database.state_schema
    keys = extract.keys_query(cfg.extract)
    params: dict[str, Any] = (
        {"offset": 0, "limit": None} if cfg.extract.mode == "offset" else {"after": extract.MIN_KEY, "limit": None}
    )
    skip = {int(i) for i in exclude}
    try:
        with engine.connect() as conn:
            gone = [s for s in state.live_sent_missing_from(conn, schema, job, keys.text, params)
                    if s.release_id not in skip]
            conn.rollback()
        orphans: list[state.Sent] = []
        size = cfg.extract.chunk_size
        # Not in the keys query is not gone: a withdrawn release (deleted_at set) is left out of it too.
        for i in range(0, len(gone), size):
            page = gone[i : i + size]
            with engine.connect() as conn:
                releases, bad = extract.fetch_releases(conn, cfg.extract, [s.release_id for s in page])
                conn.rollback()
            there = {int(r.release_id) for r in releases}
            there.update(int(str(b.release_id)) for b in bad if getattr(b, "release_id", None) is not None)
            orphans.extend(s for s in page if s.release_id not in there)
        return orphans
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, f"looking for releases job {job!r} delivered that the catalog no longer has") from exc


def record_orphans(engine: Engine, cfg: Config, run: state.RunRow) -> int:
    """Reject, in ``run``, each release its job delivered that the catalog no longer has; log them. Returns how
    many were new to the run (a resumed attempt finds those of the earlier one again: counted once)."""
    schema = cfg.database.state_schema
    orphans = missing_from_catalog(engine, cfg, run.job)
    if not orphans:
        return 0
    rejects = [orphan_reject(s, run.job, schema) for s in orphans]
    with engine.begin() as conn:
        added = state.record_new_rejects(conn, schema, run.id, rejects)
        state.add_rejected(conn, schema, run.id, len(added))
    for r in rejects[:LOGGED]:
        log.warning("%s", r.message)
    if len(rejects) > LOGGED:
        log.warning("%d more releases job %r delivered are gone from the catalog without a takedown: see "
                    "`etl errors %d`", len(rejects) - LOGGED, run.job, run.id)
    return len(added)

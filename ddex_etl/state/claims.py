"""Release identifiers claimed per run: one ICPN, one GRid, one release.

Two releases with the same ICPN would be the same product at a store, and
in the ``ddex-batch`` layout the same folder: the later one would write
over the earlier. So before anything of a chunk is built, its releases
claim their ICPN and GRid in ``claimed_identifiers``; the first release *in
paging order* that has a value owns it, and every later one is rejected
(``DuplicateIdentifier``) naming both releases. Never by finishing order:

* Chunks claim in chunk order. A worker that fetched chunk N waits until
  chunk N-1's claims are in (``checkpoints.claims_through``); it waits for
  the other worker's *fetch*, never its build, so the wait is short.
* Within a chunk, releases claim in the chunk's order.
* Claims are idempotent: a chunk done again after a crash (or by a second
  worker) finds its own claims and changes nothing. A resume winds
  ``claims_through`` back to its checkpoint.

An ISRC on several releases is normal (a single and its album), so it is
only listed: each chunk appends its ISRCs to ``release_isrcs`` (no index,
unlogged: about a microsecond a row, where claiming them like ICPNs cost
the server ~60 ms a chunk), and the run lists the ISRCs found on more than
one release when it ends. Two tracks of one release with the same ISRC are
refused by the builder itself.

Scope: one run (a retry run uses the claims of the run it retries, so a
duplicate stays a duplicate until its identifier changes). When a run
succeeds its claims go, except those its duplicate rejects point at.
"""
from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import TransientError
from . import _t

EXCLUSIVE = ("icpn", "grid")  # a later release with the value is rejected
NAMES = {"icpn": "ICPN", "grid": "GRid"}
DUPLICATE_KIND = "DuplicateIdentifier"
# How long a worker waits for the chunk before its own to claim. That chunk's
# worker is fetching it; a fetch this slow means something is stuck.
TURN_TIMEOUT = 600.0
# How long a worker waits for its turn before it lets its engine run another
# task meanwhile (``wait_for_turn(idle=...)``): longer than the previous
# chunk's fetch normally takes, so the usual short waits stay as they are.
IDLE_AFTER = 1.0


@dataclass(frozen=True)
class Clash:
    """``release_id``'s ``kind`` ``value`` was claimed first by ``owner``."""

    release_id: int
    kind: str
    value: str
    owner: int

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "owner": self.owner}

    def message(self) -> str:
        name = NAMES[self.kind]
        return (
            f"release {self.release_id}: {self.kind}={self.value!r}: is also the {name} of release "
            f"{self.owner}, which comes first in this run; fix: give each release its own {name} "
            "in the catalog, then `etl retry-failed`"
        )


def identifiers(release: Any) -> list[tuple[str, str]]:
    """``(kind, value)`` of a release's ICPN and GRid, as the builder will read them."""
    out: list[tuple[str, str]] = []
    for kind in EXCLUSIVE:
        value = getattr(release, kind, None)
        if type(value) is str and value:
            value = value.strip()
            if value:
                out.append((kind, value))
    return out


def wait_for_turn(
    engine: Engine,
    schema: str,
    run_id: int,
    chunk: int,
    *,
    poll: float = 0.005,
    idle: Callable[[], AbstractContextManager[Any]] | None = None,
    idle_after: float = IDLE_AFTER,
) -> None:
    """Block until chunk ``chunk - 1`` of run ``run_id`` has claimed (chunk order is claim order).

    ``idle()``: entered once the wait passes ``idle_after`` seconds, left when
    the turn comes. A Dask worker gives its thread up there: the chunk it
    waits for may be queued behind this very one on the same worker (Dask ran
    it again after its worker died), and would otherwise never start.
    """
    if chunk <= 0:
        return
    started = time.monotonic()
    deadline = started + TURN_TIMEOUT
    stmt = sa.text(f"SELECT claims_through FROM {_t(schema, 'checkpoints')} WHERE run_id = :r")
    with contextlib.ExitStack() as idling:
        while True:
            with engine.connect() as conn:
                done = conn.execute(stmt, {"r": run_id}).scalar()
                conn.rollback()
            if done is not None and int(done) >= chunk - 1:
                return
            now = time.monotonic()
            if now > deadline:
                raise TransientError(
                    f"chunk {chunk} waited {TURN_TIMEOUT:.0f} s for chunk {chunk - 1} to claim its identifiers; "
                    "the worker reading it seems stuck"
                )
            if idle is not None and now - started > idle_after:
                idling.enter_context(idle())
                idle = None
            time.sleep(poll)
            poll = min(0.1, poll * 1.5)


def claim(
    conn: Connection, schema: str, *, run_id: int, scope: int, chunk: int, releases: Iterable[Any]
) -> list[Clash]:
    """Claim the identifiers of one chunk's releases (in the caller's transaction); return the clashes.

    ``run_id``: the run whose ``claims_through`` moves to ``chunk``;
    ``scope``: the run whose claims count (itself, or the run a retry retries).
    """
    kinds: list[str] = []
    values: list[str] = []
    rids: list[int] = []
    first_in_chunk: dict[tuple[str, str], int] = {}
    clashes: list[Clash] = []
    isrc_rows: list[str] = []
    for release in releases:
        rid = int(release.release_id)
        for kind, value in identifiers(release):
            owner = first_in_chunk.setdefault((kind, value), rid)
            if owner != rid:
                clashes.append(Clash(rid, kind, value, owner))
            else:
                kinds.append(kind)
                values.append(value)
                rids.append(rid)
        prefix = f"{scope}\t"
        suffix = f"\t{rid}\n"
        for track in release.tracks:
            isrc = track.isrc
            # Only well-formed ISRCs (the builder rejects the rest); that also keeps
            # COPY's text format free of tabs, newlines and backslashes.
            if type(isrc) is str and _PLAIN_ISRC(isrc):
                isrc_rows.append(prefix + isrc + suffix)
    if kinds:
        table = _t(schema, "claimed_identifiers")
        rows = conn.execute(
            sa.text(
                f"""WITH wanted AS (
                    SELECT * FROM unnest(CAST(:kinds AS text[]), CAST(:vals AS text[]), CAST(:rids AS bigint[]))
                        AS u (kind, value, release_id)
                ), taken AS (
                    INSERT INTO {table} (run_id, kind, value, release_id)
                    SELECT :scope, kind, value, release_id FROM wanted
                    ON CONFLICT (run_id, kind, value) DO NOTHING
                )
                SELECT w.kind, w.value, w.release_id, c.release_id AS owner
                FROM wanted w JOIN {table} c ON c.run_id = :scope AND c.kind = w.kind AND c.value = w.value
                WHERE c.release_id <> w.release_id"""
            ),
            {"scope": scope, "kinds": _literal(kinds), "vals": _literal(values), "rids": _literal(rids)},
        ).all()
        for kind, value, rid, owner in rows:
            clashes.append(Clash(int(rid), kind, value, int(owner)))
    if isrc_rows:
        dbapi = conn.connection.driver_connection
        with dbapi.cursor() as cur, cur.copy(
            f"COPY {_t(schema, 'release_isrcs')} (run_id, isrc, release_id) FROM STDIN"
        ) as copy:
            copy.write("".join(isrc_rows))
    conn.execute(
        sa.text(
            f"""UPDATE {_t(schema, 'checkpoints')} SET claims_through = GREATEST(claims_through, :n)
            WHERE run_id = :r"""
        ),
        {"n": chunk, "r": run_id},
    )
    return sorted(clashes, key=lambda c: (c.release_id, c.kind != "icpn"))


_UNPLAIN = re.compile(r"[^A-Za-z0-9_-]")
_PLAIN_ISRC = re.compile(r"[A-Z0-9]{12}").fullmatch


def _literal(items: list[Any]) -> Any:
    """One PostgreSQL array literal when every item is a plain word (identifiers almost always are:
    one check over the joined text instead of one per item), else a list for psycopg to quote."""
    text = ",".join(map(str, items))
    if _UNPLAIN.search(text.replace(",", "")) is None and "null" not in text.lower():
        return "{" + text + "}"
    return items


def rewind(conn: Connection, schema: str, run_id: int, chunks_done: int) -> None:
    """On resume: chunks from ``chunks_done`` on claim again, in order (their own claims are kept)."""
    conn.execute(
        sa.text(f"UPDATE {_t(schema, 'checkpoints')} SET claims_through = :n WHERE run_id = :r"),
        {"n": chunks_done - 1, "r": run_id},
    )


def shared_isrcs(conn: Connection, schema: str, run_id: int, limit: int) -> tuple[int, list[tuple[str, list[int]]]]:
    """ISRCs on more than one release of the run: ``(how many, the first `limit` with their releases)``."""
    rows = conn.execute(
        sa.text(
            f"""SELECT isrc, array_agg(DISTINCT release_id ORDER BY release_id) AS releases, count(*) OVER () AS n
            FROM {_t(schema, 'release_isrcs')} WHERE run_id = :r
            GROUP BY isrc HAVING count(DISTINCT release_id) > 1
            ORDER BY isrc LIMIT :limit"""
        ),
        {"r": run_id, "limit": limit},
    ).all()
    return (int(rows[0].n) if rows else 0), [(r.isrc, [int(i) for i in r.releases]) for r in rows]


def forget(conn: Connection, schema: str, run_id: int) -> None:
    """A run succeeded: drop its ISRC list and its claims, except those its unresolved duplicate
    rejects point at."""
    conn.execute(sa.text(f"DELETE FROM {_t(schema, 'release_isrcs')} WHERE run_id = :r"), {"r": run_id})
    conn.execute(
        sa.text(
            f"""DELETE FROM {_t(schema, 'claimed_identifiers')} c
            WHERE c.run_id = :r AND NOT EXISTS (
                SELECT 1 FROM {_t(schema, 'rejected_releases')} x
                WHERE x.run_id = :r AND x.error_kind = :kind AND x.resolved_at IS NULL
                  AND EXISTS (
                      SELECT 1 FROM jsonb_array_elements(x.input -> 'duplicates') AS d
                      WHERE d ->> 'kind' = c.kind AND d ->> 'value' = c.value)
            )"""
        ),
        {"r": run_id, "kind": DUPLICATE_KIND},
    )

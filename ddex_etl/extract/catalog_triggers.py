"""Whether the reference catalog's optional triggers (``sql/catalog_triggers.sql``) are installed and current.

The triggers keep ``updated_at`` true for incremental runs. A catalog set up
with an older version of the file misses the newer triggers (today: stamping
both releases when a child row moves to another release), and nothing would
say so: a moved track would silently stay in its old release's message. So
``etl config check --connect`` and every incremental run compare what is
installed with what the file installs, and name the fix (run the file again:
it is idempotent and replaces the old functions and triggers).
"""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from .reader import SQL_DIR

TRIGGERS_SQL = SQL_DIR / "catalog_triggers.sql"

_CHILDREN = ("release_artists", "tracks", "track_contributors", "deals", "release_images")
# Every (trigger, table) the current file creates.
EXPECTED: frozenset[tuple[str, str]] = frozenset(
    [("ddex_etl_touch", t) for t in ("labels", "artists", "releases", *_CHILDREN)]
    + [("ddex_etl_touch_release", t) for t in _CHILDREN]
    + [("ddex_etl_touch_moved", t) for t in _CHILDREN]
)


@dataclass(frozen=True)
class TriggerStatus:
    """``installed``: some of our triggers are on the catalog's tables; ``missing``: those the file would add."""

    installed: bool
    missing: tuple[tuple[str, str], ...]

    @property
    def outdated(self) -> bool:
        return self.installed and bool(self.missing)

    def message(self) -> str:
        """What is wrong and the fix (for an outdated installation)."""
        names = sorted({name for name, _ in self.missing})
        tables = sorted({table for _, table in self.missing})
        return (
            f"the catalog's ddex-etl triggers are from an older version ({', '.join(names)} missing on "
            f"{', '.join(tables)}): a track, credit or deal moved to another release leaves the old release's "
            f"message unchanged at the next incremental run; fix: install them again (idempotent, replaces the "
            f"old ones): psql \"$DATABASE_URL\" -f {TRIGGERS_SQL}"
        )


def trigger_status(conn: sa.Connection) -> TriggerStatus:
    """Which of the file's triggers the tables visible on the search path carry."""
    rows = conn.execute(
        sa.text(
            """SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE NOT t.tgisinternal AND t.tgname LIKE 'ddex\\_etl\\_touch%' AND pg_table_is_visible(c.oid)"""
        )
    )
    found = {(str(r[0]), str(r[1])) for r in rows}
    return TriggerStatus(installed=bool(found & EXPECTED), missing=tuple(sorted(EXPECTED - found)))

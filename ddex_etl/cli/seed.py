"""``etl seed``: fill the reference catalog with demo releases and their media files."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .app import CliState, _console, _echo, _example, _print_json, _say, _state


@click.command(
    short_help="Fill the reference catalog with deterministic demo releases.",
    epilog=_example("etl seed --releases 1000", "etl seed --releases 50000 --seed 7 --reset",
                    "ETL_DATABASE_URL=postgresql://me@localhost/scratch etl seed --releases 100 --yes",
                    "etl seed --releases 100 --json"),
)
@click.option("--releases", "-n", type=click.IntRange(min=0), required=True, help="How many releases to add.")
@click.option("--seed", "seed", type=int, default=1, show_default=True, help="Random seed: same seed, same rows.")
@click.option("--reset", is_flag=True, help="Empty the catalog first (otherwise releases are appended).")
@click.option(
    "--yes", is_flag=True,
    help="Write even to a database that holds more than the demo catalog (it refuses otherwise).",
)
@click.option(
    "--media-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the demo audio and cover files (default: load.media_root when it is a folder, "
    "else ./media beside etl.toml).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as one JSON object on stdout.")
@click.pass_context
def seed(ctx: click.Context, releases: int, seed: int, reset: bool, yes: bool, media_dir: Path | None,
         as_json: bool) -> None:
    """Create the reference catalog (sql/catalog.sql) if missing and add demo releases.

    Albums, singles, EPs, multi-disc sets and compilations with featured
    artists, composers, several deals and non-ASCII titles. Deterministic for
    a given --seed and starting catalog.

    It refuses (exit 2, nothing touched) a database that holds anything but
    its own demo catalog (other tables, or catalog rows it did not write)
    unless --yes. --reset names the database and what it deletes.

    The tracks' audio and the covers are real files (a few dozen small ones,
    shared by position and kind) written to --media-dir, with their MD5s in
    the catalog: a ddex-batch run with that folder as load.media_root ships them.
    """
    from ..config import mask_url
    from ..db import engine_for
    from ..demo.seed import check_target, seed_catalog

    state = _state(ctx)
    cfg = state.config()
    if media_dir is None:
        root = cfg.load.media_root
        if root and "://" not in root:
            media_dir = Path(root)
        else:
            media_dir = (cfg.source.resolve().parent if cfg.source else Path.cwd()) / "media"
    engine = engine_for(cfg)
    ignore = (cfg.database.state_schema,)
    try:
        if reset:
            target = check_target(engine, ignore_schemas=ignore, reset=True)
            if target.only_demo or yes:
                _echo(f"etl seed --reset: deleting every row of the catalog in {target.database}: "
                      f"{target.contents()}", err=True)
        with _SeedProgress(state, releases) as progress:
            report = seed_catalog(engine, releases, seed=seed, reset=reset, progress=progress,
                                  only_demo=not yes, ignore_schemas=ignore, media_dir=media_dir)
    finally:
        engine.dispose()
    database = mask_url(cfg.database.url) if cfg.database.url else f"embedded PostgreSQL in {cfg.database.embedded_dir}"
    if as_json:
        _print_json({
            "releases": report.releases, "first_release_id": report.first_release_id,
            "last_release_id": report.last_release_id, "tracks": report.tracks, "artists": report.artists,
            "deals": report.deals, "seconds": round(report.seconds, 3),
            "releases_per_second": round(report.releases_per_second, 1), "database": database,
            "media_dir": str(media_dir.resolve()), "media_files": len(report.media),
            "media_written": report.media_written,
        })
        return
    _say(
        state,
        f"seeded {report.releases:,} releases (ids {report.first_release_id}..{report.last_release_id}), "
        f"{report.tracks:,} tracks, {report.artists:,} artists, {report.deals:,} deals "
        f"in {report.seconds:,.1f} s ({report.releases_per_second:,.0f} releases/s)\n"
        f"  database: {database}\n"
        f"  media: {len(report.media):,} demo audio and cover files in {media_dir} ({report.media_written:,} written now)",
    )


class _SeedProgress:
    """A rich bar for ``etl seed`` on a terminal; nothing otherwise."""

    def __init__(self, state: CliState, total: int) -> None:
        self.enabled = not state.quiet and sys.stderr.isatty() and total > 0
        self.total = total
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("seeding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             console=_console(err=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task("seed", total=self.total)
        return lambda done: self._bar.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

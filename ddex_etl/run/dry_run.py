"""``etl run --dry-run``: what a run would do, per recipient, without writing or uploading anything.

For each recipient (or the single ``[transform]`` recipient) it pages the
releases the run would page (full, incremental window since the job's last
success, or targeted), reads them, applies the recipient's filter, builds
each message in memory and counts what would be built, taken down, skipped
as unchanged (same content as the last delivery) or rejected (bad data, a
duplicate ICPN or GRid, a media path that is unsafe, or a media file the run
would refuse: missing, a link, not a regular file, empty, over
``load.max_media_bytes``, or without a catalog MD5 unless unverified media
are allowed; a sound recording without audio when the recipient requires
media, a cover under its ``min_cover_px`` or not square), and what would go
to the target. Nothing is written: no run row, no checkpoint, no claims, no
files; the state tables are only read (and may be absent). Of the media
files only the headers are read, as the run reads them for the message's
technical details (``delivery.media_checks``; opened as the copy opens
them, so a FIFO cannot block the preview); their MD5s are checked when they
are copied, not here (that would read every file).

In the main process, one release at a time: a preview, not a benchmark.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .. import state
from ..config import Config
from ..db import database_url, make_engine, map_db_error
from ..errors import ExitCode, MediaError, ReleaseDataError

log = logging.getLogger("ddex_etl.dry_run")

SHOWN = 20  # rejects listed per recipient


@dataclass
class RecipientPlan:
    """What one recipient's run would do."""

    recipient: str
    job: str
    mode: str
    ern_version: str
    target: str | None
    would_build: int = 0
    would_take_down: int = 0
    unchanged: int = 0
    rejected: int = 0
    skipped: int = 0  # not for this recipient (filter), or gone since their key was read
    resources: int = 0  # media files that would be copied into the batch
    rejects: list[dict[str, Any]] = field(default_factory=list)  # the first few: release, reason
    # The target tried as the run would before building (login, host key, folder or bucket; nothing written).
    target_check: str | None = None  # what was found
    target_error: str | None = None  # or why the run would stop before building
    target_exit: int = ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DryRunReport:
    """Every recipient's plan; ``exit_code`` is 3 when some releases would be rejected, else 0."""

    job: str
    plans: list[RecipientPlan] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The worst target's code (1 or 2: the run would stop before building), else 3 when releases would be rejected."""
        from .recipients import worst_exit_code

        codes = [p.target_exit for p in self.plans]
        codes += [ExitCode.REJECTED if p.rejected else ExitCode.OK for p in self.plans]
        return worst_exit_code(codes)

    def summary(self) -> str:
        lines = [f"dry run of job {self.job!r}: nothing was written or uploaded"]
        for p in self.plans:
            where = f", then upload to {p.target}" if p.target else ""
            lines.append(
                f"recipient {p.recipient or '(transform)'} ({p.mode}, ERN {p.ern_version}): would build {p.would_build:,}, "
                f"take down {p.would_take_down:,}, skip {p.unchanged:,} unchanged, reject {p.rejected:,}, "
                f"skip {p.skipped:,} not for this recipient; {p.resources:,} media files{where}"
            )
            if p.target_error:
                lines.append(f"  target FAILED its check (the run would stop before building): {p.target_error}")
            elif p.target_check:
                lines.append(f"  target ok: {p.target_check}")
            for r in p.rejects:
                lines.append(f"  would reject release {r['release_id']}: {r['reason']}")
            if p.rejected > len(p.rejects):
                lines.append(f"  ... and {p.rejected - len(p.rejects):,} more")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.job, "dry_run": True, "exit_code": self.exit_code,
                "recipients": [p.as_dict() for p in self.plans]}


def dry_run(cfg: Config, *, recipients: tuple[str, ...] = (), mode: str | None = None,
            since: dt.datetime | None = None, release_ids: tuple[int, ...] = (), force: bool = False) -> DryRunReport:
    """Plan a run for each selected recipient (all of them by default) without writing anything."""
    from .recipients import selected

    configs = [cfg.for_recipient(r) for r in selected(cfg, recipients)] if cfg.recipients else [cfg]
    report = DryRunReport(cfg.run.job)
    engine = make_engine(database_url(cfg), pool_size=1)
    try:
        for rcfg in configs:
            report.plans.append(_plan(engine, rcfg, mode=mode, since=since, release_ids=release_ids, force=force))
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, "planning a dry run") from exc
    finally:
        engine.dispose()
    return report


def _plan(engine: sa.Engine, cfg: Config, *, mode: str | None, since: dt.datetime | None,
          release_ids: tuple[int, ...], force: bool) -> RecipientPlan:
    from .. import ern, extract

    schema = cfg.database.state_schema
    has_state = state.current(engine, schema) is not None
    with engine.connect() as conn:
        previous = state.last_success(conn, schema, cfg.run.job) if has_state else None
        now = state.database_now(conn, cfg.run.watermark_lag_seconds)
        conn.rollback()
    run_mode = "targeted" if since is not None or release_ids else (mode or cfg.run.mode)
    window_from = since if run_mode == "targeted" else (previous.watermark_to if previous is not None else None)
    takedowns = run_mode == "targeted" or (run_mode == "incremental" and window_from is not None)
    skip_unchanged = run_mode in ("incremental", "targeted") and not force
    r = cfg.recipient
    plan = RecipientPlan(
        recipient=r.name if r is not None else "", job=cfg.run.job, mode=run_mode,
        ern_version=cfg.transform.ern_version, target=r.target if r is not None else None,
    )
    if r is not None and r.target is not None:
        from ..errors import ConfigError, EtlError
        from .preflight import target_check

        try:
            plan.target_check = target_check(r, write=False)
        except ConfigError as exc:
            plan.target_error, plan.target_exit = "; ".join(exc.problems), exc.exit_code
        except EtlError as exc:
            plan.target_error, plan.target_exit = str(exc), exc.exit_code
    ctx = ern.context_from_config(cfg.transform).for_delivery("dryrun", now)
    media_root = None
    if cfg.load.target == "files" and cfg.load.layout == "ddex-batch" and cfg.load.media_root:
        from ..delivery.media import media_root as open_media

        media_root = open_media(cfg.load.media_root)
    from ..delivery.media_checks import MediaPolicy, check_media

    policy = MediaPolicy(require_media=cfg.load.require_media, min_cover_px=cfg.load.min_cover_px, root=media_root,
                         max_bytes=cfg.load.max_media_bytes,
                         batch_without_media=cfg.load.target == "files" and cfg.load.layout == "ddex-batch"
                         and media_root is None,
                         allow_unverified=cfg.load.allow_unverified_media, recipient=r.name if r is not None else None)
    seen_ids: dict[tuple[str, str], int] = {}
    filtered = r is not None and bool(r.territories or r.labels)
    for ids in _key_pages(engine, cfg, run_mode, window_from, now, release_ids):
        with engine.connect() as conn:
            releases, bad = extract.fetch_releases(conn, cfg.extract, list(ids))
            sent = state.last_sent(conn, schema, cfg.run.job, list(ids)) if (skip_unchanged or filtered) and has_state else {}
            conn.rollback()
        sums = {rid: s.checksum for rid, s in sent.items()} if skip_unchanged else {}
        for b in bad:
            _reject(plan, getattr(b, "release_id", "?"), str(b))
        found = {int(x.release_id) for x in releases} | {int(getattr(b, "release_id", -1) or -1) for b in bad}
        plan.skipped += sum(1 for i in ids if int(i) not in found)
        for release in releases:
            rid = int(release.release_id)
            leaving = False
            if r is not None and not r.matches(release):
                if rid not in sent or not sent[rid].live:
                    plan.skipped += 1
                    continue
                leaving = True  # sent to this store before, now outside its filter: a takedown
            clash = _duplicate(seen_ids, release)
            if clash:
                _reject(plan, rid, clash)
                continue
            take_down = leaving or (takedowns and _is_takedown(release, now.date()))
            # The recipient's media rules, and the files' technical details (their headers) as the run reads them,
            # so the message, and whether it is unchanged, is the run's.
            checked = check_media(release, policy, takedown=take_down)
            if checked.problems:
                _reject(plan, rid, str(MediaError(rid, checked.problems)))
                continue
            release = checked.release
            planned: list[Any] = []
            if media_root is not None:
                from ..delivery.media import with_resource_uris
                from ..delivery.resources import check_resources

                release, planned, problems = with_resource_uris(release)
                if not problems:
                    problems = check_resources(planned, media_root, allow_unverified=cfg.load.allow_unverified_media,
                                               max_bytes=cfg.load.max_media_bytes)
                if problems:
                    _reject(plan, rid, "; ".join(str(p) for p in problems))
                    continue
            try:
                doc = ern.build_takedown(release, ctx) if take_down else ern.build(release, ctx)
            except ReleaseDataError as exc:
                _reject(plan, rid, str(exc))
                continue
            if sums.get(rid) == doc.body_checksum:
                plan.unchanged += 1
                continue
            plan.resources += len({p.uri for p in planned})
            if take_down:
                plan.would_take_down += 1
            else:
                plan.would_build += 1
    if has_state:
        from .orphans import missing_from_catalog, orphan_reject

        for gone in missing_from_catalog(engine, cfg, cfg.run.job):
            _reject(plan, gone.release_id, orphan_reject(gone, cfg.run.job, schema).message)
    return plan


def _key_pages(engine: sa.Engine, cfg: Config, mode: str, since: dt.datetime | None, until: dt.datetime,
               release_ids: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    from .. import extract

    if release_ids:
        chunks: Any = extract.iter_id_chunks(release_ids, cfg.extract.chunk_size)
    elif mode in ("incremental", "targeted") and since is not None:
        chunks = extract.iter_changed_key_chunks(engine, cfg.extract, since=since, until=until)
    else:
        chunks = extract.iter_key_chunks(engine, cfg.extract)
    for kc in chunks:
        yield tuple(int(i) for i in kc.release_ids)


def _is_takedown(release: Any, ended_before: dt.date) -> bool:
    from .worker import is_takedown

    return is_takedown(release, ended_before)


def _duplicate(seen: dict[tuple[str, str], int], release: Any) -> str | None:
    """The run claims ICPNs and GRids in paging order (``claims``); the same, in memory."""
    rid = int(release.release_id)
    for kind in ("icpn", "grid"):
        value = getattr(release, kind, None)
        if not value:
            continue
        owner = seen.setdefault((kind, value), rid)
        if owner != rid:
            return f"{kind.upper()} {value} is also on release {owner}, which comes first"
    return None


def _reject(plan: RecipientPlan, release_id: Any, reason: str) -> None:
    plan.rejected += 1
    if len(plan.rejects) < SHOWN:
        plan.rejects.append({"release_id": release_id, "reason": reason})

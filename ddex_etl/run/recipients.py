"""Several stores from one job: each ``[[recipients]]`` entry runs as a job of its own.

A recipient's job is ``<run.job>/<name>`` (``Config.for_recipient``), so its
runs, checkpoints, lock, delivered checksums, watermark, takedowns and run
selection are its own, with no new machinery: ``ddex_etl.run.run`` does the
work. ``etl run`` runs the recipients of ``etl.toml`` (or only
``--recipient NAME``) up to ``run.parallel_recipients`` side by side, in
threads, reporting them in file order; before building, each checks its
store's target (``check_target_first``) and reads its acknowledgements
(``store_acks``). A recipient that fails stops no
other; a signal (Ctrl-C, SIGTERM) reaches every recipient's run (the main
thread hands it on), and those not started yet are reported as not started.
With ``parallel_recipients = 1`` they run one after another as before.

The process exit code is the worst of the recipients', in this order::

    1 (failed) > 2 (configuration) > 130 (interrupted) > 3 (rejected) > 4 (locked) > 0

A failure needs a person before anything else; an interrupted run only a
resume; rejected releases a data fix; a lock held means another runner is
already on it. Without ``[[recipients]]`` the ``[transform]`` keys describe
the one recipient and nothing here is used.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import logs, state
from .. import run as run_api
from ..config import Config, RecipientConfig
from ..errors import ConfigError, EtlError, ExitCode, InterruptedRun
from ..retry import one_budget

log = logging.getLogger("ddex_etl.recipients")

# Worst first: the process exit code is the first of these any recipient has.
EXIT_ORDER = (ExitCode.FAILED, ExitCode.USAGE, ExitCode.INTERRUPTED, ExitCode.REJECTED, ExitCode.LOCKED, ExitCode.OK)


def worst_exit_code(codes: list[int]) -> int:
    """The process exit code for several recipients' codes (see the module docstring)."""
    for code in EXIT_ORDER:
        if code in codes:
            return code
    return max(codes) if codes else ExitCode.OK


@dataclass
class RecipientOutcome:
    """What one recipient's run did, or why it did not run."""

    recipient: str
    job: str
    status: str  # the run's status, "not started", or "nothing to resume"
    exit_code: int
    report: run_api.RunReport | None = None
    error: str | None = None
    error_kind: str | None = None
    acks: dict[str, Any] | None = None  # what reading the store's acknowledgements found first

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"recipient": self.recipient, "job": self.job, "status": self.status,
                                "exit_code": self.exit_code}
        if self.report is not None:
            data.update(self.report.as_dict())
            data["status"] = self.status
            data["exit_code"] = self.exit_code
        if self.error is not None:
            data["error"] = self.error
            data["error_kind"] = self.error_kind
        if self.acks is not None:
            data["acks"] = self.acks
        return data


@dataclass
class RecipientsReport:
    """Every recipient's outcome; ``exit_code`` is the worst of them."""

    job: str
    outcomes: list[RecipientOutcome] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return worst_exit_code([o.exit_code for o in self.outcomes])

    @property
    def status(self) -> str:
        statuses = {o.status for o in self.outcomes}
        return statuses.pop() if len(statuses) == 1 else "mixed"

    def summary(self) -> str:
        """The runs' summaries, one block per recipient."""
        blocks = []
        for o in self.outcomes:
            head = f"recipient {o.recipient} (job {o.job!r}):"
            if o.report is not None:
                body = o.report.summary(with_error=True)
            else:
                body = f"  {o.status}" + (f": {o.error}" if o.error else "")
            if o.acks and o.acks.get("rejected"):
                body += f"\n  the store rejected {len(o.acks['rejected'])} release(s): see `etl errors`"
            blocks.append(f"{head}\n" + "\n".join("  " + line for line in body.splitlines()))
        blocks.append(f"exit code {self.exit_code} (the worst of {len(self.outcomes)} recipient(s))")
        return "\n".join(blocks)

    def as_dict(self) -> dict[str, Any]:
        """One JSON object for ``--json``: the worst exit code and one entry per recipient."""
        return {"job": self.job, "status": self.status, "exit_code": self.exit_code,
                "recipients": [o.as_dict() for o in self.outcomes]}


def selected(cfg: Config, names: tuple[str, ...] | list[str] = ()) -> list[RecipientConfig]:
    """The recipients to run: all, in file order, or those named (``--recipient``)."""
    if not names:
        return list(cfg.recipients)
    known = {r.name: r for r in cfg.recipients}
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = ", ".join(known) or "none: etl.toml has no [[recipients]]"
        raise ConfigError(f"--recipient: unknown recipient(s) {', '.join(map(repr, unknown))}; known: {listed}")
    return [known[n] for n in dict.fromkeys(names)]


def recipient_of_run(cfg: Config, run_id: int) -> RecipientConfig:
    """The recipient whose job run ``run_id`` belongs to (for ``etl resume RUN_ID`` and ``retry-failed``)."""
    runs = run_api.recent_runs(cfg, limit=10_000)
    found = next((r for r in runs if r.run_id == run_id), None)
    if found is None:
        raise ConfigError(f"run {run_id} not found; fix: pick a run id from `etl runs`")
    for r in cfg.recipients:
        if found.job == f"{cfg.run.job}/{r.name}":
            return r
    raise ConfigError(
        f"run {run_id} belongs to job {found.job!r}, which is none of job {cfg.run.job!r}'s recipients "
        f"({', '.join(r.name for r in cfg.recipients)}); fix: run with the configuration it ran with"
    )


def read_acks_first(rcfg: Config) -> dict[str, Any] | None:
    """Before building: the store's acknowledgements (a store that cannot be reached is a warning here)."""
    if rcfg.recipient is None or rcfg.recipient.target is None:
        return None
    from ..delivery.store_acks import read_store_acks

    try:
        return read_store_acks(rcfg).as_dict()
    except EtlError as exc:
        log.warning("recipient %s: could not read the store's acknowledgements: %s", rcfg.recipient.name, exc)
        return {"error": str(exc)}


def check_target_first(rcfg: Config) -> None:
    """Before building anything: the recipient's target takes a file as an upload would (``delivery.target_probe``).

    A store that refuses the login, a host key that changed, a missing
    credential or bucket fails the recipient now, in seconds, instead of
    after its whole batch was built; nothing is built and no run row is made.
    """
    r = rcfg.recipient
    if r is None or r.target is None:
        return
    from ..delivery.target_probe import probe_target
    from ..errors import DeliveryError

    try:
        found = probe_target(r.target, dict(r.target_options))
    except ConfigError as exc:
        raise ConfigError([f"recipient {r.name}: its target needs a setting before anything is built: {p}"
                           for p in exc.problems]) from exc
    except DeliveryError as exc:
        raise type(exc)(f"recipient {r.name}: its target failed the check made before building, so nothing was "
                        f"built: {exc}") from exc
    log.info("recipient %s: %s", r.name, found)


def run_each(
    cfg: Config, names: tuple[str, ...] | list[str], call: Callable[[Config], run_api.RunReport | None], *,
    read_acks: bool = False, check_targets: bool = False,
) -> RecipientsReport:
    """``call(recipient_config)`` for each selected recipient, collecting outcomes in etl.toml's order.

    Up to ``run.parallel_recipients`` recipients go on side by side (threads:
    their time is the stores' round trips, not this machine's cores), so a
    slow or failing store holds back no other; each outcome stays its own.
    ``call`` returning None means the recipient had nothing to do (``etl resume``).
    """
    with one_budget():  # one retry budget for every recipient and phase (see ddex_etl.retry)
        return _run_each(cfg, names, call, read_acks=read_acks, check_targets=check_targets)


def _run_each(
    cfg: Config, names: tuple[str, ...] | list[str], call: Callable[[Config], run_api.RunReport | None], *,
    read_acks: bool, check_targets: bool,
) -> RecipientsReport:
    report = RecipientsReport(cfg.run.job)
    chosen = selected(cfg, names)
    shared = cfg.load.directory
    if cfg.load.target == "files" and not shared.exists() and shared.parent.is_dir():
        # Each recipient's folder is inside load.directory: that one is created like a single job's would be.
        shared.mkdir(exist_ok=True)
    side_by_side = min(cfg.run.parallel_recipients, len(chosen))
    if side_by_side > 1:
        report.outcomes = _side_by_side(cfg, chosen, call, read_acks, side_by_side, check_targets)
        return report
    for i, r in enumerate(chosen):
        outcome = _one(cfg, r, call, read_acks, check_targets)
        report.outcomes.append(outcome)
        if outcome.error_kind == InterruptedRun.__name__:
            report.outcomes.extend(_not_started(cfg, rest) for rest in chosen[i + 1:])
            break
    return report


def _one(cfg: Config, r: RecipientConfig, call: Callable[[Config], run_api.RunReport | None],
         read_acks: bool, check_targets: bool = False) -> RecipientOutcome:
    """One recipient's run (its target checked and acknowledgements read first, when asked), as an outcome;
    never raises an ``EtlError``."""
    rcfg = cfg.for_recipient(r)
    # Every line of this recipient (target check, acknowledgements, run) names its job, name and DPID.
    outer_job = logs.context().get("job")
    logs.bind(job=rcfg.run.job, recipient=r.name, recipient_dpid=rcfg.transform.recipient_dpid)
    outcome = RecipientOutcome(r.name, rcfg.run.job, "not started", ExitCode.OK)
    try:
        if check_targets:
            check_target_first(rcfg)
        if read_acks:
            outcome.acks = read_acks_first(rcfg)
        result = call(rcfg)
        if result is None:
            outcome.status = "nothing to resume"
        else:
            outcome.report, outcome.status, outcome.exit_code = result, result.status, result.exit_code
    except EtlError as exc:
        failed: run_api.RunReport | None = getattr(exc, "report", None)
        outcome.report = failed
        outcome.status = failed.status if failed is not None else "not started"
        outcome.exit_code = exc.exit_code
        outcome.error, outcome.error_kind = str(exc), type(exc).__name__
        log.debug("recipient %s: %s", r.name, exc)  # printed once, in the summary
    finally:
        logs.bind(job=outer_job, recipient=None, recipient_dpid=None)
    return outcome


def _not_started(cfg: Config, r: RecipientConfig) -> RecipientOutcome:
    return RecipientOutcome(r.name, cfg.for_recipient(r).run.job, "not started", ExitCode.INTERRUPTED,
                            error="an earlier recipient's run was interrupted", error_kind="InterruptedRun")


def _side_by_side(cfg: Config, chosen: list[RecipientConfig], call: Callable[[Config], run_api.RunReport | None],
                  read_acks: bool, limit: int, check_targets: bool = False) -> list[RecipientOutcome]:
    """The recipients' runs in ``limit`` threads; signals go from the main thread to every run (``loop.stop_all``).

    After a signal, recipients not started yet are not started (exit code 130, as one after another).
    """
    import contextvars
    import signal
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from .loop import stop_all

    stopped = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stopped.set()
        stop_all(signum)

    def task(r: RecipientConfig) -> RecipientOutcome:
        if stopped.is_set():
            return _not_started(cfg, r)
        return _one(cfg, r, call, read_acks, check_targets)

    old: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, on_signal)
    try:
        with ThreadPoolExecutor(limit, thread_name_prefix="etl-recipient") as pool:
            # each thread starts from a copy of the caller's log context (job, run id of the command)
            futures = [pool.submit(contextvars.copy_context().run, task, r) for r in chosen]
            return [f.result() for f in futures]
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def run(cfg: Config, *, recipients: tuple[str, ...] = (), **options: Any) -> RecipientsReport:
    """``ddex_etl.run.run`` for each recipient (``options`` as for it); reads acknowledgements first."""
    return run_each(cfg, recipients, lambda rcfg: run_api.run(rcfg, **options), read_acks=True,
                    check_targets=True)


def resume(cfg: Config, run_id: int | None = None, *, recipients: tuple[str, ...] = (),
           progress: bool | None = None) -> RecipientsReport:
    """Resume run ``run_id`` (its recipient's), or each selected recipient's unfinished run.

    Resuming every recipient (no ``recipients`` named) also looks for
    unfinished runs of recipients that etl.toml no longer lists: each is an
    outcome of its own with exit code 2, naming the run and the fix, so a
    store removed by mistake (a bad merge of etl.toml) cannot leave its
    batch half delivered behind an "all done".
    """
    if run_id is not None:
        owner = recipient_of_run(cfg, run_id)
        return run_each(cfg, [owner.name], lambda rcfg: run_api.resume(rcfg, run_id, progress=progress))

    def one(rcfg: Config) -> run_api.RunReport | None:
        try:
            return run_api.resume(rcfg, None, progress=progress)
        except ConfigError as exc:
            if "has no unfinished run" in str(exc):
                return None
            raise

    report = run_each(cfg, recipients, one)
    if not recipients:
        for run in unlisted_unfinished_runs(cfg):
            name = run.job[len(cfg.run.job) + 1:]
            report.outcomes.append(RecipientOutcome(
                name, run.job, "not in etl.toml", ExitCode.USAGE, error=unlisted_message(run, name),
                error_kind="ConfigError",
            ))
    return report


def unlisted_unfinished_runs(cfg: Config) -> list[state.RunRow]:
    """Unfinished runs of recipient jobs (``<run.job>/<name>``) whose recipient etl.toml does not list."""
    import sqlalchemy as sa

    from ..db import database_url, make_engine, map_db_error

    schema = cfg.database.state_schema
    engine = make_engine(database_url(cfg), pool_size=1)
    try:
        if state.current(engine, schema) is None:
            return []
        with engine.connect() as conn:
            runs = state.unfinished_runs_under(conn, schema, f"{cfg.run.job}/")
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, "looking for unfinished runs of recipients etl.toml no longer lists") from exc
    finally:
        engine.dispose()
    listed = {f"{cfg.run.job}/{r.name}" for r in cfg.recipients}
    return [r for r in runs if r.job not in listed]


def unlisted_message(run: state.RunRow, name: str) -> str:
    """Why an unfinished run of a recipient no longer in etl.toml is not resumed, and the fix."""
    return (
        f"run {run.id} ({run.mode}, {run.status}) of recipient {name!r} is unfinished, but etl.toml no longer "
        f"lists recipient {name!r}, so nothing resumes it; fix: put its [[recipients]] entry back as the run "
        f"started with it and `etl resume` (or `etl resume {run.id}`); if you no longer deliver to {name!r}, "
        "resume the others by name (`etl resume --recipient NAME ...`)"
    )


def retry_failed(cfg: Config, run_id: int | None = None, *, recipients: tuple[str, ...] = (),
                 progress: bool | None = None) -> RecipientsReport:
    """``run_api.retry_failed`` for run ``run_id``'s recipient, or for each selected recipient."""
    if run_id is not None:
        owner = recipient_of_run(cfg, run_id)
        return run_each(cfg, [owner.name], lambda rcfg: run_api.retry_failed(rcfg, run_id, progress=progress))

    def one(rcfg: Config) -> run_api.RunReport | None:
        try:
            return run_api.retry_failed(rcfg, None, progress=progress)
        except ConfigError as exc:
            if "no rejected releases left" in str(exc) or "no runs recorded" in str(exc):
                return None
            raise

    return run_each(cfg, recipients, one)


def rejected(cfg: Config, run_id: int | None = None, *,
             include_resolved: bool = False) -> list[tuple[str, list[state.RejectRow], list[Any]]]:
    """Per recipient: the releases its newest run (or run ``run_id``) rejected, and those its store rejected
    (``run_api.StoreRejection``: each says whether it was delivered again since)."""
    from ..db import database_url, make_engine
    from .reporting import store_rejections

    chosen = [recipient_of_run(cfg, run_id)] if run_id is not None else list(cfg.recipients)
    out = []
    for r in chosen:
        rcfg = cfg.for_recipient(r)
        rows = run_api.rejected(rcfg, run_id, include_resolved=include_resolved)
        engine = make_engine(database_url(rcfg), pool_size=1)
        try:
            if state.current(engine, rcfg.database.state_schema) != state.HEAD:
                acks: list[Any] = []
            else:
                with engine.connect() as conn:
                    acks = store_rejections(conn, rcfg, run_id)
        finally:
            engine.dispose()
        out.append((r.name, rows, acks))
    return out

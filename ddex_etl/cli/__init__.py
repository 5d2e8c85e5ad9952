"""The ``etl`` command (``etl = "ddex_etl.cli:main"``, ``python -m ddex_etl``).

Thin: each command parses its arguments, makes one library call and turns
the library's errors into a message and an exit code. One module per
command group:

    app       the ``etl`` group, global options, output, the one error handler, main()
    seed      etl seed
    run       etl run, etl resume, etl retry-failed
    report    etl status, etl runs, etl errors
    acks      etl acks
    validate  etl validate
    db        etl db upgrade | downgrade | current | stop
    config    etl config check

The commands are added to the group here, in one place: any import of
``ddex_etl.cli`` (or of a module inside it) runs this first, so the group is
whole before anything can call it.
"""
from __future__ import annotations

from . import acks, config, db, report, run, seed, validate
from .app import cli, exit_process, main
from .run import _with_run_overrides as _with_run_overrides

cli.add_command(seed.seed)
cli.add_command(run.run)
cli.add_command(run.resume)
cli.add_command(run.retry_failed)
cli.add_command(report.status)
cli.add_command(report.runs)
cli.add_command(report.errors)
cli.add_command(acks.acks)
cli.add_command(validate.validate)
cli.add_command(db.db)
cli.add_command(config.config_group)

__all__ = ["cli", "exit_process", "main"]

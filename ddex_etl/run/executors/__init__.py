"""Choose the engine that runs a run's chunks (see ``base.ChunkExecutor``)."""
from __future__ import annotations

import importlib
import logging
import os

from ...config import Config, unused_scheduler_notice
from ...errors import ConfigError
from ..chunks import WorkerSpec
from .base import ChunkExecutor

__all__ = ["ChunkExecutor", "executor_for"]

log = logging.getLogger("ddex_etl.pipeline")
# Notices already logged by this process: once per `etl run`, not once per recipient.
_NOTICED: set[str] = set()


def executor_for(cfg: Config, spec: WorkerSpec) -> ChunkExecutor:
    """The executor named by ``cfg.run.executor`` ("local" when unset), started and ready for chunks.

    Called before migrations and the job lock: local workers fork while this
    process is single-threaded and holds no connection; an unreachable Dask
    scheduler fails before any run row exists.
    """
    name = cfg.run.executor or "local"
    notice = unused_scheduler_notice(cfg)
    if notice is not None and notice not in _NOTICED:
        _NOTICED.add(notice)
        log.warning("%s", notice)
    if name == "local":
        from .local import LocalExecutor

        return LocalExecutor(spec, cfg.run.workers or os.cpu_count() or 1)
    if name == "dask":
        try:
            dask = importlib.import_module(f"{__name__}.dask")
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"run.executor = 'dask' needs the Dask executor and its packages ({exc.name} is missing); "
                "fix: pip install 'ddex-etl[dask]', or set run.executor = 'local'"
            ) from exc
        executor: ChunkExecutor = dask.DaskExecutor.from_config(cfg, spec)
        return executor
    raise ConfigError(f"unknown run.executor {name!r}; fix: use 'local' or 'dask'")

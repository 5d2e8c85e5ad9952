"""Retrying what a retry can fix: a time budget, exponential backoff, the last message honest.

A routine PostgreSQL failover or restart takes tens of seconds. A budget of
a few retries (seconds) pages someone for it; a budget in *time*
(``run.retry_for``, two minutes by default) rides it out, with pauses that
double from ``run.retry_delay`` up to ``MAX_PAUSE`` so a long outage costs
few attempts. ``run.max_retries``, when set, caps the count as well.
Terminal errors are never retried.

The budget is one per command, not one per call: inside ``one_budget()``
(``etl run`` opens it around every recipient and phase) the retry loops
share one outage clock, started by the first transient fault and stopped
by the next call that succeeds. A database that stays unreachable costs
``retry_for`` once; the second recipient's first attempt, failing too,
ends at once instead of waiting ``retry_for`` again.
"""
from __future__ import annotations

import contextvars
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from .db import map_db_error
from .errors import EtlError, TransientError
from .masking import mask_text

log = logging.getLogger("ddex_etl.retry")

T = TypeVar("T")
MAX_PAUSE = 30.0  # seconds; the pauses stop doubling here


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep retrying a transient fault."""

    retry_for: float | None = 120.0  # seconds since the first failure; None: no time limit
    delay: float = 1.0  # the first pause; each next one doubles (with jitter), up to MAX_PAUSE
    max_retries: int | None = None  # None: as many as fit in retry_for

    @classmethod
    def of(cls, run: Any) -> RetryPolicy:
        """The policy of a ``RunConfig`` (``run.retry_for``, ``run.retry_delay``, ``run.max_retries``)."""
        return cls(retry_for=run.retry_for, delay=run.retry_delay, max_retries=run.max_retries)

    def pause(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (full jitter in the upper half)."""
        return random.uniform(0.5, 1.0) * min(MAX_PAUSE, self.delay * (2**attempt))

    def describe(self) -> str:
        if self.max_retries is not None and self.retry_for is not None:
            return f"up to {self.max_retries} retries within {self.retry_for:g} s"
        if self.max_retries is not None:
            return f"up to {self.max_retries} retries"
        if self.retry_for is not None:
            return f"retrying for up to {self.retry_for:g} s"
        return "retrying until it clears"


NO_RETRIES = RetryPolicy(retry_for=0.0, max_retries=0)


@dataclass
class Outage:
    """When the present run of transient faults began (None: the last call succeeded)."""

    since: float | None = None


_OUTAGE: contextvars.ContextVar[Outage | None] = contextvars.ContextVar("ddex_etl_outage", default=None)


@contextmanager
def one_budget() -> Iterator[Outage]:
    """Share one outage clock between every ``with_retries`` call inside (nested scopes join the outer one)."""
    outer = _OUTAGE.get()
    if outer is not None:
        yield outer
        return
    outage = Outage()
    token = _OUTAGE.set(outage)
    try:
        yield outage
    finally:
        _OUTAGE.reset(token)


def with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy,
    should_stop: Callable[[], bool] = lambda: False,
) -> T:
    """Call ``fn``; retry TransientError (and driver errors that map to one) within ``policy``.

    Terminal errors pass straight through: no retry loop for bad credentials or
    a missing table. The error that ends the loop says how long it tried.
    """
    attempt = 0
    shared = _OUTAGE.get()
    first_failure: float | None = None
    while True:
        try:
            result = fn()
        except EtlError as exc:
            err: EtlError = exc
        except sa.exc.DBAPIError as exc:
            err = map_db_error(exc, what)
            if not isinstance(err, TransientError):
                raise err from exc
        except sa.exc.TimeoutError as exc:
            err = map_db_error(exc, what)
        else:
            if shared is not None:
                shared.since = None  # the outage is over: the next fault starts a new budget
            return result
        if not isinstance(err, TransientError) or should_stop():
            raise err
        now = time.monotonic()
        if first_failure is None:
            first_failure = now
            if shared is not None:
                if shared.since is None:
                    shared.since = now
                first_failure = shared.since  # an outage an earlier call already waited on
        elapsed = now - first_failure
        pause = policy.pause(attempt)
        if policy.retry_for is not None:
            pause = min(pause, policy.retry_for - elapsed)  # one last try right at the deadline
        out_of_count = policy.max_retries is not None and attempt >= policy.max_retries
        out_of_time = pause <= 0
        if out_of_count or out_of_time:
            if attempt == 0 and elapsed >= 1.0 and policy.retry_for is not None:
                text = str(err).replace("; will retry", "")
                raise TransientError(
                    f"{text}; not retried: this run has already waited {elapsed:.0f} s for it to clear "
                    f"(run.retry_for = {policy.retry_for:g} s is one budget per run)"
                ) from err
            if attempt == 0:
                raise err
            # Drop the "will retry" promise: this message is the one that ends the run.
            text = str(err).replace("; will retry", "")
            raise TransientError(f"{text}; gave up after {attempt} retries in {elapsed:.0f} s") from err
        text = mask_text(str(err)) or type(err).__name__
        # Errors mapped here (or by a helper given the same words) already start with ``what``.
        shown = text if text.startswith(what) else f"{what}: {text}"
        count = f"{attempt + 1}/{policy.max_retries}" if policy.max_retries is not None else f"{attempt + 1}"
        log.warning("%s; retry %s in %.1f s (%s)", shown, count, pause, policy.describe())
        time.sleep(pause)
        attempt += 1

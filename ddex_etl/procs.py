"""Processes: the start methods of the worker pools, and whether a process of this host still lives."""
from __future__ import annotations

import multiprocessing
import os
import threading


def single_threaded() -> bool:
    """True when no other Python thread runs, so a fork copies no Python lock held mid-update.

    Threads of C libraries (OpenBLAS under NumPy, say) do not count: they
    guard their own state across fork with ``pthread_atfork`` handlers.
    """
    return threading.active_count() == 1 and threading.current_thread() is threading.main_thread()


def can_fork() -> bool:
    """``fork`` is available (with ``forkserver`` as the fallback) and safe right now."""
    methods = multiprocessing.get_all_start_methods()
    return "fork" in methods and "forkserver" in methods and single_threaded()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists (owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

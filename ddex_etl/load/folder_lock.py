"""One run per output folder: an exclusive ``flock`` on a lock file beside the run's files.

The job lock (PostgreSQL) keeps two runners of one job apart; it cannot see a
second job, in another state schema or another database, configured with the
same output folder. Two runs writing one flat folder overwrite each other's
files, and each one's start-up clean-up would remove the other's temp files
mid-write. The folder lock makes the second run refuse at start, naming the
run that holds the folder.

``flock`` is released by the kernel when the holder dies, SIGKILL included, so
a crash never leaves a stale lock. The lock file holds who took it (job, run,
pid, host, since): only for the message a refused run prints; the lock itself
is the ``flock``.

Limits: on NFS, Linux maps ``flock`` to NFS byte-range locks, which work
across hosts only where the server supports locking (NFSv4, or v3 with
lockd); on a filesystem without locking the folder is used unlocked, with a
warning.
"""
from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from ..errors import OutputError

log = logging.getLogger("ddex_etl.load")

_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
# Filesystems that do not implement flock answer with one of these.
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


class FolderLock:
    """An exclusive, non-blocking ``flock`` on ``path``, held by this process until ``release``."""

    def __init__(self, path: Path, folder: Path, what: str) -> None:
        self.path = Path(path)
        self.folder = folder  # the folder the lock protects, for messages
        self.what = what  # "output folder" / "batch folder"
        self._fd: int | None = None
        self.held = False  # False also when the filesystem cannot lock

    def acquire(self, holder: dict[str, Any]) -> None:
        """Take the lock or raise OutputError naming the run that holds it (and the fix)."""
        for _ in range(5):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = _read_holder(fd)
                os.close(fd)
                raise OutputError(self._in_use(other)) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno in _UNSUPPORTED:
                    log.warning(
                        "cannot lock %s (%s): a second job writing the same folder will not be detected",
                        self.folder, errno.errorcode.get(exc.errno or 0, exc.errno),
                    )
                    return
                raise OutputError(f"cannot lock {self.path}: {exc.strerror}; fix: check the output directory") from exc
            # A holder that was releasing may have unlinked the file between our open and
            # our flock: then we hold a lock on a file nobody else can find. Start over.
            if not self._still_linked(fd):
                os.close(fd)
                continue
            self._fd = fd
            self.held = True
            self.update(holder)
            return
        raise OutputError(f"cannot lock {self.path}: it keeps being replaced; fix: check what else writes into {self.folder}")

    def update(self, holder: dict[str, Any]) -> None:
        """Rewrite who holds the lock (the run id is known only once the run row exists)."""
        if self._fd is None:
            return
        info = {
            **holder,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        data = (json.dumps(info, sort_keys=True) + "\n").encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError as exc:  # only the refusal message of another run depends on it
            log.debug("could not record the holder in %s: %s", self.path, exc)

    def release(self) -> None:
        """Remove the lock file (while still holding the lock) and drop the lock. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        self.held = False
        try:
            if self._still_linked(fd):
                os.unlink(self.path)
        except OSError as exc:
            log.debug("could not remove %s: %s", self.path, exc)
        finally:
            os.close(fd)  # drops the flock

    def _open(self) -> int:
        try:
            return os.open(self.path, _OPEN_FLAGS, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutputError(
                    f"cannot lock {self.folder}: {self.path} is a symbolic link; ddex-etl never writes through "
                    "a link inside the output folder; fix: remove that link, then run again"
                ) from exc
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise OutputError(
                    f"cannot write {self.path}: permission denied; fix: make the output directory writable "
                    "for this user, or set load.directory"
                ) from exc
            raise OutputError(
                f"cannot create the lock file {self.path}: {exc.strerror}; fix: check the output directory"
            ) from exc

    def _still_linked(self, fd: int) -> bool:
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    def _in_use(self, other: dict[str, Any] | None) -> str:
        if other:
            who = f"run {other.get('run_id', '?')} of job {other.get('job', '?')!r} " \
                  f"(pid {other.get('pid', '?')} on {other.get('host', '?')}, since {other.get('since', '?')})"
        else:
            who = "another ddex-etl run"
        return (
            f"{self.what} {self.folder} is in use by {who}: two runs writing one folder would overwrite "
            f"each other's files; fix: give each job its own load.directory (ETL_OUTPUT_DIR), "
            f"or run the jobs one after the other (lock file: {self.path})"
        )


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None

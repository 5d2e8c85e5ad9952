"""Safe file-system steps inside an output folder: open without following links, durable syncs, errors that name the fix."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import stat
import sys
from pathlib import Path

from ..errors import OutputError


def _load_syncfs() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.syncfs
        fn.argtypes = [ctypes.c_int]
        return fn
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


def _output_error(exc: OSError, path: Path | str) -> OutputError:
    """An OSError while writing output, as a message naming the file, the cause and the fix."""
    code = exc.errno
    if code == errno.EROFS:
        why, fix = "the filesystem is mounted read-only", "set load.directory to a folder on a writable filesystem"
    elif code == errno.EACCES:
        why, fix = "permission denied", "make the output directory writable for this user, or set load.directory"
    elif code == errno.EPERM:
        why, fix = (
            "operation not permitted (the filesystem or a security policy refuses it, whatever the file modes say)",
            "set load.directory to a folder on an ordinary filesystem this user may write",
        )
    elif code in (errno.ENOSPC, errno.EDQUOT):
        why, fix = "the disk is full", "free space on that filesystem (or raise the quota), then `etl resume`"
    elif code == errno.EFBIG:
        why, fix = "the file is larger than the allowed file size", "raise the file-size limit (ulimit -f), then `etl resume`"
    elif code in (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ):
        why, fix = "the filesystem refused the file name", "use a filesystem that accepts it, or fix the release's identifier"
    elif code == errno.ENOENT and Path(path).parent.is_dir():
        # The folder is there, yet "no such file": a filesystem that takes no new files (/proc, /sys).
        why, fix = (
            f"no such file or directory although {Path(path).parent} exists: that filesystem does not let "
            "files be created there",
            "set load.directory to a folder on an ordinary filesystem",
        )
    elif code == errno.ENOENT:
        why, fix = "the folder disappeared", "recreate the output directory, then `etl resume`"
    else:
        why, fix = exc.strerror or type(exc).__name__, "check the output directory, then `etl resume`"
    return OutputError(f"cannot write {path}: {why} ({errno.errorcode.get(code or 0, code)}); fix: {fix}")


# Every name this loader creates inside the output folder is opened relative to
# a folder descriptor, never through a symbolic link, and a new file must not exist.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _is_link(parent: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_folder(parent: int, name: str, parent_path: Path | str) -> int:
    """Open the folder ``name`` inside ``parent``, refusing a symbolic link (it could lead outside).

    ``parent_path`` only names ``parent`` in messages (joined on error: this runs once per file).
    """
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        shown = os.path.join(parent_path, name)
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            if _is_link(parent, name):
                raise OutputError(
                    f"cannot write into {shown}: it is a symbolic link, and ddex-etl never writes through a link "
                    "inside the output folder (it could lead outside it); fix: replace the link with a real "
                    "folder (or remove it), then `etl resume`"
                ) from exc
            raise OutputError(f"cannot write into {shown}: it is a file, not a folder; fix: move it away, then `etl resume`") from exc
        raise _output_error(exc, shown) from exc


RESOURCES = "resources"


def remove_resources(release_fd: int) -> int:
    """Remove the files in a release folder's ``resources/`` and the folder itself (a link is only unlinked)."""
    try:
        rfd = os.open(RESOURCES, _DIR_FLAGS, dir_fd=release_fd)
    except FileNotFoundError:
        return 0
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(RESOURCES, dir_fd=release_fd)  # a link or a file in its place: never followed
        return 0
    removed = 0
    try:
        with os.scandir(rfd) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=rfd)
                        removed += 1
    finally:
        os.close(rfd)
    with contextlib.suppress(OSError):
        os.rmdir(RESOURCES, dir_fd=release_fd)
    return removed

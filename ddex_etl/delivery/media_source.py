"""The media root, read safely: the one way ddex-etl opens a media file.

``MediaRoot(url).open(source)`` returns a ``MediaFile`` (a stream to read in
blocks, and its size), or raises ``MediaRefused`` with what is wrong and what
fixes it, for

* a path that would leave the root: absolute, or with an empty, ``.`` or
  ``..`` segment (an object-store key likewise: it must be a plain key
  under the root's prefix);
* a symbolic link anywhere below the root. In a folder, every segment is
  opened relative to its parent folder's descriptor with ``O_NOFOLLOW``, so
  a link is refused wherever it sits, whatever it points at (the root itself
  may be a link its operator made). Object stores have no links;
* anything but a regular file (a FIFO, a device, a socket, a folder): the
  file is opened with ``O_NONBLOCK`` (a FIFO without a writer cannot block
  the open) and checked with ``fstat`` before a byte is read;
* an empty file, and one larger than ``max_bytes`` (``load.max_media_bytes``),
  also when it grows past that, or changes size, while it is read.

``check(source)`` asks the same questions without reading the file (the dry
run). Nothing here knows releases or catalog fields: the caller names them.
Every fault of the returned stream is a fault of the media root (the read
side); what the caller writes is its own.

Written by hand because Python offers no ``openat2(RESOLVE_NO_SYMLINKS |
RESOLVE_BENEATH)``; walking the path one descriptor at a time with
``O_NOFOLLOW`` is the portable way to the same guarantee, without the race of
resolving a path first and opening it afterwards.
"""
from __future__ import annotations

import errno
import fcntl
import os
import posixpath
import stat
from typing import Any, Self

from ..errors import ConfigError, EtlError
from .targets import check_options

# The default limit (load.max_media_bytes has the same default, a test checks):
# more than any audio track or cover (a WAV cannot pass 4 GiB), little enough
# that a wrong file cannot fill the output disk.
MAX_MEDIA_BYTES = 4 << 30

_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_FLAGS = _ROOT_FLAGS | os.O_NOFOLLOW
_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC

_LIMIT_FIX = ("raise load.max_media_bytes if the file is right (it is read in blocks, never held whole), or replace "
              "it with the right file, then retry the release")
_LINK_FIX = ("put the file itself there (a copy or a hard link inside the media root), or correct the path in the "
             "catalog, then retry the release")


class MediaRefused(EtlError):
    """A media file the media root will not hand out: ``problem`` (naming the path) and ``fix``.

    ``missing``: the file is not there (the caller may say what it expected).
    """

    def __init__(self, path: str, problem: str, fix: str, *, missing: bool = False) -> None:
        self.path, self.problem, self.fix, self.missing = path, problem, fix, missing
        super().__init__(f"{problem}; fix: {fix}")

    def __reduce__(self) -> tuple[Any, ...]:
        return _refused, (self.path, self.problem, self.fix, self.missing)


def _refused(path: str, problem: str, fix: str, missing: bool) -> MediaRefused:
    return MediaRefused(path, problem, fix, missing=missing)


def _what(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _link(path: str) -> MediaRefused:
    return MediaRefused(path, f"{path} is a symbolic link, and ddex-etl never follows a link inside the media root "
                              "(it could lead outside it)", _LINK_FIX)


def _not_regular(path: str, what: str) -> MediaRefused:
    return MediaRefused(path, f"{path} is {what}, not a regular file; media files must be regular files",
                        "put the audio or image file itself there, or correct the path in the catalog, then retry "
                        "the release")


def _checked_size(path: str, size: int | None, max_bytes: int) -> None:
    if size == 0:
        raise MediaRefused(path, f"{path} is empty (0 bytes)",
                           "replace it with the real file (an empty file is never valid audio or artwork), then "
                           "retry the release")
    if size is not None and size > max_bytes:
        raise MediaRefused(path, f"{path} is {size:,} bytes, more than load.max_media_bytes = {max_bytes:,}",
                           _LIMIT_FIX)


def _missing(path: str) -> MediaRefused:
    return MediaRefused(path, f"file not found at {path}",
                        "put the file there, or correct the path in the catalog, then retry the release", missing=True)


class MediaFile:
    """A media file opened by ``MediaRoot.open``: ``read(n)`` it in blocks, then ``close()`` it (or use ``with``).

    ``size`` is what the file measured when opened (None when the store did
    not say). Reading past ``max_bytes``, or reaching the end at another size
    than ``size``, raises ``MediaRefused``: a file that changes while it is
    read is never passed on as if it were whole.
    """

    def __init__(self, raw: Any, size: int | None, path: str, max_bytes: int) -> None:
        self._raw = raw
        self.size = size
        self.path = path
        self.max_bytes = max_bytes
        self._read = 0

    def read(self, n: int) -> bytes:
        block: bytes = self._raw.read(n)
        if block:
            self._read += len(block)
            if self._read > self.max_bytes:
                raise MediaRefused(self.path, f"{self.path} grew past load.max_media_bytes = {self.max_bytes:,} "
                                              "while it was read", _LIMIT_FIX)
        elif self.size is not None and self._read != self.size:
            raise MediaRefused(self.path, f"{self.path} changed while it was read ({self.size:,} bytes when opened, "
                                          f"{self._read:,} read)",
                               "retry the release once nothing is writing that file any more")
        elif self._read == 0:
            _checked_size(self.path, 0, self.max_bytes)
        return block

    def header_view(self) -> HeaderView:
        """A seekable view for reading a file's headers (``delivery.media_probe``), counting what it reads.

        Reads through the view skip the whole-file checks of ``read`` (a probe
        seeks and stops early) but never go past ``max_bytes``.
        """
        return HeaderView(self._raw, self.path, self.max_bytes)

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HeaderView:
    """Read-only, seekable access to an opened media file for a header parser; ``bytes_read`` says how much it took."""

    def __init__(self, raw: Any, path: str, max_bytes: int) -> None:
        self._raw = raw
        self.name = path  # parsers guess a format from the name's extension too
        self.max_bytes = max_bytes
        self.bytes_read = 0

    def read(self, n: int = -1) -> bytes:
        left = self.max_bytes - self.tell()
        if n is None or n < 0 or n > left:
            n = max(left, 0)
        block: bytes = self._raw.read(n)
        self.bytes_read += len(block)
        return block

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._raw.seek(offset, whence))

    def tell(self) -> int:
        return int(self._raw.tell())

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


class MediaRoot:
    """Where media files are read from: a local folder or any fsspec URL (``s3://bucket/media``, ...).

    ``storage_options`` go to the fsspec filesystem (e.g. ``client_kwargs``
    with an ``endpoint_url``); options that look like secrets are refused, as
    for targets: credentials come from the environment.
    """

    def __init__(self, url: str | os.PathLike[str], **storage_options: Any) -> None:
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        url = os.fspath(url)
        check_options(url, storage_options)
        self.url = url
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"media root {url}: {exc}; fix: use a folder or a URL fsspec can open") from None
        # A folder (a path or file://) is read through descriptors, never through fsspec's path calls.
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = root.rstrip("/") or ("/" if self.local else "")

    def path(self, source: str) -> str:
        """Where ``source`` is, for messages (and fsspec calls)."""
        if not self.root:
            return source
        return f"{self.root.rstrip('/')}/{source}"

    def open(self, source: str, *, max_bytes: int = MAX_MEDIA_BYTES, block_size: int | None = None) -> MediaFile:
        """Open ``source`` (relative to the root) for reading, or raise ``MediaRefused`` (see the module).

        ``block_size``: an object store's read-ahead (a header probe asks for
        little, so it need not fetch fsspec's default blocks of megabytes).
        """
        if self.local:
            fd, size = self._open_local(source, max_bytes, read=True)
            return MediaFile(os.fdopen(fd, "rb", buffering=0), size, self.path(source), max_bytes)
        path, remote_size = self._remote(source, max_bytes)
        try:
            raw = self.fs.open(path, "rb", **({"block_size": block_size} if block_size else {}))
        except FileNotFoundError:
            raise _missing(self.path(source)) from None
        return MediaFile(raw, remote_size, self.path(source), max_bytes)

    def check(self, source: str, *, max_bytes: int = MAX_MEDIA_BYTES) -> int | None:
        """``open``'s checks without opening the file: its size, or ``MediaRefused``."""
        if self.local:
            return self._open_local(source, max_bytes, read=False)[1]
        return self._remote(source, max_bytes)[1]

    # ----------------------------------------------------------------------- a folder

    def _segments(self, source: str) -> list[str]:
        parts = source.split("/") if isinstance(source, str) else []
        if not parts or any(p in ("", ".", "..") for p in parts) or "\x00" in source:
            raise MediaRefused(self.path(str(source)), f"{source!r} would leave the media root {self.url} (absolute, "
                               "or an empty, '.' or '..' segment)",
                               "store media paths relative to the media root, e.g. 'audio/0001/01.flac'")
        return parts

    def _open_local(self, source: str, max_bytes: int, *, read: bool) -> tuple[int, int]:
        """(descriptor or -1, size) of ``source``: every segment opened below the root without following a link."""
        parts = self._segments(source)
        try:
            folder = os.open(self.root, _ROOT_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise MediaRefused(self.root, f"the media root {self.root} is not a folder",
                               "set load.media_root (or the recipient's media_root) to the folder holding the media",
                               missing=True) from None
        try:
            for i, name in enumerate(parts[:-1]):
                shown = self.path("/".join(parts[: i + 1]))
                try:
                    inner = os.open(name, _DIR_FLAGS, dir_fd=folder)
                except FileNotFoundError:
                    raise _missing(self.path(source)) from None
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
                    if stat.S_ISLNK(mode):
                        raise _link(shown) from None
                    raise _not_regular(shown, _what(mode) + " where a folder belongs") from None
                os.close(folder)
                folder = inner
            name = parts[-1]
            shown = self.path(source)
            try:
                st = os.stat(name, dir_fd=folder, follow_symlinks=False)
            except FileNotFoundError:
                raise _missing(shown) from None
            if stat.S_ISLNK(st.st_mode):
                raise _link(shown)
            if not stat.S_ISREG(st.st_mode):
                raise _not_regular(shown, _what(st.st_mode))  # never opened: a device's open can act
            if not read:
                _checked_size(shown, st.st_size, max_bytes)
                return -1, st.st_size
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=folder)
            except FileNotFoundError:
                raise _missing(shown) from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # became a link since the stat
                    raise _link(shown) from None
                raise
        finally:
            os.close(folder)
        try:
            st = os.fstat(fd)  # what was opened, whatever the name holds by now
            if not stat.S_ISREG(st.st_mode):
                raise _not_regular(shown, _what(st.st_mode))
            _checked_size(shown, st.st_size, max_bytes)
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        except BaseException:
            os.close(fd)
            raise
        return fd, st.st_size

    # ----------------------------------------------------------------------- an fsspec URL

    def _remote(self, source: str, max_bytes: int) -> tuple[str, int | None]:
        """The key of ``source`` under the prefix and its size, refusing keys that leave it and non-files."""
        self._segments(source)
        path = self.path(source)
        prefix = self.root.rstrip("/") + "/" if self.root else ""
        if posixpath.normpath(path) != path.rstrip("/") or not path.startswith(prefix):
            raise MediaRefused(path, f"{source!r} would leave the media root {self.url}",
                               "store media paths relative to the media root, e.g. 'audio/0001/01.flac'")
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            raise _missing(path) from None
        if info.get("islink"):
            raise _link(path)
        kind = info.get("type")
        if kind != "file":
            raise _not_regular(path, "a folder" if kind == "directory" else f"of type {kind!r}")
        size = info.get("size")
        size = int(size) if size is not None else None
        _checked_size(path, size, max_bytes)
        return path, size

"""Delivery targets by URL: a local folder, an SFTP server, an S3 bucket, anything fsspec serves.

``open_target(url, **options)`` returns a ``Target``; every path it takes is
relative to the URL's folder or prefix and checked by ``safe_relpath``, so
catalog data can never write outside it. The interface::

    target = open_target("sftp://ddex@sftp.store.example:22/incoming", key_file="~/.ssh/store")
    target.put_bytes("20260101120000000/0602445790001/0602445790001.xml", xml)   # atomic
    target.put_file("20260101120000000/0602445790001/resources/01.flac", local_path)
    target.exists(rel) / target.read_bytes(rel) / target.remove(rel)
    target.list("20260101120000000")   # {relative path: RemoteObject(size, md5 or None)}, recursively
    target.list_folder("20260101120000000")  # Folder(exists, files by name, sub-folders): one request
    target.read_head(rel, limit)       # at most limit bytes (acknowledgements: bounded memory)
    target.describe()                  # the URL for messages and logs, password masked
    target.close()

How each kind makes a file appear whole or not at all:

* ``file://`` or a plain path, ``sftp://``: the bytes go to a temp file under
  ``<root>/.etl-partial/<first path segment>/`` (outside every batch folder,
  so a store polling the batch never sees a half file), then one rename puts
  it in place (``os.replace`` locally, the ``posix-rename@openssh.com``
  extension over SFTP: an atomic replace). ``clean_temp(batch)`` removes what
  a killed upload left there.
* ``s3://`` (and ``gs://`` and other object stores): one PUT of the whole
  object (``pipe_file``), which the store commits only when every byte
  arrived; S3 also gets ``Content-MD5`` so a corrupted body is refused.
  Files above ``single_put_max`` (64 MiB by default) go up as a multipart
  upload, which the store likewise commits only at the end (see
  docs/delivery.md for the lifecycle rule that removes parts of uploads a
  kill abandoned). A streamed ``open(..., "wb")`` is never used: it commits a
  partial object when an error closes it.

Faults: each operation is retried ``retries`` times with exponential backoff
and jitter (``backoff`` seconds first) when a retry can help (connection
lost, timeout, S3 ``503 SlowDown``); the libraries' own retry loops are
turned off for S3 so that this one policy applies. What is left is raised as
``DeliveryTransientError`` (resume later) or ``DeliveryTerminalError`` (fix
something first), naming the target, the path and the fix.

Credentials never come from options: SFTP uses a key file, the SSH agent or
a password read from the environment variable named by ``password_env``;
S3 uses the usual AWS environment variables, config files or instance role.
Options that look like secrets (``password``, ``secret``, ``token``, ...)
are refused, so a secret cannot reach ``etl.toml`` through a recipient's
target options.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError
from .paths import join
from .target_base import DEFAULT_TRANSFERS, TEMP_DIR, Folder, RemoteObject, Target, classify_error
from .target_kinds import DEFAULT_SINGLE_PUT_MAX, LocalTarget, ObjectTarget, SFTPTarget

__all__ = ["TEMP_DIR", "Folder", "LocalTarget", "ObjectTarget", "RemoteObject", "SFTPTarget", "Target", "check_options",
           "classify_error", "mask_url", "open_target"]

_SECRET_OPTIONS = re.compile(r"(^|_)(password|passwd|passphrase|secret|token|key|credentials?)$", re.I)
_ALLOWED_OPTIONS = {"key_file", "password_env"}


# --------------------------------------------------------------------------- open_target


def check_options(url: str, options: dict[str, Any]) -> None:
    """Refuse options that would carry a secret (``ConfigError``): secrets come from the environment."""
    secret = sorted(k for k in options if k not in _ALLOWED_OPTIONS and _SECRET_OPTIONS.search(k))
    if secret:
        raise ConfigError(
            f"target {mask_url(url)}: option(s) {', '.join(secret)} would hold a secret; fix: remove them and use "
            "password_env (SFTP) or the AWS environment / config files (S3), never etl.toml"
        )


_BANDWIDTH = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]?)(?:i?B)?(?:/s)?\s*")
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_bandwidth(value: Any, *, where: str = "max_bandwidth") -> float:
    """Bytes per second from a number or a string like ``"512k"``, ``"10M"``, ``"10MB/s"`` (binary units)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: max_bandwidth must be bytes per second or a size like '10M', got {value!r}")
    if isinstance(value, int | float):
        rate = float(value)
    else:
        found = _BANDWIDTH.fullmatch(str(value))
        if found is None:
            raise ConfigError(f"{where}: max_bandwidth {value!r} is not a rate; fix: write bytes per second "
                              "(e.g. 1048576) or a size per second like '512k', '10M' or '1G'")
        rate = float(found.group(1)) * _UNITS[found.group(2).lower()]
    if rate <= 0:
        raise ConfigError(f"{where}: max_bandwidth must be more than 0, got {value!r}")
    return rate


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return parts._replace(netloc=f"{user}@{netloc[1]}").geturl()


def open_target(url: str, **options: Any) -> Target:
    """The target a URL names: ``file://`` or a plain path, ``sftp://``, ``s3://``, or any fsspec protocol.

    Common options: ``retries`` (attempts per operation, default 5), ``backoff``
    (first wait in seconds, default 0.5), ``transfers`` (files in flight at
    once, default 8), ``max_bandwidth`` (bytes per second over all of them,
    or ``"10M"``; default no limit). ``file``: ``durable`` (fsync, default
    true). ``sftp``: ``key_file``, ``password_env`` (name of the environment
    variable holding the password), ``known_hosts`` (default
    ``~/.ssh/known_hosts``), ``host_key_policy`` (``reject``, the default, or
    ``auto_add``), ``timeout`` (seconds, default 30: the connection and every
    request), ``allow_agent``. ``s3``: ``endpoint_url``,
    ``region``, ``profile``, ``single_put_max``, ``timeout`` (seconds, default
    30, for every request), ``multipart_threshold`` (32 MiB), ``part_size``
    (8 MiB). Other protocols: options go to
    the fsspec filesystem. Raises ``ConfigError`` for a bad URL or option.
    """
    check_options(url, options)
    retry = {k: options.pop(k) for k in ("retries", "backoff") if k in options}
    if "transfers" in options:
        transfers = options.pop("transfers")
        if isinstance(transfers, bool) or not isinstance(transfers, int):
            raise ConfigError(f"target {mask_url(url)}: transfers must be a whole number (files in flight), "
                              f"got {transfers!r}")
        retry["transfers"] = transfers
    if options.get("max_bandwidth") is not None:
        retry["max_bandwidth"] = parse_bandwidth(options.pop("max_bandwidth"), where=f"target {mask_url(url)}")
    options.pop("max_bandwidth", None)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            raise ConfigError(f"target {url}: write file:///absolute/folder (three slashes) or a plain folder path")
        path = unquote(parts.path) if scheme == "file" else url
        durable = bool(options.pop("durable", True))
        _no_more(url, options)
        return LocalTarget(Path(path).expanduser(), durable=durable, **retry)
    if scheme in ("sftp", "ssh"):
        return _open_sftp(url, parts, options, retry)
    if scheme in ("s3", "s3a"):
        return _open_s3(url, parts, options, retry)
    return _open_fsspec(url, parts, options, retry)


def _no_more(url: str, options: dict[str, Any]) -> None:
    if options:
        raise ConfigError(f"target {mask_url(url)}: unknown option(s) {', '.join(sorted(options))}")


def _open_sftp(url: str, parts: Any, options: dict[str, Any], retry: dict[str, Any]) -> Target:
    if parts.password is not None:
        raise ConfigError(
            f"target {mask_url(url)}: a password in the URL is refused; fix: remove it and set password_env "
            "to the name of an environment variable that holds it (or use a key)"
        )
    if not parts.hostname:
        raise ConfigError(f"target {url}: no host; fix: write sftp://user@host[:port]/folder")
    try:
        port = parts.port or 22
    except ValueError:
        raise ConfigError(f"target {url}: the port is not a number") from None
    user = unquote(parts.username) if parts.username else None
    root = unquote(parts.path).rstrip("/") or "."
    key_file = options.pop("key_file", None)
    password_env = options.pop("password_env", None)
    known_hosts = options.pop("known_hosts", None)
    policy = options.pop("host_key_policy", "reject")
    timeout = float(options.pop("timeout", 30))
    allow_agent = bool(options.pop("allow_agent", True))
    _no_more(url, options)
    if policy not in ("reject", "auto_add"):
        raise ConfigError(f"target {url}: host_key_policy must be 'reject' or 'auto_add', got {policy!r}")
    for option, value in (("key_file", key_file), ("known_hosts", known_hosts)):
        if value and not Path(str(value)).expanduser().is_file():
            raise ConfigError(
                f"target {mask_url(url)}: target_options.{option} names {value}, which is not a file; fix: "
                f"correct the path{'' if option == 'key_file' else ' (or leave it out to use ~/.ssh/known_hosts)'}"
            )
    password = None
    if password_env:
        password = os.environ.get(str(password_env))
        if password is None:
            raise ConfigError(
                f"target {url}: password_env names ${password_env}, which is not set; fix: export it, "
                "or remove password_env to log in with a key"
            )
    display = f"sftp://{user + '@' if user else ''}{parts.hostname}:{port}{root if root.startswith('/') else '/' + root}"
    from ._sftp import connect

    try:
        fs = connect(
            parts.hostname, port=port, username=user, key_filename=key_file and str(Path(key_file).expanduser()),
            password=password, known_hosts=known_hosts and str(Path(known_hosts).expanduser()),
            host_key_policy=policy, timeout=timeout, allow_agent=allow_agent,
        )
    except Exception as exc:  # noqa: BLE001 - classified like any operation's fault
        from .host_keys import host_key_error

        where = f"connecting to {display}"
        refused = host_key_error(exc, where, known_hosts, host=parts.hostname, port=port)
        raise (refused or classify_error(exc, where)) from exc
    return SFTPTarget(fs, root, display, timeout=timeout, **retry)


def _open_s3(url: str, parts: Any, options: dict[str, Any], retry: dict[str, Any]) -> Target:
    bucket = parts.netloc
    if not bucket or "@" in bucket:
        raise ConfigError(f"target {mask_url(url)}: write s3://bucket/prefix (credentials come from the AWS environment)")
    prefix = unquote(parts.path).strip("/")
    endpoint = options.pop("endpoint_url", None)
    region = options.pop("region", None)
    profile = options.pop("profile", None)
    single_put_max = int(options.pop("single_put_max", DEFAULT_SINGLE_PUT_MAX))
    sizes = {k: int(options.pop(k)) for k in ("multipart_threshold", "part_size") if k in options}
    timeout = float(options.pop("timeout", 30))
    _no_more(url, options)
    import s3fs

    client_kwargs: dict[str, Any] = {}
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    if region:
        client_kwargs["region_name"] = region
    session = {"profile": profile} if profile else {}
    fs = s3fs.S3FileSystem(
        client_kwargs=client_kwargs,
        # every request has a deadline: a store that stops answering is a transient fault, never a hang;
        # one connection per transfer, and room for the parts of a multipart upload beside them
        config_kwargs={"retries": {"total_max_attempts": 1, "mode": "standard"},
                       "connect_timeout": timeout, "read_timeout": timeout,
                       "max_pool_connections": max(10, 2 * int(retry.get("transfers", DEFAULT_TRANSFERS))),
                       # Content-MD5 already guards every body; a CRC32 on top costs CPU and nothing more
                       "request_checksum_calculation": "when_required",
                       "response_checksum_validation": "when_required"},
        use_listings_cache=False,
        skip_instance_cache=True,
        **session,
    )
    fs.retries = 1  # one retry policy, ours: neither s3fs nor botocore retries a request itself
    try:
        fs.connect()
    except Exception as exc:  # noqa: BLE001 - classified like any operation's fault
        raise classify_error(exc, f"connecting to s3://{bucket}") from exc
    # botocore asks every PUT to wait for "100 Continue" before its body: a round trip more per file. A small
    # body goes at once (a refused one costs only itself); large ones keep asking.
    fs.s3.meta.events.register("before-send.s3", _no_expect_for_small_bodies)
    display = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    if endpoint:
        display += f" (endpoint {endpoint})"
    return ObjectTarget(fs, join(bucket, prefix), display, content_md5=True, single_put_max=single_put_max,
                        timeout=timeout, **sizes, **retry)


_EXPECT_MIN_BODY = 1 << 20


def _no_expect_for_small_bodies(request: Any, **_: Any) -> None:
    headers = request.headers
    if "Expect" in headers:
        try:
            size = int(headers.get("Content-Length") or 0)
        except ValueError:
            return
        if size <= _EXPECT_MIN_BODY:
            del headers["Expect"]


def _open_fsspec(url: str, parts: Any, options: dict[str, Any], retry: dict[str, Any]) -> Target:
    import fsspec

    single_put_max = int(options.pop("single_put_max", DEFAULT_SINGLE_PUT_MAX))
    try:
        fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True, **options)
    except (ImportError, ValueError) as exc:
        raise ConfigError(
            f"target {mask_url(url)}: {exc}; fix: install the fsspec package for {parts.scheme}:// "
            "(gcsfs for gs://, adlfs for az://), or use file://, sftp:// or s3://"
        ) from None
    return ObjectTarget(fs, root, mask_url(url), single_put_max=single_put_max, **retry)

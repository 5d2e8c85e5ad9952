"""Delivery to stores: targets by URL, batch uploads that resume, media resources, acknowledgements.

This package sends what ``load`` wrote locally to a store's server or
bucket; it never builds XML and never reads the catalog database. It imports
only ``errors`` and ``models`` from the rest of ``ddex_etl`` (``etl run`` uses it
through ``media``, ``deliver``, ``store_acks`` and ``probe``).

The pieces, and the one call per release or batch ``etl run`` makes:

``targets``   ``open_target(url, **options) -> Target``: ``file://`` or a path,
              ``sftp://user@host[:port]/path``, ``s3://bucket/prefix``, any fsspec
              URL. ``put_bytes``/``put_file`` (whole or nothing), ``exists``,
              ``list``, ``read_bytes``, ``md5``, ``remove``, ``describe()``.
              (``target_base``: the interface, retries and error mapping;
              ``target_kinds``: the local, SFTP and object-store kinds;
              ``host_keys``: unknown versus changed SSH host keys.)
``probe``     ``probe_target(url, options)``: credentials, login, host key and a
              probe file written, renamed and deleted (a bucket listed), for
              ``etl config check --connect`` and before ``etl run`` builds.
``resources`` per release, before its message is written::

                  planned, problems = plan_resources(release_media(release, cover))
                  # write each PlannedResource.uri into the message ...
                  copy_resources(release.release_id, planned, media_root, release_dir)  # MediaError -> reject

``upload``    per recipient, after the local batch is written::

                  report = upload_batch(local_batch_dir, target)  # resumable; BatchComplete last
                  # or BatchUpload(...).send_release(folder) per release, then .complete()

``acks``      per recipient, before a run and for ``etl acks``::

                  for record in read_acks(target, batch_id).records: ...  # accepted / rejected, why

Errors are ``DeliveryTransientError`` (retry or resume later),
``DeliveryTerminalError`` (fix first) and ``MediaError`` (one release is
rejected; a ``ReleaseDataError`` like any other bad data), all in
``ddex_etl.errors``.
"""
from __future__ import annotations

from .acks import AckRecord, AckReport, parse_ack, read_acks
from .paths import UnsafePathError, safe_relpath
from .resources import (
    CopiedResource,
    MediaItem,
    MediaRoot,
    PlannedResource,
    copy_resources,
    plan_resources,
    release_media,
    resource_uri,
)
from .targets import RemoteObject, Target, mask_url, open_target
from .upload import BatchUpload, FileJournal, UploadReport, batch_manifest, upload_batch

__all__ = [
    "AckRecord",
    "AckReport",
    "BatchUpload",
    "CopiedResource",
    "FileJournal",
    "MediaItem",
    "MediaRoot",
    "PlannedResource",
    "RemoteObject",
    "Target",
    "UnsafePathError",
    "UploadReport",
    "batch_manifest",
    "copy_resources",
    "mask_url",
    "open_target",
    "parse_ack",
    "plan_resources",
    "read_acks",
    "release_media",
    "resource_uri",
    "safe_relpath",
    "upload_batch",
]

"""Delivery to stores: targets by URL, batch uploads that resume, media resources, acknowledgements.

This package sends what ``load`` wrote locally to a store's server or
bucket; it never builds XML and never reads the catalog database. It imports
only ``errors`` and ``models`` from the rest of ``ddex_etl`` (``etl run`` uses it
through ``media``, ``deliver``, ``store_acks``, ``media_checks`` and ``target_probe``).

The pieces, and the one call per release or batch ``etl run`` makes:

``targets``   ``open_target(url, **options) -> Target``: ``file://`` or a path,
              ``sftp://user@host[:port]/path``, ``s3://bucket/prefix``, any fsspec
              URL. ``put_bytes``/``put_file`` (whole or nothing), ``exists``,
              ``list``, ``list_folder`` (one folder, one request), ``read_bytes``,
              ``read_head`` (bounded), ``md5``, ``remove``, ``describe()``.
              (``target_base``: the interface, retries and error mapping;
              ``target_kinds``: the local, SFTP and object-store kinds;
              ``host_keys``: unknown versus changed SSH host keys.)
``target_probe`` ``probe_target(url, options)``: credentials, login, host key and a
              probe file written, renamed and deleted (a bucket listed), for
              ``etl config check --connect`` and before ``etl run`` builds.
``resources`` per release, before its message is written::

                  planned, problems = plan_resources(release_media(release, cover))
                  # write each PlannedResource.uri into the message ...
                  copy_resources(release.release_id, planned, media_root, release_dir)  # MediaError -> reject

``media_checks`` per release, before its message is built (``media_probe`` reads the files' headers)::

                  checked = check_media(release, MediaPolicy(require_media=..., min_cover_px=..., root=media_root))
                  # checked.problems reject the release; checked.release carries Track.audio and the
                  # cover's true size and colour mode, which the builder writes into TechnicalDetails

``upload``    per recipient, after the local batch is written::

                  report = upload_batch(local_batch_dir, target)  # resumable; BatchComplete last
                  # or BatchUpload(...).send_release(folder) per release, then .complete()

``acks``      per recipient, before a run and for ``etl acks``::

                  for record in read_acks(target, batch_folder).records: ...  # accepted / rejected, why
                  # both FtpAcknowledgementMessage and AcknowledgementMessage (parse_acks); bounded listings

Errors are ``DeliveryTransientError`` (retry or resume later),
``DeliveryTerminalError`` (fix first) and ``MediaError`` (one release is
rejected; a ``ReleaseDataError`` like any other bad data), all in
``ddex_etl.errors``.
"""
from __future__ import annotations

from .acks import AckRecord, AckReport, parse_ack, parse_acks, read_acks
from .paths import UnsafePathError, safe_relpath
from .resources import CopiedResource, MediaItem, MediaRoot, PlannedResource, copy_resources, plan_resources, release_media, resource_uri
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
    "parse_acks",
    "plan_resources",
    "read_acks",
    "release_media",
    "resource_uri",
    "safe_relpath",
    "upload_batch",
]

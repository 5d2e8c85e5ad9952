"""Try a recipient's target the way an upload will, before anything is built (`etl config check --connect`, `etl run`).

``probe_target(url, options)`` checks, in the order an upload meets them:
the credentials are there (S3: which one is missing and where it is read
from), the login and the host key (SFTP), and that the folder takes a file
the way uploads write one: a probe file is written under a temp name,
renamed into place (``posix-rename@openssh.com`` over SFTP, which atomic
delivery needs) and deleted, inside a dot-folder of its own that is removed
again. An object store is listed under the prefix (the bucket exists and
these credentials may read it); nothing is written there, as a store may
ingest any object that appears. Returns one line saying what was found;
raises ``ConfigError`` (a setting to fix) or ``DeliveryError``.
"""
from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, DeliveryError, DeliveryTerminalError
from .target_base import Target, classify_error

PROBE_PREFIX = ".etl-preflight-"


def aws_credentials(profile: str | None = None) -> str:
    """Where boto finds AWS credentials ("the environment", "~/.aws/credentials", ...); ``ConfigError`` when it finds none.

    The error says which credential is missing and every place they are read from.
    """
    import botocore.session
    from botocore.exceptions import PartialCredentialsError, ProfileNotFound

    places = ("the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, plus AWS_SESSION_TOKEN for temporary "
              "keys), a profile in ~/.aws/credentials or ~/.aws/config (AWS_PROFILE or target_options.profile), "
              "or the instance's or container's role")
    try:
        creds = botocore.session.Session(profile=profile).get_credentials()
    except PartialCredentialsError as exc:
        missing = exc.kwargs.get("cred_var", "a credential")
        provider = exc.kwargs.get("provider", "?")
        where = "the environment" if provider == "env" else f"the {provider} credentials"
        raise ConfigError(
            f"AWS credentials: {missing} is missing from {where}, which has the rest; fix: set {missing} "
            f"there too (credentials are read from {places})"
        ) from None
    except ProfileNotFound:
        raise ConfigError(
            f"AWS credentials: profile {profile!r} is not in ~/.aws/credentials or ~/.aws/config; fix: add it, "
            "or correct target_options.profile / AWS_PROFILE"
        ) from None
    if creds is None:
        raise ConfigError(
            "AWS credentials: none found, so the store would refuse every request; fix: set AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY (credentials are read from {places})"
        )
    method = getattr(creds, "method", "") or ""
    return {"env": "the environment", "shared-credentials-file": "~/.aws/credentials",
            "config-file": "~/.aws/config"}.get(method, method or "the AWS credential chain")


def probe_target(url: str, options: dict[str, Any], *, write: bool = True) -> str:
    """Open the target and try it as an upload would; one line for the report (see the module docstring).

    ``write=False`` (`etl run --dry-run`, which writes nothing): log in and list the folder or bucket only.
    """
    from .targets import ObjectTarget, open_target

    scheme = urlsplit(url).scheme.lower()
    found = ""
    if scheme in ("s3", "s3a"):
        found = f"; credentials from {aws_credentials(options.get('profile'))}"
    target = open_target(url, **dict(options))
    try:
        if isinstance(target, ObjectTarget):
            return _probe_bucket(target) + found
        if not write:
            from .target_kinds import SFTPTarget

            if isinstance(target, SFTPTarget):
                target.fs.ftp.listdir(target.root)  # a local folder was checked when it was opened
            return f"{target.describe()}: reachable, the folder is there (nothing written: a dry run)"
        return _probe_folder(target) + found
    except DeliveryError:
        raise
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any library fault, classified like an upload's
        raise classify_error(exc, f"checking {target.describe()}") from exc
    finally:
        target.close()


def credentials_error(exc: BaseException, where: str) -> DeliveryTerminalError:
    """botocore's NoCredentialsError / PartialCredentialsError as a message naming what is missing and where."""
    try:
        aws_credentials()
        detail = f"the store refused the credentials found ({type(exc).__name__}: {exc})"
    except ConfigError as missing:
        detail = missing.problems[0]
    return DeliveryTerminalError(f"{where}: {detail}")


def _probe_folder(target: Target) -> str:
    from .target_kinds import SFTPTarget

    folder = f"{PROBE_PREFIX}{uuid.uuid4().hex[:12]}"
    rel = f"{folder}/probe.txt"
    if isinstance(target, SFTPTarget):
        _probe_sftp(target, folder, rel)
        return f"{target.describe()}: logged in, host key trusted; a probe file was written, renamed into place " \
               "(posix-rename) and deleted"
    target.put_bytes(rel, b"ddex-etl preflight probe\n")
    target.remove(rel)
    target.clean_temp(folder)
    root = getattr(target, "root", None)
    if root is not None:
        try:
            (root / folder).rmdir()
        except OSError:
            pass
    return f"{target.describe()}: a probe file was written, renamed into place and deleted"


def _probe_sftp(target: Any, folder: str, rel: str) -> None:
    """Each step of an SFTP upload on its own, so the error says which one the server refused."""
    import io

    ftp = target.fs.ftp
    where = target.describe()
    top, temp = target._full(folder), target._full(f"{folder}/probe.part")
    final = target._full(rel)

    def step(what: str, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - classified like an upload's fault, naming the step
            raise classify_error(exc, f"{what} on {where}") from exc

    step("creating a folder", lambda: ftp.mkdir(top))
    try:
        step("writing a probe file", lambda: ftp.putfo(io.BytesIO(b"ddex-etl preflight probe\n"), temp))
        try:
            ftp.posix_rename(temp, final)
        except Exception as exc:  # noqa: BLE001
            text = f"{type(exc).__name__}: {exc}"
            if "unsupported" in text.lower() or "not supported" in text.lower():
                raise DeliveryTerminalError(
                    f"renaming a probe file on {where}: the server does not support posix-rename@openssh.com "
                    f"({text}), which delivery needs to put each file in place whole; fix: ask the store to enable "
                    "it (OpenSSH's sftp-server has it), or deliver to it another way (s3://)"
                ) from exc
            raise classify_error(exc, f"renaming a probe file (posix-rename) on {where}") from exc
        step("deleting the probe file", lambda: ftp.remove(final))
    finally:
        for path in (temp, final):
            try:
                ftp.remove(path)
            except OSError:
                pass
        try:
            ftp.rmdir(top)
        except OSError:
            pass


def _probe_bucket(target: Any) -> str:
    bucket, _, prefix = target.root.partition("/")
    try:
        target.fs.ls(target.root if prefix else bucket, refresh=True)
    except FileNotFoundError as exc:
        if prefix:
            try:
                target.fs.ls(bucket, refresh=True)
            except Exception as inner:  # noqa: BLE001
                raise _bucket_error(inner, target) from inner
            return f"{target.describe()}: bucket {bucket} reachable; prefix {prefix}/ is empty (the first batch creates it)"
        raise _bucket_error(exc, target) from exc
    except Exception as exc:  # noqa: BLE001
        raise _bucket_error(exc, target) from exc
    return f"{target.describe()}: bucket {bucket} reachable and listable"


def _bucket_error(exc: BaseException, target: Any) -> DeliveryError:
    if isinstance(exc, FileNotFoundError):
        bucket = target.root.partition("/")[0]
        return DeliveryTerminalError(
            f"listing {target.describe()}: bucket {bucket} does not exist (or these credentials may not see it); "
            "fix: correct the bucket in the target URL, or ask the store for access"
        )
    return classify_error(exc, f"listing {target.describe()}")

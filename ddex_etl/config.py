"""Read ``etl.toml`` plus ``ETL_*`` environment overrides, validate once, freeze.

Every problem is collected with its key path and reported together in one
``ConfigError`` (exit code 2), so a user fixes a broken file in one pass.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import masking
from .dpid import DEMO_RECIPIENT_DPID, DEMO_SENDER_DPID, dpid_fix, dpid_problem
from .errors import ConfigError

ERN_VERSIONS = ("4.3", "4.2", "3.8.2")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DPID = re.compile(r"PADPIDA[a-zA-Z0-9]+")  # the XSD's DdexPartyId pattern
# load.max_media_bytes by default: larger than any audio track or cover (a WAV
# cannot pass 4 GiB), small enough that a wrong file cannot fill the disk
# (delivery.media_source.MAX_MEDIA_BYTES, the same; a test checks).
MAX_MEDIA_BYTES = 4 << 30
# load.min_cover_px by default (delivery.media_checks.DEFAULT_MIN_COVER_PX, the same): stores' usual minimum.
MIN_COVER_PX = 1400


@dataclass(frozen=True)
class DatabaseConfig:
    url: str | None = None  # None: start the embedded PostgreSQL
    # What worker processes connect with (e.g. a pgbouncer in transaction mode in
    # front of the same database); None: url. The coordinator always uses url:
    # its job lock is a session-level advisory lock, which a transaction pooler
    # cannot keep.
    worker_url: str | None = None
    embedded_dir: Path = Path(".etl/pgdata")
    pool_size: int = 5
    state_schema: str = "ddex_etl"


@dataclass(frozen=True)
class ExtractConfig:
    mode: str = "keyset"  # keyset | offset
    chunk_size: int = 500
    keys_query: Path | None = None  # None: the packaged reference query
    rows_query: Path | None = None
    changed_keys_query: Path | None = None  # None: sql/changed_release_keys.sql (reference catalog)


@dataclass(frozen=True)
class TransformConfig:
    ern_version: str = "4.3"
    # The demo parties: valid DPIDs that belong to nobody. A LiveMessage from the demo
    # sender to a recipient with a target is refused: configure your own.
    sender_dpid: str = DEMO_SENDER_DPID
    sender_name: str = "Demo Label Group"
    recipient_dpid: str = DEMO_RECIPIENT_DPID
    recipient_name: str = "Demo Store"
    language: str = "en"
    repair: bool = True  # strip XML-illegal control chars and surrounding whitespace, with a warning
    schema_dir: Path | None = None  # DDEX XSDs, for `etl validate` and validate_each
    rules_dir: Path | None = None  # DDEX's compiled release-profile rules, for `etl validate --profile`
    message_control_type: str = "LiveMessage"  # MessageControlType: LiveMessage | TestMessage
    # The C line of a release without one, in every ERN version (None: "<year> <label name>"), with a warning.
    default_c_line: str | None = None
    # ERN 3.8.2: declare BusinessProfileVersionId (a recipient's business_profiles overrides it).
    business_profiles: bool = False


@dataclass(frozen=True)
class LoadConfig:
    target: str = "files"  # files | table
    directory: Path = Path("out")
    layout: str = "flat"  # flat | ddex-batch
    table: str = "documents"
    # ddex-batch: where the catalog's audio_file and cover file paths are read
    # from (a folder, or any fsspec URL); each release's media is copied into
    # <release folder>/resources/ and its message refers to it there. None: no resources.
    media_root: str | None = None
    # A media file larger than this rejects its release (a wrong file, or one
    # still growing, never fills the output disk).
    max_media_bytes: int = MAX_MEDIA_BYTES
    # A media file without an MD5 in the catalog rejects its release unless
    # this is true (a recipient's allow_unverified_media overrides it).
    allow_unverified_media: bool = False
    # A sound recording without an audio file rejects its release (true) or is
    # warned about (false). A recipient with a target requires media unless it
    # says require_media = false.
    require_media: bool = False
    # A front cover smaller than this on a side, or not square, rejects its release.
    min_cover_px: int = MIN_COVER_PX


@dataclass(frozen=True)
class RunConfig:
    job: str = "default"
    workers: int = 0  # 0: one per core
    continue_on_error: bool = True
    fail_fast: bool = False
    max_errors: int | None = None  # stop when this many releases are rejected
    max_error_rate: float | None = None  # or when this share (0..1) is rejected
    max_retries: int | None = None  # None: as many as fit in retry_for
    retry_delay: float = 1.0  # first pause between retries; doubles each time (up to 30 s)
    retry_for: float = 120.0  # keep retrying a transient fault this many seconds (a restart, a failover)
    progress_interval: float = 10.0  # seconds between plain log lines when not a terminal
    mode: str = "full"  # full | incremental (what `etl run` does without --full/--incremental)
    watermark_lag_seconds: float = 5.0  # incremental window ends this far behind the database clock
    # A Prometheus textfile (node_exporter's textfile collector) each `etl run` rewrites; None: none
    metrics_file: Path | None = None
    # Where chunks run: "local" worker processes on this machine, or "dask" (a Dask distributed
    # cluster: `scheduler`'s, or a LocalCluster of `workers` processes when it is not set).
    # Neither is in the fingerprint: a run started locally may resume on Dask and back.
    executor: str = "local"  # local | dask
    scheduler: str | None = None  # a Dask scheduler's address, tcp://host:8786
    # Recipients whose runs go on side by side (threads of `etl run`); 1: one after another.
    parallel_recipients: int = 4


@dataclass(frozen=True)
class RecipientConfig:
    """One store the job delivers to (a ``[[recipients]]`` entry); see ``ddex_etl.run.recipients``."""

    name: str = ""  # a plain token: the job runs as "<run.job>/<name>", files go to <load.directory>/<name>
    dpid: str = ""  # MessageRecipient's DDEX party id
    party_name: str = ""  # MessageRecipient's name ("" = name)
    ern_version: str | None = None  # None: transform.ern_version
    message_control: str | None = None  # Live | Test (LiveMessage | TestMessage); None: transform's
    target: str | None = None  # delivery URL (file://, sftp://, s3://, any fsspec URL); None: local batch only
    target_options: dict[str, Any] = field(default_factory=dict)  # never secrets (refused)
    media_root: str | None = None  # None: load.media_root
    allow_unverified_media: bool | None = None  # send media without a catalog MD5 (logged); None: load's
    require_media: bool | None = None  # reject releases without audio; None: true with a target, else load's
    min_cover_px: int | None = None  # smallest cover side accepted; None: load's (1400)
    business_profiles: bool | None = None  # ERN 3.8.2: declare DDEX business profiles; None: transform's (off)
    territories: tuple[str, ...] = ()  # only releases with a deal in one of these (or Worldwide)
    labels: tuple[str, ...] = ()  # only releases of these labels (by name)
    # The batch folder's name on the target: "{batch_id}" (ERN choreography up to 1.5) or with the
    # priority indicator of 1.6+ ("N_{batch_id}": no release is a priority delivery; "P_{batch_id}").
    batch_naming: str = "{batch_id}"
    ack_folder: str | None = None  # where the store puts acknowledgements, if not in the batch folders
    keep_batches: int = 5  # local batches (and upload journals) kept; older settled ones are removed; 0 keeps all
    keep_unacknowledged: bool = True  # false: remove old complete batches the store never acknowledged too

    @property
    def control_type(self) -> str | None:
        """``message_control`` as DDEX spells it (LiveMessage / TestMessage)."""
        mc = self.message_control
        return None if mc is None else (mc if mc.endswith("Message") else f"{mc}Message")

    def matches(self, release: Any) -> bool:
        """Whether the release is for this store (its territory and label filter)."""
        if self.labels:
            label = getattr(release, "label", None)
            if label is None or label.name not in self.labels:
                return False
        if self.territories:
            wanted = set(self.territories)
            deals = getattr(release, "deals", ()) or ()
            if not any(wanted.intersection(d.territories) or "Worldwide" in d.territories for d in deals):
                return False
        return True


# Recipient keys added after fingerprints were first stored: left out while unset, so old fingerprints hold.
_NEWER_RECIPIENT_KEYS = ("allow_unverified_media", "require_media", "min_cover_px", "business_profiles")


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    load: LoadConfig = field(default_factory=LoadConfig)
    run: RunConfig = field(default_factory=RunConfig)
    source: Path | None = None  # the etl.toml it came from
    recipients: tuple[RecipientConfig, ...] = ()  # [[recipients]]; none: the [transform] keys are the one recipient
    recipient: RecipientConfig | None = None  # set by for_recipient(): the store this configuration builds for

    def fingerprint_keys(self) -> dict[str, str]:
        """Per key that shapes a run's output, a short hash of its value (recorded in the run row).

        The rule: a key is fingerprinted when changing it mid-run would change
        the bytes of a document, which releases a store gets, or what a resume
        pages (extract, transform, load, and the recipient's party, version,
        control and filters). Where documents go and how they are built is
        not: a recipient's ``target`` and ``target_options``, the media roots
        (the catalog's MD5 checks every file wherever it is read from), the
        XSD and rules folders (``etl validate`` only) and ``[run]`` (executor,
        scheduler, workers, retries). Changing those continues the run.
        """
        out: dict[str, str] = {}
        for section in ("extract", "transform", "load"):
            for key, value in _plain(getattr(self, section)).items():
                if f"{section}.{key}" not in NOT_FINGERPRINTED:
                    out[f"{section}.{key}"] = _value_hash(value)
        if self.recipient is not None:
            for key, value in _plain(self.recipient).items():
                if f"recipients.{key}" not in NOT_FINGERPRINTED:
                    out[f"recipients.{key}"] = _value_hash(value)
        return out

    def fingerprint(self) -> str:
        """Stable hash of what changes the output (``fingerprint_keys``; not the secret or the file's place)."""
        blob = json.dumps(self.fingerprint_keys(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def legacy_fingerprint(self) -> str:
        """The fingerprint runs recorded before ``fingerprint_keys`` (target and media root included).

        A run started by an older version is still continued by this one when its configuration did not change.
        """
        load = _plain(self.load)
        for key, default in (("media_root", None), ("max_media_bytes", MAX_MEDIA_BYTES),
                             ("allow_unverified_media", False), ("require_media", False),
                             ("min_cover_px", MIN_COVER_PX)):
            if load[key] == default:
                del load[key]
        transform = _plain(self.transform)
        for key, default in (("default_c_line", None), ("business_profiles", False)):
            if transform[key] == default:
                del transform[key]
        data: dict[str, Any] = {
            "extract": _plain(self.extract),
            "transform": transform,
            "load": load,
        }
        if self.recipient is not None:
            # Where a batch lands on the target is part of it (a resumed run must not switch folders);
            # what is kept locally and where acknowledgements are read is not.
            data["recipient"] = {k: v for k, v in _plain(self.recipient).items()
                                 if k not in _NOT_FINGERPRINTED and not (k in _NEWER_RECIPIENT_KEYS and v is None)
                                 and not (k == "batch_naming" and v == DEFAULT_BATCH_NAMING)}
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def for_recipient(self, recipient: RecipientConfig) -> Config:
        """This configuration as one recipient's own job: its job name, party, ERN version, folder and media."""
        tr = self.transform
        return dataclasses.replace(
            self,
            transform=dataclasses.replace(
                tr,
                ern_version=recipient.ern_version or tr.ern_version,
                recipient_dpid=recipient.dpid,
                recipient_name=recipient.party_name or recipient.name,
                message_control_type=recipient.control_type or tr.message_control_type,
                business_profiles=tr.business_profiles if recipient.business_profiles is None else recipient.business_profiles,
            ),
            load=dataclasses.replace(
                self.load,
                directory=self.load.directory / recipient.name,
                media_root=recipient.media_root or self.load.media_root,
                allow_unverified_media=(self.load.allow_unverified_media if recipient.allow_unverified_media is None
                                        else recipient.allow_unverified_media),
                require_media=(recipient.require_media if recipient.require_media is not None
                               else recipient.target is not None or self.load.require_media),
                min_cover_px=recipient.min_cover_px or self.load.min_cover_px,
            ),
            run=dataclasses.replace(self.run, job=f"{self.run.job}/{recipient.name}"),
            recipients=(),
            recipient=recipient,
        )

    def with_overrides(self, **sections: Mapping[str, Any]) -> Config:
        """A copy with some fields replaced, e.g. ``with_overrides(run={"workers": 1})``."""
        changes = {name: dataclasses.replace(getattr(self, name), **values) for name, values in sections.items()}
        return dataclasses.replace(self, **changes)


# Keys that do not change a document's bytes, which releases go out or what a resume pages (see
# Config.fingerprint_keys): changing one continues an unfinished run instead of superseding it.
NOT_FINGERPRINTED = frozenset({
    "transform.schema_dir", "transform.rules_dir", "load.media_root",
    "recipients.target", "recipients.target_options", "recipients.media_root",
    # where acknowledgements are read and how many local batches are kept change no document
    "recipients.ack_folder", "recipients.keep_batches", "recipients.keep_unacknowledged",
})


def _value_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def changed_keys(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """The fingerprinted keys whose value differs between a run's record and the configuration now."""
    return sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))


def _plain(obj: object) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}  # type: ignore[arg-type]


_SECTIONS: dict[str, type] = {
    "database": DatabaseConfig,
    "extract": ExtractConfig,
    "transform": TransformConfig,
    "load": LoadConfig,
    "run": RunConfig,
}

# Environment variables that override keys (a password never has to live in the file).
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "ETL_DATABASE_URL": ("database", "url"),
    "ETL_WORKER_DATABASE_URL": ("database", "worker_url"),
    "ETL_JOB": ("run", "job"),
    "ETL_WORKERS": ("run", "workers"),
    "ETL_OUTPUT_DIR": ("load", "directory"),
    "ETL_SCHEMA_DIR": ("transform", "schema_dir"),
    "ETL_RULES_DIR": ("transform", "rules_dir"),
    "ETL_ERN_VERSION": ("transform", "ern_version"),
    "ETL_EXECUTOR": ("run", "executor"),
    "ETL_SCHEDULER": ("run", "scheduler"),
}

EXECUTORS = ("local", "dask")
# Address schemes a Dask client can connect with (distributed.comm registers these).
_SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
_SCHEDULER_ADDRESS = re.compile(
    r"(?P<scheme>[a-z]+)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})/?"
)


def job_problem(where: str, value: str) -> str | None:
    """Why ``value`` cannot name a job (it is in every log line, run row and recipient job name), or None."""
    if not value.strip():
        return f"{where}: must not be empty"
    if not value.isprintable():
        return f"{where}: {value!r} holds a control character (a newline, a tab); fix: a plain name such as 'nightly'"
    return None


def executor_problem(where: str, value: str) -> str | None:
    """Why ``value`` is not an executor name, or None."""
    if value in EXECUTORS:
        return None
    return f"{where}: must be 'local' (worker processes on this machine) or 'dask' (a Dask cluster), got {value!r}"


def scheduler_problem(where: str, value: str) -> str | None:
    """Why ``value`` is not a Dask scheduler address (``tcp://host:8786``), or None."""
    fix = "fix: the address `dask scheduler` prints, e.g. tcp://10.0.0.5:8786"
    shown = masking.mask_text(value)
    m = _SCHEDULER_ADDRESS.fullmatch(value)
    if m is None:
        return f"{where}: {shown!r} is not a scheduler address (scheme://host:port); {fix}"
    if m["scheme"] not in _SCHEDULER_SCHEMES:
        return (f"{where}: {shown!r} uses {m['scheme']}://, which Dask does not speak "
                f"({', '.join(s + '://' for s in _SCHEDULER_SCHEMES)}); {fix}")
    if not 0 < int(m["port"]) < 65536:
        return f"{where}: {shown!r} has port {m['port']}, outside 1-65535; {fix}"
    return None


def unused_scheduler_notice(cfg: Config) -> str | None:
    """A scheduler address with the local executor: it is not used. What to say, or None.

    Not a configuration error: `--executor local` on the command line may
    mean it. But a scheduler set in etl.toml or ETL_SCHEDULER alone never
    selects Dask (only `--scheduler` on the command line implies it), and a
    run that silently stays on this machine is what the setting was meant to avoid.
    """
    rn = cfg.run
    if rn.scheduler is None or rn.executor != "local":
        return None
    shown = masking.mask_text(rn.scheduler)
    return (
        f"run.scheduler (or ETL_SCHEDULER) is {shown!r} but run.executor (or ETL_EXECUTOR) is 'local': "
        "chunks are built by worker processes on this machine and the scheduler is not used; fix: set "
        "run.executor = \"dask\" (ETL_EXECUTOR=dask, or --executor dask) to build on that cluster, "
        "or unset run.scheduler / ETL_SCHEDULER"
    )


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate configuration.

    ``path`` None means ``./etl.toml`` if it exists, else all defaults. Relative
    paths in the file are resolved against the file's folder.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    raw: dict[str, Any] = {}
    base = Path.cwd()
    source: Path | None = None
    if path is None and Path("etl.toml").is_file():
        path = Path("etl.toml")
    if path is not None:
        source = Path(path)
        try:
            raw = tomllib.loads(source.read_text(encoding="utf-8"))
            base = source.resolve().parent
        except FileNotFoundError:
            raise ConfigError(f"{source}: file not found; fix: pass --config with an existing etl.toml") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML ({exc})") from None

    from_env: dict[str, str] = {}  # "run.workers" -> "ETL_WORKERS", to say where a bad value came from
    for name, (section, key) in ENV_OVERRIDES.items():
        if env.get(name):
            raw.setdefault(section, {})
            if isinstance(raw[section], dict):
                raw[section][key] = env[name]
                from_env[f"{section}.{key}"] = name

    sections: dict[str, Any] = {}
    for key in raw:
        if key not in _SECTIONS and key != "recipients":
            problems.append(f"{key}: unknown section; known sections: {', '.join(_SECTIONS)}, [[recipients]]")
    for name, cls in _SECTIONS.items():
        values = raw.get(name, {})
        if not isinstance(values, dict):
            problems.append(f"{name}: must be a table ([{name}])")
            values = {}
        sections[name] = _build_section(name, cls, values, base, problems)

    sections["load"] = dataclasses.replace(sections["load"], media_root=_local_or_url(sections["load"].media_root, base))
    recipients = _build_recipients(raw.get("recipients", []), base, problems)
    cfg = Config(**sections, source=source, recipients=recipients)
    # Before anything can print it: every later message hides this password verbatim.
    masking.remember_url_password(cfg.database.url)
    masking.remember_url_password(cfg.database.worker_url)
    _check(cfg, problems)
    if problems:
        raise ConfigError([_name_env_source(p, from_env) for p in problems])
    return cfg


_RECIPIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_BATCH_NAMING = "{batch_id}"
# A plain folder name around the batch id, e.g. "N_{batch_id}" (the choreography's priority indicator).
BATCH_NAMING = re.compile(r"[A-Za-z0-9_.-]{0,16}\{batch_id\}[A-Za-z0-9_.-]{0,16}")
_NOT_FINGERPRINTED = {"target_options", "ack_folder", "keep_batches", "keep_unacknowledged"}
_TERRITORY = re.compile(r"[A-Z]{2}|Worldwide")


def _local_or_url(value: str | None, base: Path) -> str | None:
    """A media root or target: a URL as written, a local path made absolute against the file's folder."""
    if not value or "://" in value:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base / p)


def _build_recipients(entries: Any, base: Path, problems: list[str]) -> tuple[RecipientConfig, ...]:
    """The ``[[recipients]]`` array of tables, each checked like a section."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        problems.append("recipients: must be an array of tables ([[recipients]] with name, dpid, target, ...)")
        return ()
    out: list[RecipientConfig] = []
    for i, entry in enumerate(entries):
        where = f"recipients[{i}]"
        values = dict(entry)
        lists: dict[str, tuple[str, ...]] = {}
        for key in ("territories", "labels"):
            if key in values:
                v = values.pop(key)
                if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
                    problems.append(f"{where}.{key}: expected a list of names, e.g. [\"FR\", \"DE\"], got {v!r}")
                else:
                    lists[key] = tuple(v)
        options = values.pop("target_options", {})
        if not isinstance(options, dict):
            problems.append(f"{where}.target_options: must be a table ([recipients.target_options])")
            options = {}
        r = _build_section(where, RecipientConfig, values, base, problems)
        r = dataclasses.replace(
            r, target_options=dict(options), media_root=_local_or_url(r.media_root, base),
            target=_local_or_url(r.target, base), **lists,
        )
        out.append(r)
    return tuple(out)


def _check_recipients(cfg: Config, problems: list[str]) -> None:
    seen: set[str] = set()
    for i, r in enumerate(cfg.recipients):
        where = f"recipients[{i}]"
        if not _RECIPIENT_NAME.fullmatch(r.name):
            problems.append(
                f"{where}.name: {r.name!r} must be a plain name (letters, digits, _.-; it names the job and a folder)"
            )
        elif r.name in seen:
            problems.append(f"{where}.name: {r.name!r} is used by another recipient; fix: give each store its own name")
        seen.add(r.name)
        if not _DPID.fullmatch(r.dpid):
            problems.append(f"{where}.dpid: {r.dpid!r} is not a DDEX party id (PADPIDA...); fix: the store's DPID")
        elif (wrong := dpid_problem(r.dpid)) is not None:
            problems.append(f"{where}.dpid: {r.dpid!r} {wrong}; fix: {dpid_fix(r.dpid)} (the store's DPID)")
        if r.ern_version is not None and r.ern_version not in ERN_VERSIONS:
            problems.append(f"{where}.ern_version: must be one of {', '.join(ERN_VERSIONS)}, got {r.ern_version!r}")
        if r.message_control is not None and r.message_control not in ("Live", "Test", "LiveMessage", "TestMessage"):
            problems.append(f"{where}.message_control: must be 'Live' or 'Test', got {r.message_control!r}")
        for t in r.territories:
            if not _TERRITORY.fullmatch(t):
                problems.append(f"{where}.territories: {t!r} is not an ISO 3166 country code (FR, DE, ...) or Worldwide")
        if not isinstance(r.batch_naming, str) or not BATCH_NAMING.fullmatch(r.batch_naming):
            problems.append(
                f"{where}.batch_naming: {r.batch_naming!r} must be a folder name holding {{batch_id}} once, e.g. "
                "\"{batch_id}\" (choreography up to 1.5) or \"N_{batch_id}\" (1.6 and later: priority indicator N)"
            )
        if r.ack_folder is not None and (not isinstance(r.ack_folder, str) or not _plain_relpath(r.ack_folder)):
            problems.append(
                f"{where}.ack_folder: {r.ack_folder!r} must be a folder relative to the target (plain names "
                "separated by '/', no '..'), e.g. \"acknowledgements\""
            )
        if isinstance(r.keep_batches, bool) or not isinstance(r.keep_batches, int) or r.keep_batches < 0:
            problems.append(
                f"{where}.keep_batches: must be a whole number of batches (0 keeps every batch), got {r.keep_batches!r}"
            )
        if r.min_cover_px is not None and r.min_cover_px < 1:
            problems.append(f"{where}.min_cover_px: must be at least 1 (pixels), got {r.min_cover_px}")
        mine = cfg.for_recipient(r).load
        if (mine.require_media and not mine.media_root and cfg.load.target == "files"
                and cfg.load.layout == "ddex-batch"):
            why = "require_media = true" if r.require_media else "it has a target, so require_media is true"
            problems.append(f"{where} ({r.name}): " + _no_media_root(why, recipient=True))
        if r.target is not None:
            _check_target(f"{where}.target", r.target, r.target_options, problems)
            if cfg.transform.sender_dpid == DEMO_SENDER_DPID and (r.control_type or cfg.transform.message_control_type) == "LiveMessage":
                problems.append(
                    f"{where}: a LiveMessage to {r.name!r} would name the demo sender {DEMO_SENDER_DPID} ({cfg.transform.sender_name}) "
                    "as MessageSender; fix: set transform.sender_dpid and transform.sender_name to your own DDEX party, "
                    "or message_control = \"Test\" for this recipient"
                )
            if cfg.load.target != "files" or cfg.load.layout != "ddex-batch":
                problems.append(
                    f"{where}.target: delivering to a store needs DDEX batches; fix: set load.target = \"files\" "
                    "and load.layout = \"ddex-batch\""
                )


def _plain_relpath(value: str) -> bool:
    parts = value.split("/")
    return bool(value) and all(re.fullmatch(r"[A-Za-z0-9_.-]+", p) and p not in (".", "..") for p in parts)


def _no_media_root(why: str, *, recipient: bool = False) -> str:
    where = "load.media_root or the recipient's media_root" if recipient else "load.media_root"
    relax = "require_media = false for the recipient" if recipient else "load.require_media = false"
    return (f"{why}, but no media root is set: its batches would name audio and cover files they do not hold; "
            f"fix: set {where} to the folder holding the catalog's media, or set {relax} to send messages without "
            "their files")


def _check_target(where: str, url: str, options: Mapping[str, Any], problems: list[str]) -> None:
    from urllib.parse import urlsplit

    from .delivery.targets import check_options
    from .delivery.targets import mask_url as mask_target

    try:
        check_options(url, dict(options))
    except ConfigError as exc:
        problems.extend(f"{where}: {p}" for p in exc.problems)
    parts = urlsplit(url)
    if "://" not in url:
        return  # a local folder
    if parts.password is not None:
        problems.append(
            f"{where}: {mask_target(url)} holds a password; fix: remove it and set target_options.password_env "
            "to the name of an environment variable holding it (or use a key)"
        )
    if parts.scheme in ("sftp", "s3") and not parts.hostname and not parts.netloc:
        problems.append(f"{where}: {mask_target(url)} names no host or bucket; fix: sftp://user@host/folder or s3://bucket/prefix")


def _name_env_source(problem: str, from_env: Mapping[str, str]) -> str:
    """``run.workers: ...`` -> ``run.workers (from ETL_WORKERS): ...`` when the environment set it."""
    where, sep, rest = problem.partition(":")
    return f"{where} (from {from_env[where]}){sep}{rest}" if where in from_env else problem


def _build_section(name: str, cls: type, values: dict[str, Any], base: Path, problems: list[str]) -> Any:
    fields_ = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{name}.{key}"
        if key not in fields_:
            problems.append(f"{where}: unknown key; known keys: {', '.join(fields_)}")
            continue
        expected = type(getattr(defaults, key)) if getattr(defaults, key) is not None else None
        kwargs[key] = _coerce(where, key, value, expected, fields_[key].type, base, problems)
    try:
        return cls(**{k: v for k, v in kwargs.items() if v is not _BAD})
    except TypeError as exc:  # pragma: no cover - guarded by the checks above
        problems.append(f"{name}: {exc}")
        return defaults


_BAD = object()


def _coerce(where: str, key: str, value: Any, expected: type | None, annotation: Any, base: Path, problems: list[str]) -> Any:
    ann = str(annotation)
    # Environment values arrive as strings: coerce them like TOML would have typed them.
    if "Path" in ann:
        if not isinstance(value, str) or not value:
            problems.append(f"{where}: expected a path (string), got {value!r}")
            return _BAD
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p
    if "bool" in ann:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        problems.append(f"{where}: expected true or false, got {value!r}")
        return _BAD
    if "int" in ann and "float" not in ann:
        if isinstance(value, bool):
            problems.append(f"{where}: expected an integer, got {value!r}")
            return _BAD
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        problems.append(f"{where}: expected an integer, got {value!r}")
        return _BAD
    if "float" in ann:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        problems.append(f"{where}: expected a number, got {value!r}")
        return _BAD
    if not isinstance(value, str):
        problems.append(f"{where}: expected a string, got {value!r}")
        return _BAD
    return value


def _check_database_url(key: str, value: str, problems: list[str]) -> None:
    from sqlalchemy.engine import make_url

    try:
        u = make_url(value)
        if not u.drivername.startswith("postgresql"):
            problems.append(
                f"{key}: driver {u.drivername!r} is not PostgreSQL; fix: use postgresql://user@host:5432/dbname"
            )
    except Exception:
        problems.append(f"{key}: not a database URL; fix: use postgresql://user@host:5432/dbname")


def _check(cfg: Config, problems: list[str]) -> None:
    db, ex, tr, ld, rn = cfg.database, cfg.extract, cfg.transform, cfg.load, cfg.run
    for key, value in (("database.url", db.url), ("database.worker_url", db.worker_url)):
        if value is not None and value != "":
            _check_database_url(key, value, problems)
    if db.pool_size < 1:
        problems.append(f"database.pool_size: must be at least 1, got {db.pool_size}")
    if not _IDENT.fullmatch(db.state_schema):
        problems.append(f"database.state_schema: {db.state_schema!r} is not a valid SQL identifier")
    if ex.mode not in ("keyset", "offset"):
        problems.append(f"extract.mode: must be 'keyset' or 'offset', got {ex.mode!r}")
    if ex.chunk_size < 1:
        problems.append(f"extract.chunk_size: must be at least 1, got {ex.chunk_size}")
    for key in ("keys_query", "rows_query", "changed_keys_query"):
        p = getattr(ex, key)
        if p is not None and not p.is_file():
            problems.append(f"extract.{key}: file {p} not found")
    if tr.ern_version not in ERN_VERSIONS:
        problems.append(f"transform.ern_version: must be one of {', '.join(ERN_VERSIONS)}, got {tr.ern_version!r}")
    for key in ("sender_dpid", "recipient_dpid"):
        value = getattr(tr, key)
        if not _DPID.fullmatch(value):
            problems.append(f"transform.{key}: {value!r} is not a DDEX party id (PADPIDA...)")
        elif (wrong := dpid_problem(value)) is not None:
            problems.append(f"transform.{key}: {value!r} {wrong}; fix: {dpid_fix(value)}")
    if tr.default_c_line is not None and (not tr.default_c_line.strip() or tr.default_c_line != tr.default_c_line.strip()):
        problems.append(f"transform.default_c_line: {tr.default_c_line!r} must be non-empty text without surrounding spaces, "
                        "e.g. \"2025 Aurora Records\"")
    for key in ("sender_name", "recipient_name", "language"):
        if not getattr(tr, key).strip():
            problems.append(f"transform.{key}: must not be empty")
    if tr.schema_dir is not None and not tr.schema_dir.is_dir():
        problems.append(f"transform.schema_dir: folder {tr.schema_dir} not found")
    if tr.rules_dir is not None and not tr.rules_dir.is_dir():
        problems.append(f"transform.rules_dir: folder {tr.rules_dir} not found")
    if tr.message_control_type not in ("LiveMessage", "TestMessage"):
        problems.append(
            f"transform.message_control_type: must be 'LiveMessage' or 'TestMessage', got {tr.message_control_type!r}"
        )
    if ld.target not in ("files", "table"):
        problems.append(f"load.target: must be 'files' or 'table', got {ld.target!r}")
    if ld.layout not in ("flat", "ddex-batch"):
        problems.append(f"load.layout: must be 'flat' or 'ddex-batch', got {ld.layout!r}")
    if not _IDENT.fullmatch(ld.table):
        problems.append(f"load.table: {ld.table!r} is not a valid SQL identifier (letters, digits, _)")
    if ld.max_media_bytes < 1:
        problems.append(f"load.max_media_bytes: must be at least 1 (bytes), got {ld.max_media_bytes}; the default "
                        f"is {MAX_MEDIA_BYTES} (4 GiB)")
    if ld.min_cover_px < 1:
        problems.append(f"load.min_cover_px: must be at least 1 (pixels), got {ld.min_cover_px}; the default is "
                        f"{MIN_COVER_PX}, stores recommend 3000")
    if ld.require_media and ld.target == "files" and ld.layout == "ddex-batch" and not ld.media_root:
        problems.append(_no_media_root("load.require_media = true"))
    problem = job_problem("run.job", rn.job)
    if problem is not None:
        problems.append(problem)
    if rn.workers < 0:
        problems.append(f"run.workers: must be 0 (one per core) or more, got {rn.workers}")
    if rn.parallel_recipients < 1:
        problems.append(f"run.parallel_recipients: must be 1 (one recipient after another) or more, "
                        f"got {rn.parallel_recipients}")
    if rn.max_errors is not None and rn.max_errors < 0:
        problems.append(f"run.max_errors: must be 0 or more, got {rn.max_errors}")
    if rn.mode not in ("full", "incremental"):
        problems.append(f"run.mode: must be 'full' or 'incremental', got {rn.mode!r}")
    for problem in (
        executor_problem("run.executor", rn.executor),
        None if rn.scheduler is None else scheduler_problem("run.scheduler", rn.scheduler),
    ):
        if problem is not None:
            problems.append(problem)
    if rn.watermark_lag_seconds < 0:
        problems.append(f"run.watermark_lag_seconds: must be 0 or more, got {rn.watermark_lag_seconds}")
    if rn.metrics_file is not None and not rn.metrics_file.parent.is_dir():
        problems.append(f"run.metrics_file: folder {rn.metrics_file.parent} not found; fix: create it (e.g. "
                        "node_exporter's --collector.textfile.directory) or point the key at an existing folder")
    if rn.max_error_rate is not None and not 0 <= rn.max_error_rate <= 1:
        problems.append(f"run.max_error_rate: must be between 0 and 1, got {rn.max_error_rate}")
    if rn.max_retries is not None and rn.max_retries < 0:
        problems.append(f"run.max_retries: must be 0 or more, got {rn.max_retries}")
    if rn.retry_for < 0:
        problems.append(f"run.retry_for: must be 0 (no retries) or more seconds, got {rn.retry_for}")
    if rn.retry_delay < 0:
        problems.append(f"run.retry_delay: must be 0 or more, got {rn.retry_delay}")
    _check_recipients(cfg, problems)


# Kept here for callers that import them from the configuration layer.
mask_url = masking.mask_url


def mask_secrets(text: str) -> str:
    """``text`` with every password masked (for messages and logs); see ``ddex_etl.masking``."""
    return masking.mask_text(text) or ""

"""Plain, frozen records passed between extract, transform and load.

Nothing here imports the rest of the package. Records are built by
``ddex_etl.extract.records`` from extract rows (or DataFrame rows / dicts) and consumed
by the ERN builders.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Label:
    label_id: int
    name: str
    dpid: str | None = None


@dataclass(frozen=True, slots=True)
class Contributor:
    """An artist in a role on a release or a track (MainArtist, FeaturedArtist, Composer, ...)."""

    artist_id: int
    name: str
    role: str
    sequence: int = 1
    isni: str | None = None


@dataclass(frozen=True, slots=True)
class AudioDetails:
    """What an audio file's own headers say (``ddex_etl.delivery.media_probe`` reads them; the builder only writes them).

    Values are DDEX's: ``codec`` an AudioCodecType (PCM, FLAC, MP3, AAC,
    Vorbis, ALaw, MuLaw; None when DDEX has no value for it), ``container``
    a ContainerFormat (WAV, AIFF, Ogg, MP4; None for a bare FLAC or MP3
    stream). Any value the file does not state is None.
    """

    codec: str | None = None
    container: str | None = None
    channels: int | None = None
    sample_rate: int | None = None  # Hz
    bits_per_sample: int | None = None  # the bit depth of each sample
    duration_seconds: float | None = None  # the file's exact length


@dataclass(frozen=True, slots=True)
class Track:
    track_id: int
    disc_number: int
    track_number: int
    isrc: str | None
    title: str | None
    version_title: str | None = None
    duration_seconds: int | float | None = None
    genre: str | None = None
    parental_warning: str | None = None
    p_line_year: int | None = None
    p_line_text: str | None = None
    audio_file: str | None = None
    audio_md5: str | None = None
    contributors: tuple[Contributor, ...] = ()
    updated_at: dt.datetime | None = None
    # Read from the audio file itself (delivery side, when a media root is set); None: not read.
    audio: AudioDetails | None = None


@dataclass(frozen=True, slots=True)
class CoverImage:
    """The release's front cover: the image file and what a store checks it against."""

    file: str | None
    md5: str | None = None
    width: int | None = None
    height: int | None = None
    mime_type: str | None = None  # image/jpeg, image/png, ...
    # The image's colour mode as read from the file (Pillow's: RGB, L, CMYK, ...); None: not read.
    color_mode: str | None = None


@dataclass(frozen=True, slots=True)
class Deal:
    deal_id: int
    territories: tuple[str, ...]
    commercial_model: str | None
    use_types: tuple[str, ...]
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    updated_at: dt.datetime | None = None
    # A download deal's price (optional): a price tier code the store's rate
    # card knows, or a wholesale price per unit with its ISO 4217 currency.
    price_code: str | None = None
    wholesale_price: Decimal | float | str | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class Release:
    release_id: int
    title: str | None
    release_type: str | None
    icpn: str | None = None
    grid: str | None = None
    catalog_number: str | None = None
    version_title: str | None = None
    label: Label | None = None
    genre: str | None = None
    subgenre: str | None = None
    release_date: dt.date | None = None
    original_release_date: dt.date | None = None
    p_line_year: int | None = None
    p_line_text: str | None = None
    c_line_year: int | None = None
    c_line_text: str | None = None
    parental_warning: str | None = None
    language: str | None = None
    artists: tuple[Contributor, ...] = ()
    tracks: tuple[Track, ...] = ()
    deals: tuple[Deal, ...] = ()
    # Latest updated_at over the release and everything it contains (what an
    # incremental run compares; a build without a run context also dates the
    # message with it, so output stays deterministic).
    updated_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None
    cover_image: CoverImage | None = None


@dataclass(frozen=True, slots=True)
class Party:
    """Message sender or recipient."""

    dpid: str
    name: str


@dataclass(frozen=True, slots=True)
class Document:
    """One built message, ready to load."""

    release_id: int
    ern_version: str
    message_id: str
    xml: bytes
    checksum: str  # sha256 hex of xml
    kind: str = "NewReleaseMessage"  # or a takedown kind, see ddex_etl.ern
    warnings: tuple[str, ...] = field(default=())
    # sha256 hex of the message without its MessageHeader (plus the control
    # type): equal for two deliveries of the same content, whatever their
    # MessageId and creation time. "Unchanged, don't re-deliver" compares it.
    body_checksum: str = ""

"""The prepared release: checked, version-mapped values, ready for the writers.

``ddex_etl.ern.checks.prepare`` turns a ``Release`` record into a ``Prepared``
(or a list of problems); the writers (``ern4``, ``ern382``) only read it, so
every value here is clean text or a value from the ERN version's allowed-value
sets. References (``ref``) are the PartyReference / resource numbers the
writers link by.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class PParty:
    ref: str
    name: str
    isni: str | None = None
    dpid: str | None = None


@dataclass(slots=True)
class PCredit:
    ref: str
    role: str  # ERN value
    seq: int
    work: bool = False  # ERN 3.8.2 IndirectResourceContributor


@dataclass(slots=True)
class PContributor:
    """One person's contributor entry: every role they have on the recording, once."""

    ref: str
    roles: list[str]
    seq: int
    work: bool = False  # ERN 3.8.2 IndirectResourceContributor (roles on the musical work)


@dataclass(slots=True)
class PCover:
    file: str
    md5: str
    codec: str
    width: int | None
    height: int | None
    color_depth: int | None = None  # bits per pixel, from the file's colour mode (when it was read)


@dataclass(slots=True)
class PTrack:
    num: int  # 1-based, in (disc, track) order: A{num}, R{num}, T{num}
    disc: int
    number: int
    isrc: str
    title: str
    version: str | None
    display_name: str
    artists: list[PCredit]
    contributors: list[PContributor]
    duration: str
    seconds: float
    p_year: int | None
    p_text: str | None
    parental: str | None
    genre: str | None
    audio_file: str | None
    audio_md5: str | None
    audio: Any = None  # models.AudioDetails read from the file (delivery side), or None


@dataclass(slots=True)
class PDeal:
    deal_id: Any
    territories: list[str]
    models: list[str]
    use_types: list[str]
    start: str | None
    end: str | None
    # Streaming (and a streaming service's tethered downloads): linked to the
    # track releases only, never the main release (albums are not streamed).
    tracks_only: bool = False
    # A download deal's price: a price tier code, or a wholesale price per unit and its currency.
    price_code: str | None = None
    price: str | None = None
    currency: str | None = None


@dataclass(slots=True)
class Prepared:
    release_id: Any
    version: str
    title: str = ""
    subtitle: str | None = None
    release_type: str = ""
    compilation: bool = False
    icpn: str = ""
    grid: str | None = None
    catalog_number: str | None = None
    label_ref: str = ""
    label_name: str = ""
    display_name: str = ""
    artists: list[PCredit] = field(default_factory=list)
    parties: list[PParty] = field(default_factory=list)
    p_year: int | None = None
    p_text: str | None = None
    c_year: int | None = None
    c_text: str | None = None
    genre: str = ""
    subgenre: str | None = None
    release_date: str | None = None
    original_release_date: str | None = None
    parental: str | None = None
    duration: str = ""
    tracks: list[PTrack] = field(default_factory=list)
    discs: list[tuple[int, list[PTrack]]] = field(default_factory=list)
    deals: list[PDeal] = field(default_factory=list)
    created: str = ""
    deleted: str | None = None  # date the release was taken down (ISO date)
    cover: PCover | None = None
    language: str | None = None  # of the titles (releases.language), when the catalog has it
    first_published: str | None = None  # FirstPublicationDate of the recordings, when known

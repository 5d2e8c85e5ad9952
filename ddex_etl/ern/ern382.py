"""ERN 3.8.2 writer: a prepared release -> the message body, as strings.

ERN 3 has no PartyList: artists and contributors are written in place with
their names, and most descriptive data sits in ``...DetailsByTerritory``
blocks (we write one, for Worldwide). Track releases are ``Release`` elements
of type ``TrackRelease``; composers and lyricists are
``IndirectResourceContributor`` (work contributors), other non-display roles
``ResourceContributor``.
"""
from __future__ import annotations

from typing import Any

from ._text import attr, esc
from .checks import PCredit, PParty, Prepared, PTrack

NS = "http://ddex.net/xml/ern/382"


def root_open(language: str, element: str = "NewReleaseMessage") -> str:
    """The root start tag: ERN 3 names its version in MessageSchemaVersionId."""
    return f'<ern:{element} xmlns:ern="{NS}" MessageSchemaVersionId="ern/382" LanguageAndScriptCode="{attr(language)}">'


def _party(party: PParty) -> str:
    out = f"<PartyName><FullName>{esc(party.name)}</FullName></PartyName>"
    if party.isni:
        out += f'<PartyId IsISNI="true">{party.isni}</PartyId>'
    return out


def _artists(out: list[str], credits: list[PCredit], parties: dict[str, PParty]) -> None:
    for c in credits:
        out.append(f'<DisplayArtist SequenceNumber="{c.seq}">{_party(parties[c.ref])}<ArtistRole>{c.role}</ArtistRole></DisplayArtist>')


def _title(out: list[str], element: str, title: str, subtitle: str | None, typed: bool) -> None:
    out.append(f'<{element} TitleType="DisplayTitle">' if typed else f"<{element}>")
    out.append(f"<TitleText>{esc(title)}</TitleText>")
    if subtitle:
        out.append(f'<SubTitle SubTitleType="Version">{esc(subtitle)}</SubTitle>' if typed else f"<SubTitle>{esc(subtitle)}</SubTitle>")
    out.append(f"</{element}>")


def _line(out: list[str], kind: str, year: int | None, text: str | None) -> None:
    if text:
        out.append(f"<{kind}>")
        if year:
            out.append(f"<Year>{year}</Year>")
        out.append(f"<{kind}Text>{esc(text)}</{kind}Text></{kind}>")


def _genre(out: list[str], genre: str, subgenre: str | None) -> None:
    out.append(f"<Genre><GenreText>{esc(genre)}</GenreText>")
    if subgenre:
        out.append(f"<SubGenre>{esc(subgenre)}</SubGenre>")
    out.append("</Genre>")


def _credits_xml(t: PTrack, parties: dict[str, PParty], cache: dict[Any, Any]) -> tuple[str, str]:
    """(DisplayArtist elements, contributor elements) for a track; tracks share credit lists, so cache by list."""
    key = (id(t.artists), id(t.contributors))
    hit = cache.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    out: list[str] = []
    _artists(out, t.artists, parties)
    artists = "".join(out)
    out = []
    rseq = wseq = 0
    for c in t.contributors:
        if not c.work:
            rseq += 1
            out.append(
                f'<ResourceContributor SequenceNumber="{rseq}">{_party(parties[c.ref])}'
                f"<ResourceContributorRole>{c.role}</ResourceContributorRole></ResourceContributor>"
            )
    for c in t.contributors:
        if c.work:
            wseq += 1
            out.append(
                f'<IndirectResourceContributor SequenceNumber="{wseq}">{_party(parties[c.ref])}'
                f"<IndirectResourceContributorRole>{c.role}</IndirectResourceContributorRole></IndirectResourceContributor>"
            )
    hit = cache[key] = (artists, "".join(out))
    return hit


def _title_xml(element: str, title: str, subtitle: str | None, typed: bool) -> str:
    out: list[str] = []
    _title(out, element, title, subtitle, typed)
    return "".join(out)


def _cached(cache: dict[Any, Any], key: Any, make: Any, *args: Any) -> str:
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = make(*args)
    return hit  # type: ignore[no-any-return]


def _line_xml(kind: str, year: int | None, text: str | None) -> str:
    out: list[str] = []
    _line(out, kind, year, text)
    return "".join(out)


def _genre_xml(genre: str) -> str:
    return f"<Genre><GenreText>{esc(genre)}</GenreText></Genre>"


def _sound_recording(out: list[str], t: PTrack, p: Prepared, parties: dict[str, PParty], cache: dict[Any, Any]) -> tuple[str, ...]:
    """Writes the SoundRecording; returns the pieces its TrackRelease reuses (titles, artists, genre)."""
    reference_title = _title_xml("ReferenceTitle", t.title, t.version, False)
    title = _title_xml("Title", t.title, t.version, True)
    artists, contributors = _credits_xml(t, parties, cache)
    genre = _cached(cache, ("genre", t.genre or p.genre), _genre_xml, t.genre or p.genre)
    names = _cached(
        cache,
        ("names", t.display_name),
        lambda: f"<DisplayArtistName>{esc(t.display_name)}</DisplayArtistName><LabelName>{esc(p.label_name)}</LabelName>",
    )
    pline = _cached(cache, ("pline", t.p_year, t.p_text), _line_xml, "PLine", t.p_year, t.p_text)
    parental = f"<ParentalWarningType>{t.parental}</ParentalWarningType>" if t.parental else ""
    tech = ""
    if t.audio_file:
        hashsum = (
            f"<HashSum><HashSum>{t.audio_md5}</HashSum><HashSumAlgorithmType>MD5</HashSumAlgorithmType></HashSum>"
            if t.audio_md5
            else ""
        )
        tech = (
            f"<TechnicalSoundRecordingDetails><TechnicalResourceDetailsReference>T{t.num}</TechnicalResourceDetailsReference>"
            f"<File><FileName>{esc(t.audio_file)}</FileName>{hashsum}</File></TechnicalSoundRecordingDetails>"
        )
    out.append(
        "<SoundRecording><SoundRecordingType>MusicalWorkSoundRecording</SoundRecordingType>"
        f"<SoundRecordingId><ISRC>{t.isrc}</ISRC></SoundRecordingId><ResourceReference>A{t.num}</ResourceReference>"
        f"{reference_title}<Duration>{t.duration}</Duration>"
        f"<SoundRecordingDetailsByTerritory><TerritoryCode>Worldwide</TerritoryCode>{title}{artists}{contributors}"
        f"{names}{pline}{genre}{parental}{tech}</SoundRecordingDetailsByTerritory></SoundRecording>"
    )
    return reference_title, title, names, artists, genre, parental


def body(p: Prepared, sender_dpid: str, takedown: bool = False) -> list[str]:
    """Everything after MessageHeader (and UpdateIndicator): ResourceList ... DealList."""
    parties = {party.ref: party for party in p.parties}
    out: list[str] = ["<ResourceList>"]
    cache: dict[Any, Any] = {}
    pieces = [_sound_recording(out, t, p, parties, cache) for t in p.tracks]
    out.append('</ResourceList><ReleaseList><Release IsMainRelease="true"><ReleaseId>')
    if p.grid:
        out.append(f"<GRid>{p.grid}</GRid>")
    out.append(f"<ICPN>{p.icpn}</ICPN>")
    if p.catalog_number:
        out.append(f'<CatalogNumber Namespace="{attr(sender_dpid)}">{esc(p.catalog_number)}</CatalogNumber>')
    out.append("</ReleaseId><ReleaseReference>R0</ReleaseReference>")
    _title(out, "ReferenceTitle", p.title, p.subtitle, typed=False)
    out.append("<ReleaseResourceReferenceList>")
    for t in p.tracks:
        out.append(f'<ReleaseResourceReference ReleaseResourceType="PrimaryResource">A{t.num}</ReleaseResourceReference>')
    out.append(f"</ReleaseResourceReferenceList><ReleaseType>{p.release_type}</ReleaseType>")
    out.append(
        "<ReleaseDetailsByTerritory><TerritoryCode>Worldwide</TerritoryCode>"
        f"<DisplayArtistName>{esc(p.display_name)}</DisplayArtistName><LabelName>{esc(p.label_name)}</LabelName>"
    )
    _title(out, "Title", p.title, p.subtitle, typed=True)
    _artists(out, p.artists, parties)
    if p.compilation:
        out.append("<IsMultiArtistCompilation>true</IsMultiArtistCompilation>")
    if p.parental:
        out.append(f"<ParentalWarningType>{p.parental}</ParentalWarningType>")
    out.append("<ResourceGroup>")
    for disc, tracks in p.discs:
        out.append(f"<ResourceGroup><SequenceNumber>{disc}</SequenceNumber>")
        for t in tracks:
            out.append(
                f"<ResourceGroupContentItem><SequenceNumber>{t.number}</SequenceNumber><ResourceType>SoundRecording</ResourceType>"
                f"<ReleaseResourceReference>A{t.num}</ReleaseResourceReference></ResourceGroupContentItem>"
            )
        out.append("</ResourceGroup>")
    out.append("</ResourceGroup>")
    _genre(out, p.genre, p.subgenre)
    if p.release_date:
        out.append(f"<ReleaseDate>{p.release_date}</ReleaseDate>")
    if p.original_release_date:
        out.append(f"<OriginalReleaseDate>{p.original_release_date}</OriginalReleaseDate>")
    out.append(f"</ReleaseDetailsByTerritory><Duration>{p.duration}</Duration>")
    _line(out, "PLine", p.p_year, p.p_text)
    _line(out, "CLine", p.c_year, p.c_text)
    if p.release_date:
        out.append(f"<GlobalReleaseDate>{p.release_date}</GlobalReleaseDate>")
    if p.original_release_date:
        out.append(f"<GlobalOriginalReleaseDate>{p.original_release_date}</GlobalOriginalReleaseDate>")
    out.append("</Release>")

    for t, (reference_title, title, names, artists, genre, parental) in zip(p.tracks, pieces):
        out.append(
            f"<Release><ReleaseId><ISRC>{t.isrc}</ISRC></ReleaseId><ReleaseReference>R{t.num}</ReleaseReference>"
            f"{reference_title}<ReleaseResourceReferenceList>"
            f'<ReleaseResourceReference ReleaseResourceType="PrimaryResource">A{t.num}</ReleaseResourceReference>'
            "</ReleaseResourceReferenceList><ReleaseType>TrackRelease</ReleaseType>"
            f"<ReleaseDetailsByTerritory><TerritoryCode>Worldwide</TerritoryCode>{names}{title}{artists}{parental}{genre}"
            f"</ReleaseDetailsByTerritory><Duration>{t.duration}</Duration></Release>"
        )
    out.append("</ReleaseList>")

    if p.deals:
        refs = "<DealReleaseReference>R0</DealReleaseReference>" + "".join(
            f"<DealReleaseReference>R{t.num}</DealReleaseReference>" for t in p.tracks
        )
        out.append("<DealList>")
        for d in p.deals:
            out.append(f"<ReleaseDeal>{refs}<Deal><DealTerms>")
            if takedown:
                out.append("<TakeDown>true</TakeDown>")
            else:
                for m in d.models:
                    out.append(f"<CommercialModelType>{m}</CommercialModelType>")
                out.append("<Usage>")
                for u in d.use_types:
                    out.append(f"<UseType>{u}</UseType>")
                out.append("</Usage>")
            for code in d.territories:
                out.append(f"<TerritoryCode>{code}</TerritoryCode>")
            out.append("<ValidityPeriod>")
            if d.start:
                out.append(f"<StartDate>{d.start}</StartDate>")
            if d.end and not takedown:
                out.append(f"<EndDate>{d.end}</EndDate>")
            out.append("</ValidityPeriod></DealTerms></Deal></ReleaseDeal>")
        out.append("</DealList>")
    return out

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

# Party names and deal terms recur across a catalog: their text is kept per
# process, keyed by every value it is made of (bounded like the checker's caches).
_CACHE_LIMIT = 10_000
_PARTIES: dict[tuple[Any, ...], str] = {}
_DEALS: dict[tuple[Any, ...], str] = {}


def root_open(language: str, element: str = "NewReleaseMessage") -> str:
    """The root start tag: ERN 3 names its version in MessageSchemaVersionId."""
    return f'<ern:{element} xmlns:ern="{NS}" MessageSchemaVersionId="ern/382" LanguageAndScriptCode="{attr(language)}">'


def _party(party: PParty) -> str:
    key = (party.name, party.isni)
    out = _PARTIES.get(key)
    if out is None:
        out = f"<PartyName><FullName>{esc(party.name)}</FullName></PartyName>"
        if party.isni:
            out += f'<PartyId IsISNI="true">{party.isni}</PartyId>'
        if len(_PARTIES) < _CACHE_LIMIT:
            _PARTIES[key] = out
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


def _credits_xml(t: PTrack, parties: dict[str, PParty]) -> tuple[str, str]:
    """(DisplayArtist elements, contributor elements) for a track."""
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
    return artists, "".join(out)


def _line_xml(kind: str, year: int | None, text: str | None) -> str:
    out: list[str] = []
    _line(out, kind, year, text)
    return "".join(out)


def _sound_recordings(out: list[str], p: Prepared, nums: list[str], parties: dict[str, PParty]) -> list[tuple[str, ...]]:
    """Writes one SoundRecording per track; returns the pieces each TrackRelease reuses (titles, artists, genre).

    Tracks of a release share credit lists, P lines, genres and artist names,
    so those pieces are written once per release.
    """
    credits_cache: dict[Any, tuple[str, str]] = {}  # keyed by list identity: the lists live until the body is written
    small: dict[Any, str] = {}  # genre, names and P line pieces
    shared_cache: dict[Any, tuple[str, str, str]] = {}
    label = esc(p.label_name)
    pieces: list[tuple[str, ...]] = []
    for t, n in zip(p.tracks, nums):
        e = esc(t.title)
        if t.version:
            es = esc(t.version)
            reference_title = f"<ReferenceTitle><TitleText>{e}</TitleText><SubTitle>{es}</SubTitle></ReferenceTitle>"
            title = f'<Title TitleType="DisplayTitle"><TitleText>{e}</TitleText><SubTitle SubTitleType="Version">{es}</SubTitle></Title>'
        else:
            reference_title = f"<ReferenceTitle><TitleText>{e}</TitleText></ReferenceTitle>"
            title = f'<Title TitleType="DisplayTitle"><TitleText>{e}</TitleText></Title>'
        # Everything a track shares with others (credits, names, P line, genre,
        # parental warning), in the order each of its two places needs it.
        ckey = (id(t.artists), id(t.contributors), t.display_name, t.genre, t.p_year, t.p_text, t.parental)
        shared = shared_cache.get(ckey)
        if shared is None:
            key = (id(t.artists), id(t.contributors))
            credits = credits_cache.get(key)
            if credits is None:
                credits = credits_cache[key] = _credits_xml(t, parties)
            artists, contributors = credits
            g = t.genre or p.genre
            gkey = ("genre", g)
            genre = small.get(gkey)
            if genre is None:
                genre = small[gkey] = f"<Genre><GenreText>{esc(g)}</GenreText></Genre>"
            nkey = ("names", t.display_name)
            names = small.get(nkey)
            if names is None:
                names = small[nkey] = f"<DisplayArtistName>{esc(t.display_name)}</DisplayArtistName><LabelName>{label}</LabelName>"
            pkey = ("pline", t.p_year, t.p_text)
            pline = small.get(pkey)
            if pline is None:
                pline = small[pkey] = _line_xml("PLine", t.p_year, t.p_text)
            parental = f"<ParentalWarningType>{t.parental}</ParentalWarningType>" if t.parental else ""
            shared = shared_cache[ckey] = (f"{artists}{contributors}{names}{pline}{genre}{parental}", names, f"{artists}{parental}{genre}")
        tech = (
            f"<TechnicalSoundRecordingDetails><TechnicalResourceDetailsReference>T{n}</TechnicalResourceDetailsReference>"
            f"<File><FileName>{esc(t.audio_file)}</FileName>"
            + (f"<HashSum><HashSum>{t.audio_md5}</HashSum><HashSumAlgorithmType>MD5</HashSumAlgorithmType></HashSum>" if t.audio_md5 else "")
            + "</File></TechnicalSoundRecordingDetails>"
            if t.audio_file
            else ""
        )
        # Titles and shared pieces go in parts of their own: they hold the
        # text most likely to be non-ASCII, and UTF-8 encoding is a plain copy
        # only for parts that are all ASCII.
        out += (
            "<SoundRecording><SoundRecordingType>MusicalWorkSoundRecording</SoundRecordingType>"
            f"<SoundRecordingId><ISRC>{t.isrc}</ISRC></SoundRecordingId><ResourceReference>A{n}</ResourceReference>",
            reference_title,
            f"<Duration>{t.duration}</Duration><SoundRecordingDetailsByTerritory><TerritoryCode>Worldwide</TerritoryCode>",
            title,
            shared[0],
            f"{tech}</SoundRecordingDetailsByTerritory></SoundRecording>",
        )
        pieces.append((reference_title, title, shared[1], shared[2]))
    return pieces


def body(p: Prepared, sender_dpid: str, takedown: bool = False) -> list[str]:
    """Everything after MessageHeader (and UpdateIndicator): ResourceList ... DealList."""
    parties = {party.ref: party for party in p.parties}
    out: list[str] = ["<ResourceList>"]
    nums = [str(t.num) for t in p.tracks]  # A1/R1/T1 references: convert each number once
    pieces = _sound_recordings(out, p, nums, parties)
    out.append('</ResourceList><ReleaseList><Release IsMainRelease="true"><ReleaseId>')
    if p.grid:
        out.append(f"<GRid>{p.grid}</GRid>")
    out.append(f"<ICPN>{p.icpn}</ICPN>")
    if p.catalog_number:
        out.append(f'<CatalogNumber Namespace="{attr(sender_dpid)}">{esc(p.catalog_number)}</CatalogNumber>')
    out.append("</ReleaseId><ReleaseReference>R0</ReleaseReference>")
    _title(out, "ReferenceTitle", p.title, p.subtitle, typed=False)
    out.append("<ReleaseResourceReferenceList>")
    out.append("".join([f'<ReleaseResourceReference ReleaseResourceType="PrimaryResource">A{n}</ReleaseResourceReference>' for n in nums]))
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
        out.append(
            "".join(
                [
                    f"<ResourceGroupContentItem><SequenceNumber>{t.number}</SequenceNumber><ResourceType>SoundRecording</ResourceType>"
                    f"<ReleaseResourceReference>A{nums[t.num - 1]}</ReleaseResourceReference></ResourceGroupContentItem>"
                    for t in tracks
                ]
            )
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

    for t, n, (reference_title, title, names, rest) in zip(p.tracks, nums, pieces):
        out += (
            f"<Release><ReleaseId><ISRC>{t.isrc}</ISRC></ReleaseId><ReleaseReference>R{n}</ReleaseReference>",
            reference_title,
            f'<ReleaseResourceReferenceList><ReleaseResourceReference ReleaseResourceType="PrimaryResource">A{n}</ReleaseResourceReference>'
            "</ReleaseResourceReferenceList><ReleaseType>TrackRelease</ReleaseType>"
            "<ReleaseDetailsByTerritory><TerritoryCode>Worldwide</TerritoryCode>",
            names,
            title,
            rest,
            f"</ReleaseDetailsByTerritory><Duration>{t.duration}</Duration></Release>",
        )
    out.append("</ReleaseList>")

    if p.deals:
        refs = "".join([f"<DealReleaseReference>R{n}</DealReleaseReference>" for n in ("0", *nums)])
        out.append("<DealList>")
        for d in p.deals:
            # Territories and models/use types come from a small vocabulary:
            # their elements are written once per distinct value.
            key = (takedown, tuple(d.territories), tuple(d.models), tuple(d.use_types))
            terms = _DEALS.get(key)
            if terms is None:
                if takedown:
                    usage = "<TakeDown>true</TakeDown>"
                else:
                    usage = (
                        "".join([f"<CommercialModelType>{m}</CommercialModelType>" for m in d.models])
                        + "<Usage>"
                        + "".join([f"<UseType>{u}</UseType>" for u in d.use_types])
                        + "</Usage>"
                    )
                terms = usage + "".join([f"<TerritoryCode>{code}</TerritoryCode>" for code in d.territories])
                if len(_DEALS) < _CACHE_LIMIT:
                    _DEALS[key] = terms
            start = f"<StartDate>{d.start}</StartDate>" if d.start else ""
            end = f"<EndDate>{d.end}</EndDate>" if d.end and not takedown else ""
            out.append(
                f"<ReleaseDeal>{refs}<Deal><DealTerms>{terms}<ValidityPeriod>{start}{end}</ValidityPeriod></DealTerms></Deal></ReleaseDeal>"
            )
        out.append("</DealList>")
    return out

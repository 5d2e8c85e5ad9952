"""ERN 4.3 and 4.2 writer: a prepared release -> the message body, as strings.

Templates are plain string pieces joined once; each text value is escaped once
with ``esc``/``attr``. Element order follows release-notification.xsd; the
comments name the places where 4.2 and 4.3 differ.
"""
from __future__ import annotations

from typing import Any

from ._text import attr, esc
from .checks import PCredit, Prepared, PTrack

NS = {"4.3": "http://ddex.net/xml/ern/43", "4.2": "http://ddex.net/xml/ern/42"}
AVS_VERSION = "3"  # AvsVersionId of the allowed-value-sets.xsd that ERN 4.3 ships with


def root_open(version: str, language: str, element: str = "NewReleaseMessage") -> str:
    """The root start tag with the attributes each 4.x version requires."""
    out = f'<ern:{element} xmlns:ern="{NS[version]}"'
    if version == "4.3":  # ERN 4.2 has no AvsVersionId
        out += f' AvsVersionId="{AVS_VERSION}"'
    out += f' LanguageAndScriptCode="{attr(language)}"'
    if element == "NewReleaseMessage":
        out += ' ReleaseProfileVersionId="Audio"'
    return out + ">"


def _display_artists(out: list[str], credits: list[PCredit]) -> None:
    for c in credits:
        out.append(
            f'<DisplayArtist SequenceNumber="{c.seq}"><ArtistPartyReference>{c.ref}</ArtistPartyReference>'
            f"<DisplayArtistRole>{c.role}</DisplayArtistRole></DisplayArtist>"
        )


def _title(out: list[str], title: str, subtitle: str | None) -> None:
    shown = f"{title} ({subtitle})" if subtitle else title
    out.append(f"<DisplayTitleText>{esc(shown)}</DisplayTitleText><DisplayTitle><TitleText>{esc(title)}</TitleText>")
    if subtitle:
        out.append(f'<SubTitle SubTitleType="Version">{esc(subtitle)}</SubTitle>')
    out.append("</DisplayTitle>")


def _pline(out: list[str], year: int | None, text: str | None) -> None:
    if text:
        out.append("<PLine>")
        if year:
            out.append(f"<Year>{year}</Year>")
        out.append(f"<PLineText>{esc(text)}</PLineText></PLine>")


def _credits_xml(t: PTrack, cache: dict[Any, Any]) -> str:
    """DisplayArtistName, DisplayArtist and Contributor elements; tracks share their credit lists, so cache by list."""
    key = (id(t.artists), id(t.contributors), t.display_name)  # the lists live until the body is written
    hit = cache.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    out = [f"<DisplayArtistName>{esc(t.display_name)}</DisplayArtistName>"]
    _display_artists(out, t.artists)
    for c in t.contributors:
        out.append(
            f'<Contributor SequenceNumber="{c.seq}"><ContributorPartyReference>{c.ref}</ContributorPartyReference>'
            f"<Role>{c.role}</Role></Contributor>"
        )
    text = cache[key] = "".join(out)
    return text


def _title_xml(title: str, subtitle: str | None) -> str:
    if subtitle:
        return (
            f"<DisplayTitleText>{esc(title)} ({esc(subtitle)})</DisplayTitleText><DisplayTitle><TitleText>{esc(title)}</TitleText>"
            f'<SubTitle SubTitleType="Version">{esc(subtitle)}</SubTitle></DisplayTitle>'
        )
    e = esc(title)
    return f"<DisplayTitleText>{e}</DisplayTitleText><DisplayTitle><TitleText>{e}</TitleText></DisplayTitle>"


def _pline_xml(year: int | None, text: str | None, cache: dict[object, str]) -> str:
    if not text:
        return ""
    key = (year, text)
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = (f"<PLine><Year>{year}</Year>" if year else "<PLine>") + f"<PLineText>{esc(text)}</PLineText></PLine>"
    return hit


def _technical_xml(t: PTrack, v43: bool) -> str:
    if not t.audio_file:
        return ""
    hashsum = (
        f"<HashSum><Algorithm>MD5</Algorithm><HashSumValue>{t.audio_md5}</HashSumValue></HashSum>" if t.audio_md5 else ""
    )
    file_xml = f"<File><URI>{esc(t.audio_file)}</URI>{hashsum}</File>"
    if v43:
        file_xml = f"<DeliveryFile><Type>AudioFile</Type>{file_xml}</DeliveryFile>"
    return f"<TechnicalDetails><TechnicalResourceDetailsReference>T{t.num}</TechnicalResourceDetailsReference>{file_xml}</TechnicalDetails>"


def sound_recording(out: list[str], t: PTrack, v43: bool, cache: dict[Any, Any]) -> None:
    """One SoundRecording, written as a single string (4.3 and 4.2 differ in where ids, P line and files go)."""
    pline = _pline_xml(t.p_year, t.p_text, cache)
    tech = _technical_xml(t, v43)
    head = f"<SoundRecording><ResourceReference>A{t.num}</ResourceReference><Type>MusicalWorkSoundRecording</Type>"
    tail = (
        f"<Duration>{t.duration}</Duration><ParentalWarningType>{t.parental or 'NoAdviceAvailable'}</ParentalWarningType>"
    )
    if v43:  # 4.3 groups ids, P line and files in a SoundRecordingEdition
        out.append(
            f"{head}<SoundRecordingEdition><ResourceId><ISRC>{t.isrc}</ISRC></ResourceId>{pline}{tech}</SoundRecordingEdition>"
            f"{_title_xml(t.title, t.version)}{_credits_xml(t, cache)}{tail}</SoundRecording>"
        )
    else:
        out.append(
            f"{head}<ResourceId><ISRC>{t.isrc}</ISRC></ResourceId>{_title_xml(t.title, t.version)}"
            f"{_credits_xml(t, cache)}{pline}{tail}{tech}</SoundRecording>"
        )


def _genre(out: list[str], genre: str, subgenre: str | None) -> None:
    out.append(f"<Genre><GenreText>{esc(genre)}</GenreText>")
    if subgenre:
        out.append(f"<SubGenre>{esc(subgenre)}</SubGenre>")
    out.append("</Genre>")


def body(p: Prepared, sender_dpid: str) -> list[str]:
    """Everything after MessageHeader: PartyList ... DealList."""
    v43 = p.version == "4.3"
    out: list[str] = ["<PartyList>"]
    for party in p.parties:
        out.append(
            f"<Party><PartyReference>{party.ref}</PartyReference><PartyName><FullName>{esc(party.name)}</FullName></PartyName>"
        )
        if party.isni:
            out.append(f"<PartyId><ISNI>{party.isni}</ISNI></PartyId>")
        elif party.dpid:
            out.append(f"<PartyId><DPID>{party.dpid}</DPID></PartyId>")
        out.append("</Party>")
    out.append("</PartyList><ResourceList>")
    cache: dict[Any, Any] = {}
    for t in p.tracks:
        sound_recording(out, t, v43, cache)
    out.append("</ResourceList><ReleaseList>")

    # Main release
    out.append(f'<Release><ReleaseReference>R0</ReleaseReference><ReleaseType>{p.release_type}</ReleaseType><ReleaseId>')
    if p.grid:
        out.append(f"<GRid>{p.grid}</GRid>")
    out.append(f"<ICPN>{p.icpn}</ICPN>")
    if p.catalog_number:
        out.append(f'<CatalogNumber Namespace="{attr(sender_dpid)}">{esc(p.catalog_number)}</CatalogNumber>')
    out.append("</ReleaseId>")
    _title(out, p.title, p.subtitle)
    out.append(f"<DisplayArtistName>{esc(p.display_name)}</DisplayArtistName>")
    _display_artists(out, p.artists)
    out.append(f"<ReleaseLabelReference>{p.label_ref}</ReleaseLabelReference>")
    _pline(out, p.p_year, p.p_text)
    if p.c_text:
        out.append("<CLine>")
        if p.c_year:
            out.append(f"<Year>{p.c_year}</Year>")
        out.append(f"<CLineText>{esc(p.c_text)}</CLineText></CLine>")
    out.append(f"<Duration>{p.duration}</Duration>")
    _genre(out, p.genre, p.subgenre)
    if p.release_date:
        out.append(f"<ReleaseDate>{p.release_date}</ReleaseDate>")
    if p.original_release_date:
        out.append(f"<OriginalReleaseDate>{p.original_release_date}</OriginalReleaseDate>")
    out.append(f"<ParentalWarningType>{p.parental or 'NoAdviceAvailable'}</ParentalWarningType>")
    if p.compilation:
        out.append("<IsMultiArtistCompilation>true</IsMultiArtistCompilation>")
    out.append("<ResourceGroup>")
    for disc, tracks in p.discs:
        out.append(f'<ResourceGroup ResourceGroupType="Component"><SequenceNumber>{disc}</SequenceNumber>')
        out.extend(
            f"<ResourceGroupContentItem><SequenceNumber>{t.number}</SequenceNumber>"
            f"<ReleaseResourceReference>A{t.num}</ReleaseResourceReference></ResourceGroupContentItem>"
            for t in tracks
        )
        out.append("</ResourceGroup>")
    out.append("</ResourceGroup></Release>")

    # One TrackRelease per track
    ns = attr(sender_dpid)
    genres: dict[str, str] = {}
    for t in p.tracks:
        g = t.genre or p.genre
        genre_xml = genres.get(g)
        if genre_xml is None:
            genre_xml = genres[g] = f"<Genre><GenreText>{esc(g)}</GenreText></Genre>"
        out.append(
            f"<TrackRelease><ReleaseReference>R{t.num}</ReleaseReference><ReleaseId>"
            f'<ProprietaryId Namespace="{ns}">{p.icpn}_{t.isrc}</ProprietaryId></ReleaseId>'
            f"<ReleaseResourceReference>A{t.num}</ReleaseResourceReference>"
            f"<ReleaseLabelReference>{p.label_ref}</ReleaseLabelReference>{genre_xml}</TrackRelease>"
        )
    out.append("</ReleaseList>")

    if p.deals:
        refs = "<DealReleaseReference>R0</DealReleaseReference>" + "".join(
            f"<DealReleaseReference>R{t.num}</DealReleaseReference>" for t in p.tracks
        )
        out.append("<DealList>")
        for d in p.deals:
            out.append(f"<ReleaseDeal>{refs}<Deal><DealTerms>")
            for code in d.territories:
                out.append(f"<TerritoryCode>{code}</TerritoryCode>")
            out.append(f"<ValidityPeriod><StartDate>{d.start}</StartDate>")
            if d.end:
                out.append(f"<EndDate>{d.end}</EndDate>")
            out.append("</ValidityPeriod>")
            for m in d.models:
                out.append(f"<CommercialModelType>{m}</CommercialModelType>")
            for u in d.use_types:
                out.append(f"<UseType>{u}</UseType>")
            out.append("</DealTerms></Deal></ReleaseDeal>")
        out.append("</DealList>")
    return out

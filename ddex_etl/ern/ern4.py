"""ERN 4.3 and 4.2 writer: a prepared release -> the message body, as strings.

Templates are plain string pieces joined once; each text value is escaped once
with ``esc``/``attr``. Element order follows release-notification.xsd; the
comments name the places where 4.2 and 4.3 differ.
"""
from __future__ import annotations

import functools
from typing import Any

from ._media import audio_details_xml, color_depth
from ._text import attr, esc, image_sizes
from .prepared import PCover, PCredit, PDeal, Prepared, PTrack

NS = {"4.3": "http://ddex.net/xml/ern/43", "4.2": "http://ddex.net/xml/ern/42"}
AVS_VERSION = "3"  # AvsVersionId of the allowed-value-sets.xsd that ERN 4.3 ships with

# Party entries and deal terms recur across a catalog (the same artists, the
# same territories and models): their text is kept per process, keyed by every
# value it is made of, so what was built before cannot change the output.
# Bounded like the checker's caches.
_CACHE_LIMIT = 10_000
_PARTIES: dict[tuple[Any, ...], str] = {}
_DEALS: dict[tuple[Any, ...], tuple[str, str]] = {}


@functools.lru_cache(maxsize=64)
def root_open(version: str, language: str, element: str = "NewReleaseMessage") -> str:
    """The root start tag with the attributes each 4.x version requires."""
    out = f'<ern:{element} xmlns:ern="{NS[version]}"'
    if version == "4.3":  # ERN 4.2 has no AvsVersionId
        out += f' AvsVersionId="{AVS_VERSION}"'
    out += f' LanguageAndScriptCode="{attr(language)}"'
    if element == "NewReleaseMessage":
        # DDEX's Audio profile covers albums, EPs and singles alike; the
        # SimpleAudioSingle profile forbids TrackReleases, which we always send.
        out += ' ReleaseProfileVersionId="Audio"'
    return out + ">"


def lang_attr(language: str | None) -> str:
    """The LanguageAndScriptCode attribute of a title in the release's language ('' when unknown)."""
    return f' LanguageAndScriptCode="{attr(language)}"' if language else ""


def _display_artists(out: list[str], credits: list[PCredit]) -> None:
    for c in credits:
        out.append(
            f'<DisplayArtist SequenceNumber="{c.seq}"><ArtistPartyReference>{c.ref}</ArtistPartyReference>'
            f"<DisplayArtistRole>{c.role}</DisplayArtistRole></DisplayArtist>"
        )


def _title(out: list[str], title: str, subtitle: str | None, lang: str = "") -> None:
    shown = f"{title} ({subtitle})" if subtitle else title
    out.append(f"<DisplayTitleText{lang}>{esc(shown)}</DisplayTitleText><DisplayTitle{lang}><TitleText>{esc(title)}</TitleText>")
    if subtitle:
        out.append(f'<SubTitle SubTitleType="Version">{esc(subtitle)}</SubTitle>')
    out.append("</DisplayTitle>")


def _pline(out: list[str], year: int | None, text: str | None) -> None:
    if text:
        out.append("<PLine>")
        if year:
            out.append(f"<Year>{year}</Year>")
        out.append(f"<PLineText>{esc(text)}</PLineText></PLine>")


def _credits_xml(t: PTrack) -> str:
    """DisplayArtistName, DisplayArtist and Contributor elements of one track."""
    out = [f"<DisplayArtistName>{esc(t.display_name)}</DisplayArtistName>"]
    _display_artists(out, t.artists)
    for c in t.contributors:  # one per person, with all their roles (profile rule 1030-1)
        roles = "".join([f"<Role>{r}</Role>" for r in c.roles])
        out.append(
            f'<Contributor SequenceNumber="{c.seq}"><ContributorPartyReference>{c.ref}</ContributorPartyReference>{roles}</Contributor>'
        )
    return "".join(out)


def _title_xml(title: str, subtitle: str | None, lang: str) -> str:
    if subtitle:
        return (
            f"<DisplayTitleText{lang}>{esc(title)} ({esc(subtitle)})</DisplayTitleText><DisplayTitle{lang}><TitleText>{esc(title)}</TitleText>"
            f'<SubTitle SubTitleType="Version">{esc(subtitle)}</SubTitle></DisplayTitle>'
        )
    e = esc(title)
    return f"<DisplayTitleText{lang}>{e}</DisplayTitleText><DisplayTitle{lang}><TitleText>{e}</TitleText></DisplayTitle>"


def _pline_xml(year: int | None, text: str | None) -> str:
    if not text:
        return ""
    return (f"<PLine><Year>{year}</Year>" if year else "<PLine>") + f"<PLineText>{esc(text)}</PLineText></PLine>"


def _sound_recordings(out: list[str], tracks: list[PTrack], nums: list[str], v43: bool, lang: str, first_published: str | None) -> None:
    """One SoundRecording string per track (4.3 and 4.2 differ in where ids, P line and files go).

    Tracks of a release share credit lists, P lines and flags, so those pieces
    are written once per release; the loop itself only fills the template.
    """
    credits_cache: dict[Any, str] = {}  # keyed by list identity: the lists live until the body is written
    pline_cache: dict[Any, str] = {}
    published = f"<FirstPublicationDate>{first_published}</FirstPublicationDate>" if first_published else ""
    for t, n in zip(tracks, nums):
        key = (id(t.artists), id(t.contributors), t.display_name)
        credits = credits_cache.get(key)
        if credits is None:
            credits = credits_cache[key] = _credits_xml(t)
        pkey = (t.p_year, t.p_text)
        pline = pline_cache.get(pkey)
        if pline is None:
            pline = pline_cache[pkey] = _pline_xml(t.p_year, t.p_text)
        audio_file = t.audio_file
        if audio_file:
            md5 = t.audio_md5
            hashsum = f"<HashSum><Algorithm>MD5</Algorithm><HashSumValue>{md5}</HashSumValue></HashSum>" if md5 else ""
            file_xml = f"<File><URI>{esc(audio_file)}</URI>{hashsum}</File>"
            if t.audio is not None:  # what the file itself says, read on the delivery side
                file_xml = audio_details_xml("4.3" if v43 else "4.2", t.audio) + file_xml
            if v43:
                file_xml = f"<DeliveryFile><Type>AudioFile</Type>{file_xml}</DeliveryFile>"
            tech = f"<TechnicalDetails><TechnicalResourceDetailsReference>T{n}</TechnicalResourceDetailsReference>{file_xml}</TechnicalDetails>"
        else:
            tech = ""
        version = t.version
        if version:
            title = _title_xml(t.title, version, lang)
        else:
            e = esc(t.title)
            title = f"<DisplayTitleText{lang}>{e}</DisplayTitleText><DisplayTitle{lang}><TitleText>{e}</TitleText></DisplayTitle>"
        # The title and the credits go in parts of their own: they are the
        # text most likely to be non-ASCII, and UTF-8 encoding is a plain copy
        # only for parts that are all ASCII.
        if v43:  # 4.3 groups ids, P line and files in a SoundRecordingEdition
            out += (
                f"<SoundRecording><ResourceReference>A{n}</ResourceReference><Type>MusicalWorkSoundRecording</Type>"
                f"<SoundRecordingEdition><ResourceId><ISRC>{t.isrc}</ISRC></ResourceId>{pline}{tech}</SoundRecordingEdition>",
                title,
                credits,
                f"<Duration>{t.duration}</Duration>{published}"
                f"<ParentalWarningType>{t.parental or 'NoAdviceAvailable'}</ParentalWarningType></SoundRecording>",
            )
        else:
            out += (
                f"<SoundRecording><ResourceReference>A{n}</ResourceReference><Type>MusicalWorkSoundRecording</Type>"
                f"<ResourceId><ISRC>{t.isrc}</ISRC></ResourceId>",
                title,
                credits,
                f"{pline}<Duration>{t.duration}</Duration>{published}"
                f"<ParentalWarningType>{t.parental or 'NoAdviceAvailable'}</ParentalWarningType>{tech}</SoundRecording>",
            )


COVER_REF = "A0"  # the front cover's ResourceReference (tracks are A1, A2, ...)


def _image(cover: PCover, icpn: str, sender_dpid: str, parental: str | None) -> str:
    """The front cover Image resource, with its file and hash (profile rules 1029-1, 1053-1)."""
    sizes = image_sizes(cover.height, cover.width)
    return (
        f"<Image><ResourceReference>{COVER_REF}</ResourceReference><Type>FrontCoverImage</Type>"
        f'<ResourceId><ProprietaryId Namespace="{attr(sender_dpid)}">{icpn}_FrontCoverImage</ProprietaryId></ResourceId>'
        f"<ParentalWarningType>{parental or 'NoAdviceAvailable'}</ParentalWarningType>"
        f"<TechnicalDetails><TechnicalResourceDetailsReference>T0</TechnicalResourceDetailsReference>"
        f"<ImageCodecType>{cover.codec}</ImageCodecType>{sizes}{color_depth(cover.color_depth)}"
        f"<File><URI>{esc(cover.file)}</URI><HashSum><Algorithm>MD5</Algorithm><HashSumValue>{cover.md5}</HashSumValue></HashSum></File>"
        "</TechnicalDetails></Image>"
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
        key = (party.ref, party.name, party.isni, party.dpid)
        entry = _PARTIES.get(key)
        if entry is None:
            entry = f"<Party><PartyReference>{party.ref}</PartyReference><PartyName><FullName>{esc(party.name)}</FullName></PartyName>"
            if party.isni:
                entry += f"<PartyId><ISNI>{party.isni}</ISNI></PartyId>"
            elif party.dpid:
                entry += f"<PartyId><DPID>{party.dpid}</DPID></PartyId>"
            entry += "</Party>"
            if len(_PARTIES) < _CACHE_LIMIT:
                _PARTIES[key] = entry
        out.append(entry)
    out.append("</PartyList><ResourceList>")
    tracks = p.tracks
    nums = [str(t.num) for t in tracks]  # A1/R1/T1 references: convert each number once
    lang = lang_attr(p.language)
    _sound_recordings(out, tracks, nums, v43, lang, p.first_published)
    if p.cover is not None:
        out.append(_image(p.cover, p.icpn, sender_dpid, p.parental))
    out.append("</ResourceList><ReleaseList>")

    # Main release
    out.append(f'<Release><ReleaseReference>R0</ReleaseReference><ReleaseType>{p.release_type}</ReleaseType><ReleaseId>')
    if p.grid:
        out.append(f"<GRid>{p.grid}</GRid>")
    out.append(f"<ICPN>{p.icpn}</ICPN>")
    if p.catalog_number:
        out.append(f'<CatalogNumber Namespace="{attr(sender_dpid)}">{esc(p.catalog_number)}</CatalogNumber>')
    out.append("</ReleaseId>")
    _title(out, p.title, p.subtitle, lang)
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
    for disc, disc_tracks in p.discs:
        out.append(f'<ResourceGroup ResourceGroupType="Component"><SequenceNumber>{disc}</SequenceNumber>')
        out.append(
            "".join(
                [
                    f"<ResourceGroupContentItem><SequenceNumber>{t.number}</SequenceNumber>"
                    f"<ReleaseResourceReference>A{nums[t.num - 1]}</ReleaseResourceReference></ResourceGroupContentItem>"
                    for t in disc_tracks
                ]
            )
        )
        out.append("</ResourceGroup>")
    if p.cover is not None:  # the front cover hangs off the top-level group (profile rule 1057-1)
        out.append(f"<LinkedReleaseResourceReference>{COVER_REF}</LinkedReleaseResourceReference>")
    out.append("</ResourceGroup></Release>")

    # One TrackRelease per track
    ns = attr(sender_dpid)
    label_ref = f"<ReleaseLabelReference>{p.label_ref}</ReleaseLabelReference>"
    id_open = f'<ReleaseId><ProprietaryId Namespace="{ns}">{p.icpn}_'
    genres: dict[str, str] = {}
    track_releases: list[str] = []
    for t, n in zip(tracks, nums):
        g = t.genre or p.genre
        genre_xml = genres.get(g)
        if genre_xml is None:
            genre_xml = genres[g] = f"<Genre><GenreText>{esc(g)}</GenreText></Genre>"
        track_releases.append(
            f"<TrackRelease><ReleaseReference>R{n}</ReleaseReference>{id_open}{t.isrc}</ProprietaryId></ReleaseId>"
            f"<ReleaseResourceReference>A{n}</ReleaseResourceReference>{label_ref}{genre_xml}</TrackRelease>"
        )
    out.append("".join(track_releases))
    out.append("</ReleaseList>")

    if p.deals:
        _deals(out, p, nums, v43, ns)
    return out


def _price_xml(d: PDeal, ns: str) -> str:
    """A download deal's PriceInformation (after the use types), or ''."""
    if d.price is not None:
        return f'<PriceInformation><WholesalePricePerUnit CurrencyCode="{d.currency}">{d.price}</WholesalePricePerUnit></PriceInformation>'
    if d.price_code is not None:
        return f'<PriceInformation><PriceCode Namespace="{ns}">{esc(d.price_code)}</PriceCode></PriceInformation>'
    return ""


def _deals(out: list[str], p: Prepared, nums: list[str], v43: bool, ns: str) -> None:
    """The DealList: downloads on the main release and every track release, streaming on the track releases only.

    ERN 4.3 deprecates StartDate/EndDate for StartDateTime/EndDateTime: a deal
    starts at the start of its first day and ends at the end of its last
    (DDEX dates are inclusive), in the territory's local time.
    """
    track_refs = "".join([f"<DealReleaseReference>R{n}</DealReleaseReference>" for n in nums])
    groups: tuple[list[str], list[str]] = ([], [])  # (every release, tracks only)
    for d in p.deals:
        # Territories and models/use types come from a small vocabulary:
        # their elements are written once per distinct value.
        key = (tuple(d.territories), tuple(d.models), tuple(d.use_types))
        terms = _DEALS.get(key)
        if terms is None:
            terms = (
                "".join([f"<TerritoryCode>{code}</TerritoryCode>" for code in d.territories]),
                "".join([f"<CommercialModelType>{m}</CommercialModelType>" for m in d.models])
                + "".join([f"<UseType>{u}</UseType>" for u in d.use_types]),
            )
            if len(_DEALS) < _CACHE_LIMIT:
                _DEALS[key] = terms
        if v43:
            period = f"<StartDateTime>{d.start}T00:00:00</StartDateTime>" + (f"<EndDateTime>{d.end}T23:59:59</EndDateTime>" if d.end else "")
        else:
            period = f"<StartDate>{d.start}</StartDate>" + (f"<EndDate>{d.end}</EndDate>" if d.end else "")
        price = _price_xml(d, ns) if d.price is not None or d.price_code is not None else ""
        groups[d.tracks_only].append(
            f"<Deal><DealTerms>{terms[0]}<ValidityPeriod>{period}</ValidityPeriod>{terms[1]}{price}</DealTerms></Deal>"
        )
    out.append("<DealList>")
    if groups[0]:
        out.append(f"<ReleaseDeal><DealReleaseReference>R0</DealReleaseReference>{track_refs}{''.join(groups[0])}</ReleaseDeal>")
    if groups[1]:
        out.append(f"<ReleaseDeal>{track_refs}{''.join(groups[1])}</ReleaseDeal>")
    out.append("</DealList>")

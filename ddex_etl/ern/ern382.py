"""ERN 3.8.2 writer: a prepared release -> the message body, as strings.

ERN 3 has no PartyList: artists and contributors are written in place with
their names, and most descriptive data sits in ``...DetailsByTerritory``
blocks (we write one, for Worldwide). Track releases are ``Release`` elements
of type ``TrackRelease``; composers and lyricists are
``IndirectResourceContributor`` (work contributors), other non-display roles
``ResourceContributor``.
"""
from __future__ import annotations

import functools
from typing import Any

from ._media import audio_details_xml, color_depth
from ._text import attr, esc, image_sizes
from .prepared import PCover, PCredit, PParty, Prepared, PTrack

NS = "http://ddex.net/xml/ern/382"

# Party names and deal terms recur across a catalog: their text is kept per
# process, keyed by every value it is made of (bounded like the checker's caches).
_CACHE_LIMIT = 10_000
_PARTIES: dict[tuple[Any, ...], str] = {}
_DEALS: dict[tuple[Any, ...], str] = {}


ALBUM_PROFILE = "CommonReleaseTypes/14/AudioAlbum"
SINGLE_PROFILE = "CommonReleaseTypes/14/AudioSingle"
# DDEX's Business Profiles 1.4 (table 1), for the deal terms that name one
# without further data: (commercial model, use type) -> profile. Permanent
# downloads are left out on purpose: their profiles split on DRM
# (DRMProtected / NonProtected), which the catalog does not record, and the
# generic one may not be combined with a specific streaming profile (rule
# 2300-1 and its siblings).
BUSINESS_PROFILES = {
    ("SubscriptionModel", "OnDemandStream"): "InteractiveSubscriptionStreamingService",
    ("AdvertisementSupportedModel", "OnDemandStream"): "InteractiveAdSupportedStreamingService",
    ("SubscriptionModel", "NonInteractiveStream"): "NonInteractiveSubscriptionStreamingService",
    ("DeviceFeeModel", "NonInteractiveStream"): "NonInteractiveSubscriptionStreamingServiceOnDevice",
    ("AdvertisementSupportedModel", "NonInteractiveStream"): "NonInteractiveAdSupportedStreamingService",
    ("SubscriptionModel", "ConditionalDownload"): "TetheredDownloadService",
    ("AdvertisementSupportedModel", "ConditionalDownload"): "AdSupportedTetheredDownloadService",
    ("AdvertisementSupportedModel", "Stream"): "GenericAdSupportedStreamingService",
    ("SubscriptionModel", "Stream"): "GenericSubscriptionStreamingService",
    ("PayAsYouGoModel", "Stream"): "GenericPayAsYouGoStreamingService",
}
_PROFILE_ORDER = {name: i for i, name in enumerate(BUSINESS_PROFILES.values())}


@functools.lru_cache(maxsize=256)
def root_open(language: str, release_profile: str | None = None, business_profiles: str | None = None, element: str = "NewReleaseMessage") -> str:
    """The root start tag: ERN 3 names its version in MessageSchemaVersionId, and the profiles the message follows."""
    out = f'<ern:{element} xmlns:ern="{NS}" MessageSchemaVersionId="ern/382"'
    if business_profiles:
        out += f' BusinessProfileVersionId="{business_profiles}"'
    if release_profile:
        out += f' ReleaseProfileVersionId="{release_profile}"'
    return out + f' LanguageAndScriptCode="{attr(language)}">'


def is_single(p: Prepared) -> bool:
    return p.release_type == "Single"


def profiles(p: Prepared) -> tuple[str, str | None]:
    """(ReleaseProfileVersionId, BusinessProfileVersionId) of a release: by its type and its deals.

    Singles follow the Audio Single profile; every other release type the
    Audio Album profile, whose main release is an ``Album`` (an EP keeps
    ``EP`` as its second ReleaseType).
    """
    found: set[str] = set()
    for d in p.deals:
        for m in d.models:
            for u in d.use_types:
                name = BUSINESS_PROFILES.get((m, u))
                if name is not None:
                    found.add(name)
    business = " ".join(f"CommonDealTypes/14/{n}" for n in sorted(found, key=_PROFILE_ORDER.__getitem__)) or None
    return (SINGLE_PROFILE if is_single(p) else ALBUM_PROFILE), business


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


def _titles(title: str, subtitle: str | None, lang: str) -> tuple[str, str]:
    """(ReferenceTitle, FormalTitle + DisplayTitle) of a release or recording.

    The release profiles want a FormalTitle and a DisplayTitle in the
    Worldwide details (rules 1088-1, 1089-1): the formal one is the title as
    registered, the display one adds the version as shown to consumers.
    """
    e = esc(title)
    if subtitle:
        es = esc(subtitle)
        reference = f"<ReferenceTitle{lang}><TitleText>{e}</TitleText><SubTitle>{es}</SubTitle></ReferenceTitle>"
        typed = (
            f'<Title{lang} TitleType="FormalTitle"><TitleText>{e}</TitleText></Title>'
            f'<Title{lang} TitleType="DisplayTitle"><TitleText>{e}</TitleText><SubTitle SubTitleType="Version">{es}</SubTitle></Title>'
        )
    else:
        reference = f"<ReferenceTitle{lang}><TitleText>{e}</TitleText></ReferenceTitle>"
        typed = (
            f'<Title{lang} TitleType="FormalTitle"><TitleText>{e}</TitleText></Title>'
            f'<Title{lang} TitleType="DisplayTitle"><TitleText>{e}</TitleText></Title>'
        )
    return reference, typed


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
    """(DisplayArtist elements, contributor elements) for a track.

    Each person appears once per kind with all their roles (rules 1101-1, 1103-1).
    """
    out: list[str] = []
    _artists(out, t.artists, parties)
    artists = "".join(out)
    out = []
    rseq = wseq = 0
    for c in t.contributors:
        if not c.work:
            rseq += 1
            roles = "".join([f"<ResourceContributorRole>{r}</ResourceContributorRole>" for r in c.roles])
            out.append(f'<ResourceContributor SequenceNumber="{rseq}">{_party(parties[c.ref])}{roles}</ResourceContributor>')
    for c in t.contributors:
        if c.work:
            wseq += 1
            roles = "".join([f"<IndirectResourceContributorRole>{r}</IndirectResourceContributorRole>" for r in c.roles])
            out.append(
                f'<IndirectResourceContributor SequenceNumber="{wseq}">{_party(parties[c.ref])}{roles}</IndirectResourceContributor>'
            )
    return artists, "".join(out)


def _line_xml(kind: str, year: int | None, text: str | None) -> str:
    out: list[str] = []
    _line(out, kind, year, text)
    return "".join(out)


def file_name_path(path: str) -> str:
    """FileName and FilePath of a file: ``resources/01-01.wav`` -> ``resources/`` and ``01-01.wav``, as stores parse them."""
    folder, sep, name = path.rpartition("/")
    if not sep or not name:
        return f"<FileName>{esc(path)}</FileName>"
    return f"<FileName>{esc(name)}</FileName><FilePath>{esc(folder)}/</FilePath>"


COVER_REF = "A0"  # the front cover's ResourceReference (tracks are A1, A2, ...)


def _image(cover: PCover, icpn: str, sender_dpid: str) -> str:
    sizes = image_sizes(cover.height, cover.width)
    return (
        f'<Image><ImageType>FrontCoverImage</ImageType><ImageId><ProprietaryId Namespace="{attr(sender_dpid)}">'
        f"{icpn}_FrontCoverImage</ProprietaryId></ImageId><ResourceReference>{COVER_REF}</ResourceReference>"
        "<ImageDetailsByTerritory><TerritoryCode>Worldwide</TerritoryCode><TechnicalImageDetails>"
        f"<TechnicalResourceDetailsReference>T0</TechnicalResourceDetailsReference><ImageCodecType>{cover.codec}</ImageCodecType>{sizes}{color_depth(cover.color_depth)}"
        f"<File>{file_name_path(cover.file)}<HashSum><HashSum>{cover.md5}</HashSum>"
        "<HashSumAlgorithmType>MD5</HashSumAlgorithmType></HashSum></File></TechnicalImageDetails></ImageDetailsByTerritory></Image>"
    )


def _sound_recordings(out: list[str], p: Prepared, nums: list[str], parties: dict[str, PParty], lang: str) -> list[tuple[str, ...]]:
    """Writes one SoundRecording per track; returns the pieces each TrackRelease reuses.

    Tracks of a release share credit lists, P lines, genres and artist names,
    so those pieces are written once per release. A recording carries no
    DisplayArtistName: the release profiles want it on the release only
    (rule 1102-1); its DisplayArtists name the performers.
    """
    credits_cache: dict[Any, tuple[str, str]] = {}  # keyed by list identity: the lists live until the body is written
    small: dict[Any, str] = {}  # genre, names and P line pieces
    shared_cache: dict[Any, tuple[str, str, str, str]] = {}
    label = f"<LabelName>{esc(p.label_name)}</LabelName>"
    published = f"<OriginalResourceReleaseDate>{p.first_published}</OriginalResourceReleaseDate>" if p.first_published else ""
    release_date = f"<ReleaseDate>{p.release_date}</ReleaseDate>" if p.release_date else ""
    cline = _line_xml("CLine", p.c_year, p.c_text)
    pieces: list[tuple[str, ...]] = []
    for t, n in zip(p.tracks, nums):
        reference_title, titles = _titles(t.title, t.version, lang)
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
                names = small[nkey] = f"<DisplayArtistName>{esc(t.display_name)}</DisplayArtistName>{label}"
            pkey = ("pline", t.p_year, t.p_text)
            pline = small.get(pkey)
            if pline is None:
                pline = small[pkey] = _line_xml("PLine", t.p_year, t.p_text)
            parental = f"<ParentalWarningType>{t.parental or 'NoAdviceAvailable'}</ParentalWarningType>"
            shared = shared_cache[ckey] = (
                f"{artists}{contributors}{label}{published}{pline}{genre}{parental}",
                names,
                f"{artists}{parental}{genre}{release_date}",
                f"{pline}{cline}",
            )
        tech = (
            f"<TechnicalSoundRecordingDetails><TechnicalResourceDetailsReference>T{n}</TechnicalResourceDetailsReference>"
            f"{audio_details_xml('3.8.2', t.audio)}<File>{file_name_path(t.audio_file)}"
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
            titles,
            shared[0],
            f"{tech}</SoundRecordingDetailsByTerritory></SoundRecording>",
        )
        pieces.append((reference_title, titles, shared[1], shared[2], shared[3]))
    return pieces


def body(p: Prepared, sender_dpid: str) -> list[str]:
    """Everything after MessageHeader: ResourceList ... DealList."""
    parties = {party.ref: party for party in p.parties}
    lang = f' LanguageAndScriptCode="{attr(p.language)}"' if p.language else ""
    out: list[str] = ["<ResourceList>"]
    nums = [str(t.num) for t in p.tracks]  # A1/R1/T1 references: convert each number once
    pieces = _sound_recordings(out, p, nums, parties, lang)
    if p.cover is not None:
        out.append(_image(p.cover, p.icpn, sender_dpid))
    out.append('</ResourceList><ReleaseList><Release IsMainRelease="true"><ReleaseId>')
    if p.grid:
        out.append(f"<GRid>{p.grid}</GRid>")
    out.append(f"<ICPN>{p.icpn}</ICPN>")
    if p.catalog_number:
        out.append(f'<CatalogNumber Namespace="{attr(sender_dpid)}">{esc(p.catalog_number)}</CatalogNumber>')
    out.append("</ReleaseId><ReleaseReference>R0</ReleaseReference>")
    reference_title, titles = _titles(p.title, p.subtitle, lang)
    out.append(reference_title)
    out.append("<ReleaseResourceReferenceList>")
    out.append("".join([f'<ReleaseResourceReference ReleaseResourceType="PrimaryResource">A{n}</ReleaseResourceReference>' for n in nums]))
    if p.cover is not None:
        out.append(f'<ReleaseResourceReference ReleaseResourceType="SecondaryResource">{COVER_REF}</ReleaseResourceReference>')
    if is_single(p):
        out.append("</ReleaseResourceReferenceList><ReleaseType>Single</ReleaseType>")
    else:  # the Audio Album profile's main release is an Album (rule 1141-1); an EP says so too
        extra = "" if p.release_type == "Album" else f"<ReleaseType>{p.release_type}</ReleaseType>"
        out.append(f"</ReleaseResourceReferenceList><ReleaseType>Album</ReleaseType>{extra}")
    out.append(
        "<ReleaseDetailsByTerritory><TerritoryCode>Worldwide</TerritoryCode>"
        f"<DisplayArtistName>{esc(p.display_name)}</DisplayArtistName><LabelName>{esc(p.label_name)}</LabelName>"
    )
    out.append(titles)
    _artists(out, p.artists, parties)
    if p.compilation:
        out.append("<IsMultiArtistCompilation>true</IsMultiArtistCompilation>")
    out.append(f"<ParentalWarningType>{p.parental or 'NoAdviceAvailable'}</ParentalWarningType>")
    out.append("<ResourceGroup>")
    # ERN 3's profiles want sequences to run 1..n (rule 1669-1): discs and
    # tracks are numbered by position, so a gap in the catalog's numbering
    # (disc 1 and 3, tracks 1, 2, 4) still gives a valid sequence.
    for position, (_disc, tracks) in enumerate(p.discs, 1):
        out.append(f"<ResourceGroup><SequenceNumber>{position}</SequenceNumber>")
        out.append(
            "".join(
                [
                    f"<ResourceGroupContentItem><SequenceNumber>{k}</SequenceNumber><ResourceType>SoundRecording</ResourceType>"
                    f'<ReleaseResourceReference ReleaseResourceType="PrimaryResource">A{nums[t.num - 1]}</ReleaseResourceReference></ResourceGroupContentItem>'
                    for k, t in enumerate(tracks, 1)
                ]
            )
        )
        out.append("</ResourceGroup>")
    if p.cover is not None:  # a secondary resource: in the top-level group, not sequenced (rules 1083-1, 1135-1NR)
        out.append(
            "<ResourceGroupContentItem><ResourceType>Image</ResourceType>"
            f'<ReleaseResourceReference ReleaseResourceType="SecondaryResource">{COVER_REF}</ReleaseResourceReference></ResourceGroupContentItem>'
        )
    out.append("</ResourceGroup>")
    _genre(out, p.genre, p.subgenre)
    if p.release_date:
        out.append(f"<ReleaseDate>{p.release_date}</ReleaseDate>")
    if p.original_release_date:
        out.append(f"<OriginalReleaseDate>{p.original_release_date}</OriginalReleaseDate>")
    out.append(f"</ReleaseDetailsByTerritory><Duration>{p.duration}</Duration>")
    _line(out, "PLine", p.p_year, p.p_text)
    _line(out, "CLine", p.c_year, p.c_text)
    out.append("</Release>")

    for t, n, (reference_title, titles, names, rest, lines) in zip(p.tracks, nums, pieces):
        out += (
            f'<Release><ReleaseId><ISRC>{t.isrc}</ISRC></ReleaseId><ReleaseReference>R{n}</ReleaseReference>',
            reference_title,
            f'<ReleaseResourceReferenceList><ReleaseResourceReference ReleaseResourceType="PrimaryResource">A{n}</ReleaseResourceReference>'
            "</ReleaseResourceReferenceList><ReleaseType>TrackRelease</ReleaseType>"
            "<ReleaseDetailsByTerritory><TerritoryCode>Worldwide</TerritoryCode>",
            names,
            titles,
            rest,
            f"</ReleaseDetailsByTerritory><Duration>{t.duration}</Duration>{lines}</Release>",
        )
    out.append("</ReleaseList>")

    if p.deals:
        _deals(out, p, nums, attr(sender_dpid))
    return out


def _deals(out: list[str], p: Prepared, nums: list[str], ns: str) -> None:
    """The DealList: downloads on the main release and every track release, streaming on the track releases only."""
    track_refs = "".join([f"<DealReleaseReference>R{n}</DealReleaseReference>" for n in nums])
    groups: tuple[list[str], list[str]] = ([], [])  # (every release, tracks only)
    for d in p.deals:
        # Territories and models/use types come from a small vocabulary:
        # their elements are written once per distinct value.
        key = (tuple(d.territories), tuple(d.models), tuple(d.use_types))
        terms = _DEALS.get(key)
        if terms is None:
            usage = (
                "".join([f"<CommercialModelType>{m}</CommercialModelType>" for m in d.models])
                + "<Usage>"
                + "".join([f"<UseType>{u}</UseType>" for u in d.use_types])
                + "</Usage>"
            )
            terms = usage + "".join([f"<TerritoryCode>{code}</TerritoryCode>" for code in d.territories])
            if len(_DEALS) < _CACHE_LIMIT:
                _DEALS[key] = terms
        if d.price is not None:
            price = f'<PriceInformation><WholesalePricePerUnit CurrencyCode="{d.currency}">{d.price}</WholesalePricePerUnit></PriceInformation>'
        elif d.price_code is not None:
            price = f'<PriceInformation><PriceType Namespace="{ns}">{esc(d.price_code)}</PriceType></PriceInformation>'
        else:
            price = ""
        start = f"<StartDate>{d.start}</StartDate>" if d.start else ""
        end = f"<EndDate>{d.end}</EndDate>" if d.end else ""
        groups[d.tracks_only].append(f"<Deal><DealTerms>{terms}{price}<ValidityPeriod>{start}{end}</ValidityPeriod></DealTerms></Deal>")
    out.append("<DealList>")
    if groups[0]:
        out.append(f"<ReleaseDeal><DealReleaseReference>R0</DealReleaseReference>{track_refs}{''.join(groups[0])}</ReleaseDeal>")
    if groups[1]:
        out.append(f"<ReleaseDeal>{track_refs}{''.join(groups[1])}</ReleaseDeal>")
    out.append("</DealList>")

"""Hypothesis strategies for release records the builder must accept, plus a fixed full album.

"Valid" here means what the catalog schema allows and ``ddex_etl.ern`` documents
as required: values from the shared vocabularies, XML-legal text without
surrounding whitespace, identifiers with right check characters, a front
cover, P and C lines, unique positions, at least one track and one deal.
Everything optional is sometimes absent. Text is arbitrary Unicode, with
right-to-left scripts and long strings mixed in on purpose; releases come
with duets (several MainArtists), people credited in several roles (Composer
and Lyricist) and titles in Japanese, Hebrew and Arabic.
"""
from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

from ddex_etl.ern.identifiers import gs1_check_digit, grid_check_character, isni_check_character
from ddex_etl.models import Contributor, CoverImage, Deal, Label, Release, Track

# Values accepted by every supported ERN version (so one release builds in all three).
RELEASE_TYPES = ["Album", "Single", "EP", "Compilation", "album", "single"]
DISPLAY_ROLES = ["MainArtist", "FeaturedArtist"]
OTHER_ROLES = ["Composer", "Lyricist", "Producer", "Remixer", "Arranger", "Mixer", "Engineer", "Conductor", "ComposerLyricist"]
COMMERCIAL_MODELS = ["SubscriptionModel", "AdvertisementSupportedModel", "PayAsYouGoModel", "FreeOfChargeModel"]
USE_TYPES = ["Stream", "OnDemandStream", "NonInteractiveStream", "PermanentDownload", "ConditionalDownload", "Download"]
PARENTAL = ["Explicit", "NotExplicit", "Unknown", "NoAdviceAvailable", "ExplicitContentEdited"]
TERRITORIES = ["GB", "US", "DE", "FR", "JP", "BR", "IL", "SA", "EG", "IN", "KR", "AU", "CA", "MX", "ZA", "gb", "us"]

RTL = ["שלום עולם", "مرحبا بالعالم", "ערב טוב (גרסה חיה)", "أغنية الحب", "‏Hello‏ عربي mixed"]

_chars = st.characters(
    codec="utf-8",
    exclude_categories=("Cs", "Cc"),
    exclude_characters="\ufffe\uffff",
)


def _clean(s: str) -> str:
    return s.strip()


text = st.one_of(
    st.text(_chars, min_size=1, max_size=20),
    st.sampled_from(RTL),
    st.text("abcXYZ &<>\"'", min_size=1, max_size=12),
    st.text(_chars, min_size=200, max_size=600),  # long strings, now and then
).map(_clean).filter(bool)
optional_text = st.none() | text
# Anything a text column can hold: control characters, lone surrogates,
# U+FFFE/U+FFFF, padding, empty strings.
dirty_text = st.one_of(
    st.text(st.characters(codec=None), max_size=20),
    st.text(st.sampled_from(" \t\r\n\x00\x01\x0b\x1f\ufffe\uffff\ud800\udfffab&<"), max_size=10),
    text,
)
years = st.integers(1900, 2100)
dates = st.dates(dt.date(1950, 1, 1), dt.date(2040, 12, 31))
stamps = st.datetimes(
    dt.datetime(2000, 1, 1), dt.datetime(2035, 1, 1), timezones=st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=9))])
)
# ISRC prefixes: country codes and the agency's own (DDEX's ERN 4 rules know these).
ISRC_PREFIXES = ["GB", "US", "JP", "DE", "FR", "BR", "KR", "IL", "QM", "QZ", "FX", "ZZ", "UK"]
isrcs = st.builds(lambda cc, rest: cc + rest, st.sampled_from(ISRC_PREFIXES), st.from_regex(r"\A[A-Z0-9]{3}[0-9]{7}\Z"))
icpns = st.from_regex(r"\A[0-9]{11,13}\Z").map(lambda body: body + gs1_check_digit(body))
grids = st.from_regex(r"\A[A-Z0-9]{17}\Z").map(lambda body: body + grid_check_character(body))
md5s = st.from_regex(r"\A[0-9a-f]{32}\Z")
isnis = st.from_regex(r"\A[0-9]{15}\Z").map(lambda body: body + isni_check_character(body))
MIME_TYPES = ["image/jpeg", "image/png", "image/gif", "image/tiff", "IMAGE/JPEG"]


@st.composite
def contributors(
    draw: st.DrawFn, roles: list[str], min_size: int = 0, max_size: int = 6, txt: st.SearchStrategy[str] = text
) -> tuple[Contributor, ...]:
    n = draw(st.integers(min_size, max_size))
    out = []
    for k in range(n):
        artist_id = draw(st.integers(1, 40))  # a small pool, so artists recur across tracks
        out.append(
            Contributor(
                artist_id=artist_id,
                name=draw(txt),
                role=draw(st.sampled_from(roles)),
                sequence=draw(st.integers(1, 5)),
                isni=draw(st.none() | isnis),
            )
        )
    return tuple(out)


@st.composite
def covers(draw: st.DrawFn, txt: st.SearchStrategy[str] = text) -> CoverImage:
    size = st.none() | st.integers(1, 6000)
    return CoverImage(draw(txt), draw(md5s), draw(size), draw(size), draw(st.sampled_from(MIME_TYPES)))


@st.composite
def deals(draw: st.DrawFn, deal_id: int, release_date: dt.date | None) -> Deal:
    start = draw(st.none() | dates) if release_date is not None else draw(dates)
    end = draw(st.none() | dates)
    effective = start or release_date
    if effective is not None and end is not None and end < effective:
        if start is None:
            end = None
        else:
            start, end = end, start
    territories = draw(st.just(("Worldwide",)) | st.lists(st.sampled_from(TERRITORIES), min_size=1, max_size=8).map(tuple))
    return Deal(
        deal_id=deal_id,
        territories=territories,
        commercial_model=draw(st.sampled_from(COMMERCIAL_MODELS)),
        use_types=tuple(draw(st.lists(st.sampled_from(USE_TYPES), min_size=1, max_size=4))),
        start_date=start,
        end_date=end,
        updated_at=draw(st.none() | stamps),
    )


@st.composite
def releases(draw: st.DrawFn, txt: st.SearchStrategy[str] = text) -> Release:
    """A release; ``txt`` draws every text value (swap in ``dirty_text`` for hostile data)."""
    # Mostly small releases (fast to generate and validate), sometimes up to 100 tracks.
    size = draw(st.integers(0, 19))
    n_tracks = draw(st.integers(1, 4) if size < 12 else st.integers(5, 20) if size < 18 else st.integers(21, 100))
    n_discs = draw(st.integers(1, min(3, n_tracks)))
    tracks = []
    # A release never repeats an ISRC (the builder rejects that).
    track_isrcs = draw(st.lists(isrcs, min_size=n_tracks, max_size=n_tracks, unique=True))
    for i in range(n_tracks):
        disc = 1 + i * n_discs // n_tracks
        tracks.append(
            Track(
                track_id=1000 + i,
                disc_number=disc,
                track_number=i + 1,  # unique per disc (gaps are allowed)
                isrc=track_isrcs[i],
                title=draw(txt),
                version_title=draw(st.none() | txt),
                duration_seconds=draw(st.integers(1, 7200) | st.floats(0.5, 7200.0)),
                genre=draw(st.none() | txt),
                parental_warning=draw(st.none() | st.sampled_from(PARENTAL)),
                p_line_year=draw(st.none() | years),
                p_line_text=draw(st.none() | txt),
                audio_file=draw(st.none() | txt),
                audio_md5=draw(st.none() | md5s),
                contributors=draw(contributors(DISPLAY_ROLES + OTHER_ROLES, 0, 5, txt)),
                updated_at=draw(st.none() | stamps),
            )
        )
    release_date = draw(st.none() | dates)
    genre = draw(st.none() | txt)
    if genre is None and not any(t.genre for t in tracks):
        genre = draw(txt)
    main = draw(contributors(["MainArtist"], 1, 3, txt))  # sometimes a duet or a trio
    others = draw(contributors(DISPLAY_ROLES + OTHER_ROLES, 0, 4, txt))
    if draw(st.booleans()):  # one person writing music and words: one Contributor, two roles
        writer = draw(st.integers(41, 60))
        name = draw(txt)
        others += (Contributor(writer, name, "Composer", 1), Contributor(writer, name, "Lyricist", 1))
    language = draw(st.none() | st.sampled_from(["en", "ja", "he", "ar", "ja-Jpan", "pt-BR"]))
    title = draw(st.sampled_from(["夢のララバイ", "東京の夜", "שיר אהבה", "أغنية الحب"]) if language in ("ja", "he", "ar") and draw(st.booleans()) else txt)
    return Release(
        release_id=draw(st.integers(1, 2**62)),
        title=title,
        release_type=draw(st.sampled_from(RELEASE_TYPES)),
        icpn=draw(icpns),
        grid=draw(st.none() | grids),
        catalog_number=draw(st.none() | txt),
        version_title=draw(st.none() | txt),
        label=Label(draw(st.integers(1, 10)), draw(txt), draw(st.none() | st.just("PADPIDA2014021301J"))),
        genre=genre,
        subgenre=draw(st.none() | txt),
        release_date=release_date,
        original_release_date=draw(st.none() | dates),
        p_line_year=draw(st.none() | years),
        p_line_text=draw(txt),
        c_line_year=draw(st.none() | years),
        c_line_text=draw(txt),
        parental_warning=draw(st.none() | st.sampled_from(PARENTAL)),
        language=language,
        artists=main + others,
        tracks=tuple(tracks),
        deals=tuple(draw(deals(k + 1, release_date)) for k in range(draw(st.integers(1, 6)))),
        updated_at=draw(st.none() | stamps),
        cover_image=draw(covers(txt)),
    )


def full_album(n_tracks: int = 12, release_id: int = 4242, discs: int = 2) -> Release:
    """A complete, realistic album: every optional field set, two discs, features and composers."""
    label = Label(7, "Nimbus & Sons Records", "PADPIDA2014021301J")
    artists = (
        Contributor(1, "Saeko Shu", "MainArtist", 1, "0000000121032683"),
        Contributor(2, "Les Étoiles", "MainArtist", 2),
        Contributor(9, "Prod Person", "Producer", 3),
    )
    tracks = []
    per_disc = -(-n_tracks // discs)
    for i in range(n_tracks):
        disc, number = divmod(i, per_disc)
        credits = [Contributor(3, "Ana Compositora", "Composer", 1), Contributor(4, "Léa Lyric", "Lyricist", 2)]
        if i % 4 == 1:
            credits.append(Contributor(5, "DJ Feature", "FeaturedArtist", 3))
        if i % 4 == 1:
            credits.append(Contributor(1, "Saeko Shu", "MainArtist", 1, "0000000121032683"))
        tracks.append(
            Track(
                track_id=100 + i,
                disc_number=disc + 1,
                track_number=number + 1,
                isrc=f"JPTO0940{4900 + i:04d}",
                title=["Yume no Lullaby", "夢のララバイ", "Ça plane pour moi", "שיר אהבה", "Rock & Roll <Live>"][i % 5] + f" {i + 1}",
                version_title="Remastered 2024" if i % 3 == 0 else None,
                duration_seconds=180 + 7 * i,
                genre="J-Pop" if i % 2 else None,
                parental_warning="Explicit" if i == 2 else None,
                p_line_year=1994,
                p_line_text="(P) 1994 Nimbus & Sons",
                audio_file=f"{release_id}_{disc + 1:02d}_{number + 1:03d}.flac",
                audio_md5=f"{i:032x}",
                contributors=tuple(credits),
                updated_at=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc),
            )
        )
    return Release(
        release_id=release_id,
        title="Yume no Lullaby",
        release_type="Album",
        icpn="0094631432057",
        grid="A10302B0001234567I",
        catalog_number="NIM-001",
        version_title="Deluxe Edition",
        label=label,
        genre="Pop",
        subgenre="J-Pop",
        release_date=dt.date(2024, 2, 2),
        original_release_date=dt.date(1994, 1, 1),
        p_line_year=1994,
        p_line_text="(P) 1994 Nimbus & Sons",
        c_line_year=2024,
        c_line_text="(C) 2024 Nimbus & Sons",
        parental_warning="NotExplicit",
        language="ja",
        artists=artists,
        tracks=tuple(tracks),
        deals=(
            Deal(1, ("GB", "US", "JP"), "SubscriptionModel", ("OnDemandStream", "NonInteractiveStream"), dt.date(2024, 2, 2)),
            Deal(2, ("Worldwide",), "PayAsYouGoModel", ("PermanentDownload",), dt.date(2024, 2, 2), dt.date(2030, 12, 31)),
            Deal(3, ("DE", "FR"), "AdvertisementSupportedModel", ("OnDemandStream",), None, None),
        ),
        updated_at=dt.datetime(2024, 6, 1, 10, 30, 15, tzinfo=dt.timezone.utc),
        cover_image=CoverImage(f"{release_id}_cover.jpg", "5d41402abc4b2a76b9719d911017c592", 3000, 3000, "image/jpeg"),
    )

"""The reference catalog (``sql/catalog.sql``) and its deterministic demo data.

``seed_catalog(engine, releases=N, seed=S)`` always writes the same rows for
the same ``N``, ``S`` and starting point: every random choice comes from one
``random.Random`` and every timestamp is derived from the seed, never from the
clock. The data aims to look like a label's catalog so the ERN builders meet
what real catalogs hold: albums, singles, EPs, multi-disc sets, compilations
by various artists, featured artists, composers, lyricists and producers,
several deals per release, Japanese, accented and emoji titles.

Speed: rows are generated in Python and streamed with ``COPY FROM STDIN`` by
a second thread, so PostgreSQL loads one batch while Python generates the
next; the foreign keys are dropped for the load and re-added afterwards (one
set-based check instead of one trigger call per row), all in one
transaction, so a failed seed leaves the catalog as it was.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from .. import data_dir
from ..db import map_db_error
from ..dpid import mod37_36_check_character
from ..errors import EtlError, RefusedError
from . import media as demo_media

SQL_DIR = data_dir("sql")
CATALOG_SQL = SQL_DIR / "catalog.sql"

# Load order; TRUNCATE uses the reverse.
TABLES = ("labels", "artists", "releases", "release_artists", "tracks", "track_contributors", "deals", "release_images")
COLUMNS: dict[str, tuple[str, ...]] = {
    "labels": ("label_id", "name", "dpid", "updated_at"),
    "artists": ("artist_id", "name", "isni", "updated_at"),
    "releases": (
        "release_id", "icpn", "grid", "catalog_number", "title", "version_title", "release_type", "label_id",
        "genre", "subgenre", "release_date", "original_release_date", "p_line_year", "p_line_text",
        "c_line_year", "c_line_text", "parental_warning", "language", "updated_at",
    ),
    "release_artists": ("release_id", "artist_id", "role", "sequence", "updated_at"),
    "tracks": (
        "track_id", "release_id", "disc_number", "track_number", "isrc", "title", "version_title",
        "duration_seconds", "genre", "parental_warning", "p_line_year", "p_line_text", "audio_file",
        "audio_md5", "updated_at",
    ),
    "track_contributors": ("track_id", "artist_id", "role", "sequence", "updated_at"),
    "deals": (
        "deal_id", "release_id", "territories", "commercial_model", "use_types", "start_date", "end_date",
        "updated_at", "price_code", "wholesale_price", "currency",
    ),
    "release_images": ("release_id", "file", "md5", "width", "height", "mime_type", "updated_at"),
}
BATCH_RELEASES = 2000  # releases generated per COPY round: bounded memory, overlapped with loading
# Set on the releases table by every seed: a catalog that carries it holds demo data only.
DEMO_MARK = "ddex-etl demo catalog, written by `etl seed`"


@dataclass(frozen=True)
class SeedReport:
    """What ``seed_catalog`` wrote."""

    releases: int
    tracks: int
    artists: int
    deals: int
    seconds: float
    first_release_id: int = 1
    last_release_id: int = 0
    media: frozenset[str] = frozenset()  # the demo media paths the new rows refer to
    media_written: int = 0  # files written under media_dir (identical ones are left alone)

    @property
    def releases_per_second(self) -> float:
        return self.releases / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------
# What is in the database already (so a seed never touches a real catalog)


@dataclass(frozen=True)
class SeedTarget:
    """The database ``etl seed`` would write to, and what it holds."""

    database: str  # e.g. "database 'catalog' on db.example.com:5432"
    demo: bool  # the catalog tables carry the demo mark: only `etl seed` wrote them
    foreign: tuple[str, ...]  # tables and views that are not the demo catalog's (schema.name)
    rows: dict[str, int]  # rows per catalog table present (exact counts only when asked for)

    @property
    def has_rows(self) -> bool:
        return any(self.rows.values())

    @property
    def only_demo(self) -> bool:
        """Nothing here but (an empty catalog or) the demo catalog: safe to seed, and to reset."""
        return not self.foreign and (self.demo or not self.has_rows)

    def contents(self) -> str:
        """What a reset deletes: ``12 releases, 140 tracks, ...``."""
        names = {"labels": "labels", "artists": "artists", "releases": "releases", "release_artists":
                 "release credits", "tracks": "tracks", "track_contributors": "track credits", "deals": "deals",
                 "release_images": "cover images"}
        parts = [f"{self.rows[t]:,} {names[t]}" for t in TABLES if t in self.rows]
        return ", ".join(parts) if parts else "no catalog tables"

    def refusal(self, reset: bool) -> str:
        """Why ``etl seed`` will not write here, and the fix."""
        what = []
        if self.foreign:
            shown = ", ".join(self.foreign[:5]) + (f" and {len(self.foreign) - 5} more" if len(self.foreign) > 5 else "")
            what.append(f"tables that are not the demo catalog's ({shown})")
        if self.has_rows and not self.demo:
            what.append("catalog rows that `etl seed` did not write")
        action = (
            f"--reset would delete every row of its catalog tables ({self.contents()})" if reset
            else "seeding would add demo releases to it"
        )
        return (
            f"{self.database} holds {' and '.join(what)}: it looks like a real catalog, and {action}. "
            "`etl seed` refuses; fix: point ETL_DATABASE_URL (or database.url) at a database of its own for "
            "the demo, or an empty one; pass --yes only if this database really is a throwaway"
        )


def describe_database(url: sa.engine.URL) -> str:
    """``database 'x' on host:port`` (no user, no password)."""
    where = f"{url.host}:{url.port or 5432}" if url.host else "a local socket"
    return f"database {url.database!r} on {where}"


def inspect_target(
    pg: psycopg.Connection[Any], *, database: str, ignore_schemas: Sequence[str] = (), count: bool = False
) -> SeedTarget:
    """What the connected database holds besides the connector's own schemas.

    ``count``: exact row counts of the catalog tables (for a reset's
    message); otherwise 0 or 1 per table (empty or not).
    """
    with pg.cursor() as cur:
        cur.execute(
            "SELECT t, to_regclass(quote_ident(t))::oid FROM unnest(%s::text[]) AS t", (list(TABLES),)
        )
        present = {name: oid for name, oid in cur.fetchall() if oid is not None}
        cur.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            "   AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            "   AND n.nspname NOT LIKE 'pg\\_%%'"
            "   AND NOT (n.nspname = ANY(%s::text[]))"
            "   AND NOT (c.oid = ANY(%s::oid[]))"
            "   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')"
            " ORDER BY 1",
            (list(ignore_schemas), list(present.values())),
        )
        foreign = tuple(row[0] for row in cur.fetchall())
        rows: dict[str, int] = {}
        for name in present:
            if count:
                cur.execute(f"SELECT count(*) FROM {name}")
            else:
                cur.execute(f"SELECT count(*) FROM (SELECT 1 FROM {name} LIMIT 1) AS one")
            rows[name] = int(cur.fetchone()[0])  # type: ignore[index]
        demo = False
        if "releases" in present:
            cur.execute("SELECT obj_description(%s::oid, 'pg_class')", (present["releases"],))
            demo = cur.fetchone()[0] == DEMO_MARK  # type: ignore[index]
    return SeedTarget(database=database, demo=demo, foreign=foreign, rows=rows)


def check_target(engine: sa.Engine, *, ignore_schemas: Sequence[str] = (), reset: bool = False) -> SeedTarget:
    """Inspect the engine's database for ``etl seed`` (row counts when ``reset``)."""
    raw = engine.raw_connection()
    try:
        pg: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
        try:
            target = inspect_target(
                pg, database=describe_database(engine.url), ignore_schemas=ignore_schemas, count=reset
            )
            pg.rollback()
        except EtlError:
            raise
        except Exception as exc:
            raise map_db_error(exc, "looking at what the database holds before seeding") from exc
    finally:
        raw.close()
    return target


# ---------------------------------------------------------------------------
# Schema


def catalog_sql() -> str:
    """The text of ``sql/catalog.sql``."""
    return CATALOG_SQL.read_text(encoding="utf-8")


def create_catalog(conn: sa.Connection | psycopg.Connection[Any]) -> None:
    """Create the reference catalog's tables, keys and indexes if missing (idempotent).

    ``conn`` is a SQLAlchemy or psycopg connection; like every helper here it
    does not commit: the caller's transaction does.
    """
    script = catalog_sql()
    try:
        # Straight to psycopg without parameters, so the script's % and : stay
        # as written (and its several statements go in one round trip).
        if isinstance(conn, sa.Connection):
            if not conn.in_transaction():
                conn.begin()  # as autobegin would: the caller's conn.commit() then commits the DDL
            pg = conn.connection.driver_connection
        else:
            pg = conn
        pg.execute(script)  # type: ignore[union-attr]
    except Exception as exc:
        raise map_db_error(exc, f"creating the reference catalog from {CATALOG_SQL}") from exc


# ---------------------------------------------------------------------------
# Identifier helpers (valid check digits so the builders' validators pass)


def ean13(body12: str) -> str:
    """EAN-13 (ICPN) from 12 digits: append the GS1 check digit."""
    total = sum((3 if i % 2 else 1) * int(c) for i, c in enumerate(body12))
    return body12 + str((10 - total % 10) % 10)


def isni(body15: str) -> str:
    """ISNI from 15 digits: append the ISO 7064 MOD 11-2 check character."""
    total = 0
    for c in body15:
        total = (total + int(c)) * 2
    check = (12 - total % 11) % 11
    return body15 + ("X" if check == 10 else str(check))


_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def grid(body17: str) -> str:
    """GRid from 17 alphanumerics: append the ISO 7064 MOD 37,36 check character."""
    p = 36
    for c in body17:
        s = (p + _B36.index(c)) % 36 or 36
        p = (s * 2) % 37
    return body17 + _B36[(1 - p) % 36]


def _b36(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(_B36[r])
    return "".join(reversed(out))


# ---------------------------------------------------------------------------
# Vocabulary: (language, title words) so a title and its language code agree.

_TITLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # language: (first words, second words)
    "en": (
        ("Midnight", "Golden", "Electric", "Silent", "Broken", "Neon", "Wild", "Velvet", "Paper", "Summer",
         "Northern", "Crystal", "Lonely", "Burning", "Hollow", "Endless", "Little", "Blue"),
        ("Hearts", "Highway", "Dreams", "Lights", "Rain", "City", "Ocean", "Fire", "Echoes", "Roads", "Sky",
         "Garden", "Waves", "Letters", "Shadows", "Horizon", "Machine", "Love"),
    ),
    "ja": (
        ("夜明けの", "東京", "桜色の", "遠い", "真夜中の", "青い", "静かな", "最後の", "光る"),
        ("歌", "ナイト", "物語", "空", "約束", "ダンス", "記憶", "風", "メロディー"),
    ),
    "fr": (
        ("Été", "Rêve", "Cœur", "Lumière", "Chanson", "Mémoire", "Fenêtre", "Désir"),
        ("Éternel", "de Minuit", "d'Hiver", "Brûlé", "à Paris", "Fragile", "Perdu", "Doré"),
    ),
    "es": (
        ("Canción", "Corazón", "Noche", "Mañana", "Sueño", "Camino", "Fiesta", "Lágrimas"),
        ("del Mar", "Rota", "de Verano", "Azul", "Eterna", "Sin Fin", "en Llamas", "Señorita"),
    ),
    "de": (
        ("Träume", "Große", "Müde", "Schöne", "Nächte", "Grüße", "Weiße"),
        ("Straße", "über Berlin", "Brücken", "Tränen", "Schatten", "Wälder", "Lieder"),
    ),
    "pt": (
        ("Saudade", "Coração", "Canção", "Verão", "Ilusão"),
        ("do Mar", "Azul", "em São Paulo", "Perdida", "Tropical"),
    ),
}
_EMOJI = ("🌴", "❤️", "🔥", "✨", "🌙", "🎧", "🌊", "💫")
_LANG_WEIGHTS = (("en", 62), ("ja", 10), ("fr", 8), ("es", 9), ("de", 6), ("pt", 5))
_LANGS = [lang for lang, w in _LANG_WEIGHTS for _ in range(w)]

_FIRST = ("Anna", "Ben", "Chloé", "David", "Elena", "Finn", "Grace", "Hugo", "Ingrid", "Jonas", "Keiko", "Luis",
          "Maya", "Noah", "Olivia", "Pål", "Quinn", "Rosa", "Søren", "Tomás", "Uma", "Victor", "Wen", "Yuki",
          "Zoë", "Björn", "Amélie", "José", "Ольга", "Şebnem")
_LAST = ("Andersson", "Baker", "Castillo", "Dubois", "Eriksen", "Fischer", "García", "Hughes", "Ito", "Jensen",
         "Kowalski", "Lefèvre", "Müller", "Nakamura", "O'Brien", "Petrović", "Quint", "Rossi", "Santos", "Tanaka",
         "Novák", "Villeneuve", "Walsh", "Yamamoto", "Zieliński")
_JA_NAMES = ("山田 花子", "佐藤 健", "鈴木 愛", "高橋 翔", "中村 さくら", "小林 大輔")
_BAND_A = ("The", "Los", "Les", "Die")
_BAND_B = ("Velvet", "Midnight", "Paper", "Neon", "Silver", "Electric", "Hollow", "Northern", "Crimson", "Lunar")
_BAND_C = ("Foxes", "Tigers", "Engines", "Satellites", "Lanterns", "Ghosts", "Owls", "Rivers", "Kites", "Machines")

_LABEL_A = ("Aurora", "Blue Harbor", "Kitsune", "Northern Lights", "Sunset Boulevard", "Estrella", "Fjord",
            "Rocket", "Maison Lumière", "Tokyo Drift", "Velvet Rope", "Greenhouse", "Hinterland", "Solstice")
_LABEL_B = ("Records", "Music", "Recordings", "Sound", "Audio", "Entertainment")

_GENRES = (
    ("Pop", ("Synth-pop", "Dance-pop", "Indie Pop", "K-Pop")),
    ("Rock", ("Indie Rock", "Alternative", "Hard Rock", "Post-punk")),
    ("Electronic", ("House", "Techno", "Ambient", "Drum & Bass")),
    ("Hip-Hop", ("Trap", "Boom Bap", "Lo-fi")),
    ("Jazz", ("Bebop", "Smooth Jazz", "Fusion")),
    ("Classical", ("Baroque", "Romantic", "Contemporary")),
    ("J-Pop", ("City Pop", "Anime", "Idol")),
    ("Latin", ("Reggaeton", "Salsa", "Bossa Nova")),
    ("Folk", ("Singer-Songwriter", "Americana")),
)
_TRACK_VERSIONS = ("Radio Edit", "Remix", "Live", "Acoustic", "Instrumental", "Extended Mix", "Remastered")
_COUNTRIES = ("US", "GB", "FR", "JP", "DE", "SE", "BR", "ES", "NL", "CA")
_TERRITORY_SETS = (
    ("Worldwide",),
    ("Worldwide",),
    ("US", "CA"),
    ("GB", "IE"),
    ("DE", "AT", "CH"),
    ("FR", "BE", "LU"),
    ("JP",),
    ("BR", "MX", "AR", "CO", "CL"),
    ("US", "GB", "AU", "NZ", "CA"),
    ("SE", "NO", "DK", "FI", "IS"),
)
# Specific use types only: a generic one (Stream) beside specific ones
# (OnDemandStream) on one release is ambiguous, and the builder warns about it.
_DEAL_KINDS = (
    ("SubscriptionModel", ("OnDemandStream", "NonInteractiveStream")),
    ("AdvertisementSupportedModel", ("OnDemandStream",)),
    ("PayAsYouGoModel", ("PermanentDownload",)),
    ("SubscriptionModel", ("ConditionalDownload",)),
    ("AdvertisementSupportedModel", ("NonInteractiveStream",)),
)
# Download prices (price_code, wholesale_price, currency as COPY text): a price
# tier, a wholesale price, or none, by deal id (no random draw: adding prices
# left every other seeded value as it was).
_PRICES = ("FRONTLINE\t\\N\t\\N", "\\N\t0.99\tEUR", "\\N\t\\N\t\\N", "MIDPRICE\t\\N\t\\N", "\\N\t1.29\tUSD")
_NO_PRICE = "\\N\t\\N\t\\N"


def _price(deal_id: int, uses: tuple[str, ...]) -> str:
    return _PRICES[deal_id % len(_PRICES)] if "PermanentDownload" in uses else _NO_PRICE


# Cover art: (MIME type, file extension, square sizes in pixels).
_COVER_KINDS = (("image/jpeg", "jpg", (1400, 3000, 3000, 1600)), ("image/png", "png", (3000,)))
# Release kinds: (weight, kind). Weights give about 12 tracks per release on average.
_KINDS = (("album", 55), ("single", 12), ("ep", 12), ("compilation", 12), ("multidisc", 9))
_KIND_TABLE = [k for k, w in _KINDS for _ in range(w)]

_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


# ---------------------------------------------------------------------------
# COPY text format


def _t(value: str | None) -> str:
    """A text value for COPY's text format (escape the few special characters)."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _arr(values: tuple[str, ...]) -> str:
    # Our territory and use-type codes are plain words: no quoting needed.
    return "{" + ",".join(values) + "}"


# ---------------------------------------------------------------------------
# Generation


@dataclass
class _Start:
    release_id: int
    track_id: int
    artist_id: int
    label_id: int
    deal_id: int


class _Generator:
    """Generates one seed run's rows as COPY text, batch by batch."""

    def __init__(self, seed: int, start: _Start, releases: int) -> None:
        # The start point is part of the stream's identity: appending to a
        # catalog is as deterministic as seeding an empty one.
        self.rng = random.Random(f"ddex-etl:{seed}:{start.release_id}:{start.track_id}")
        self.seed = seed
        self.start = start
        self.releases = releases
        self.next_release = start.release_id
        self.next_track = start.track_id
        self.next_deal = start.deal_id
        self.tracks = 0
        self.deals = 0
        # Timestamps: a fixed instant per seed, spread over a year.
        self.base = _EPOCH + dt.timedelta(days=seed % 365)
        self.title_pools = {
            lang: [a + ("" if lang == "ja" else " ") + b for a in first for b in second]
            for lang, (first, second) in _TITLES.items()
        }
        self.registrants: dict[int, str] = {}
        self.media: set[str] = set()  # the demo media paths the rows refer to
        self._make_labels()
        self._make_artists()

    # -- stamps and small helpers

    def _stamp(self) -> str:
        return (self.base + dt.timedelta(seconds=self.rng.randrange(365 * 86400))).isoformat()

    def _title(self, lang: str) -> str:
        rng = self.rng
        title = rng.choice(self.title_pools[lang])
        if rng.random() < 0.05:
            title += " " + rng.choice(_EMOJI)
        return title

    # -- parties

    def _make_labels(self) -> None:
        rng = self.rng
        count = max(5, min(200, self.releases // 400 + 5))
        self.labels: list[tuple[int, str, str | None, str]] = []  # id, name, dpid, isrc registrant prefix
        self.label_lines: list[str] = []
        for i in range(count):
            label_id = self.start.label_id + i
            name = f"{rng.choice(_LABEL_A)} {rng.choice(_LABEL_B)}"
            if i >= len(_LABEL_A):
                name += f" {label_id}"
            dpid = None
            if rng.random() < 0.85:  # a real-looking DPID: its last character is the MOD 37,36 check character
                body = f"PADPIDA{2010 + rng.randrange(15)}{rng.randrange(10**6):06d}"
                dpid = body + mod37_36_check_character(body)
            prefix = "".join(ch for ch in name.upper() if ch.isalpha())[:3].ljust(3, "X")
            self.labels.append((label_id, name, dpid, prefix))
            self.label_lines.append(f"{label_id}\t{_t(name)}\t{_t(dpid)}\t{self._stamp()}\n")

    def _artist_name(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.45:
            return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        if r < 0.55:
            return rng.choice(_JA_NAMES)
        if r < 0.8:
            return f"{rng.choice(_BAND_A)} {rng.choice(_BAND_B)} {rng.choice(_BAND_C)}"
        return rng.choice(_FIRST) + " " + rng.choice(("Lux", "Nova", "Kid", "MC", "DJ", "Rey", "Starr", "Blue"))

    def _make_artists(self) -> None:
        rng = self.rng
        performers = max(20, self.releases // 2)
        writers = max(20, self.releases // 4)
        self.artist_lines: list[str] = []
        aid = self.start.artist_id
        self.various = aid  # "Various Artists", the main artist of compilations
        self.artist_lines.append(f"{aid}\tVarious Artists\t\\N\t{self._stamp()}\n")
        aid += 1
        self.performers = list(range(aid, aid + performers))
        self.writers = list(range(aid + performers, aid + performers + writers))
        for artist_id in self.performers + self.writers:
            name = self._artist_name()
            if rng.random() < 0.3:
                name += f" {artist_id}"  # like real catalogs, names are not unique; ids are
            code = isni(f"{rng.randrange(10**15):015d}") if rng.random() < 0.4 else None
            self.artist_lines.append(f"{artist_id}\t{_t(name)}\t{_t(code)}\t{self._stamp()}\n")
        self.artists = 1 + performers + writers

    # -- releases

    def batch(self, count: int) -> dict[str, list[str]]:
        """COPY lines for the next ``count`` releases, per table."""
        out: dict[str, list[str]] = {t: [] for t in TABLES if t not in ("labels", "artists")}
        for _ in range(count):
            self._release(out)
        return out

    def _release(self, out: dict[str, list[str]]) -> None:
        rng = self.rng
        rid = self.next_release
        self.next_release += 1
        kind = rng.choice(_KIND_TABLE)
        label_id, label_name, _dpid, prefix = rng.choice(self.labels)
        lang = rng.choice(_LANGS)
        genre, subgenres = rng.choice(_GENRES)
        subgenre = rng.choice(subgenres) if rng.random() < 0.8 else None
        year = 1995 + rng.randrange(31)
        release_date = dt.date(year, 1, 1) + dt.timedelta(days=rng.randrange(365))
        original = None
        version_title = None
        if kind == "multidisc":
            version_title = rng.choice(("Deluxe Edition", "Anniversary Edition", "Collector's Edition"))
        elif rng.random() < 0.08:
            version_title = f"Remastered {year}"
            original = release_date - dt.timedelta(days=365 * (5 + rng.randrange(25)))
        explicit = rng.random() < 0.15
        warning = "Explicit" if explicit else ("NotExplicit" if rng.random() < 0.93 else None)
        release_type = {"album": "Album", "single": "Single", "ep": "EP", "compilation": "Compilation",
                        "multidisc": "Album"}[kind]
        title = self._title(lang)
        base_title = title
        if kind == "compilation":
            title = rng.choice(("Best of ", "Hits ", "Now That's ", "Essential ")) + title
        elif kind == "ep":
            title += " EP"
        warning_t = _t(warning)
        icpn = ean13(f"{rng.choice('0123456789')}{rid % 10**11:011d}")
        grid_id = grid(f"A1{_b36(label_id, 5)}{_b36(rid, 10)}") if rng.random() < 0.3 else None
        stamp = self._stamp()
        line_owner = label_name
        out["releases"].append(
            f"{rid}\t{icpn}\t{_t(grid_id)}\t{prefix}-{rid:07d}\t{_t(title)}\t{_t(version_title)}\t{release_type}\t"
            f"{label_id}\t{_t(genre)}\t{_t(subgenre)}\t{release_date.isoformat()}\t"
            f"{original.isoformat() if original else chr(92) + 'N'}\t{year}\t{year} {_t(line_owner)}\t"
            f"{year}\t{year} {_t(line_owner)}\t{_t(warning)}\t{lang}\t{stamp}\n"
        )

        # Release artists: one or two main artists, sometimes a featured one.
        if kind == "compilation":
            mains = [self.various]
        else:
            mains = [rng.choice(self.performers)]
            if rng.random() < 0.1:
                second = rng.choice(self.performers)
                if second != mains[0]:
                    mains.append(second)
        featured = rng.choice(self.performers) if kind == "single" and rng.random() < 0.4 else None
        ra = out["release_artists"]
        seen: set[int] = set()
        for seq, aid in enumerate(mains, 1):
            if aid not in seen:
                seen.add(aid)
                ra.append(f"{rid}\t{aid}\tMainArtist\t{seq}\t{stamp}\n")
        if featured is not None and featured not in seen:
            ra.append(f"{rid}\t{featured}\tFeaturedArtist\t1\t{stamp}\n")

        # Tracks. The hot loop (a million rows per 100k releases): draws use
        # rng.random() directly and strings come from precomputed pools.
        r = rng.random
        if kind == "album":
            discs = [10 + int(r() * 5)]
        elif kind == "single":
            discs = [1 + int(r() * 3)]
        elif kind == "ep":
            discs = [4 + int(r() * 3)]
        elif kind == "compilation":
            discs = [14 + int(r() * 9)]
        else:
            discs = [10 + int(r() * 4) for _ in range(2 + (r() < 0.3))]
        writers = self.writers
        nw = len(writers)
        performers = self.performers
        npf = len(performers)
        c1, c2, lyricist, producer = (writers[int(r() * nw)] for _ in range(4))
        if c2 == c1:
            c2 = None
        tracks = out["tracks"]
        contributors = out["track_contributors"]
        cc = _COUNTRIES[int(r() * len(_COUNTRIES))]
        yy = f"{year % 100:02d}"
        owner = _t(line_owner)
        pline = f"{year}\t{year} {owner}"
        genre_t = _t(genre)
        pool = self.title_pools[lang]
        npool = len(pool)
        en_pool = self.title_pools["en"]
        nen = len(en_pool)
        versions = _TRACK_VERSIONS
        nv = len(versions)
        main_lines = [f"\t{aid}\tMainArtist\t{seq}\t" for seq, aid in enumerate(mains, 1)]
        various = kind == "compilation"
        single = kind == "single"
        lengths: set[int] = set()  # a release's tracks never share a recording (demo_media.track_audio)
        for disc, count in enumerate(discs, 1):
            for number in range(1, count + 1):
                tid = self.next_track
                self.next_track += 1
                # ISRC CC-XXX-YY-NNNNN, unique: registrant and designation encode the track id.
                reg = self.registrants.get(tid // 100000)
                if reg is None:
                    reg = self.registrants[tid // 100000] = _b36(1296 + tid // 100000, 3)
                if single and number == 1:
                    track_title = base_title
                elif r() < 0.8:
                    track_title = pool[int(r() * npool)]
                else:
                    track_title = en_pool[int(r() * nen)]
                if r() < 0.05:
                    track_title += " " + _EMOJI[int(r() * len(_EMOJI))]
                tversion = "\\N"
                if (single and number > 1) or r() < 0.06:
                    tversion = versions[int(r() * nv)]
                t_warning = ("Explicit" if r() < 0.5 else "NotExplicit") if explicit else warning_t
                tstamp = self._stamp() if r() < 0.1 else stamp
                # Real demo files, shared by length between releases (demo_media): the
                # track lasts exactly as long as its file. The draw that made random MD5s stays, so every
                # other value of a seed is what it was.
                rng.getrandbits(128)
                audio, seconds = demo_media.track_audio(90 + int(r() * 330), lengths)
                lengths.add(seconds)
                self.media.add(audio)
                tracks.append(
                    f"{tid}\t{rid}\t{disc}\t{number}\t{cc}{reg}{yy}{tid % 100000:05d}\t{_t(track_title)}\t"
                    f"{tversion}\t{seconds}\t{genre_t}\t{t_warning}\t{pline}\t"
                    f"{audio}\t{demo_media.md5_of(audio)}\t{tstamp}\n"
                )
                if various:
                    main_aid = performers[int(r() * npf)]
                    contributors.append(f"{tid}\t{main_aid}\tMainArtist\t1\t{tstamp}\n")
                else:
                    main_aid = mains[0]
                    for line in main_lines:
                        contributors.append(f"{tid}{line}{tstamp}\n")
                if featured is not None and number == 1:
                    guest = featured
                elif r() < 0.15:
                    guest = performers[int(r() * npf)]
                else:
                    guest = None
                if guest is not None and guest not in mains and guest != main_aid:
                    contributors.append(f"{tid}\t{guest}\tFeaturedArtist\t1\t{tstamp}\n")
                contributors.append(f"{tid}\t{c1}\tComposer\t1\t{tstamp}\n")
                if c2 is not None and r() < 0.4:
                    contributors.append(f"{tid}\t{c2}\tComposer\t2\t{tstamp}\n")
                if r() < 0.6:
                    contributors.append(f"{tid}\t{lyricist}\tLyricist\t1\t{tstamp}\n")
                contributors.append(f"{tid}\t{producer}\tProducer\t1\t{tstamp}\n")
                self.tracks += 1

        # Front cover: a real image of the stated size, shared by cover kind (demo_media).
        mime, ext, sizes = rng.choice(_COVER_KINDS)
        side = rng.choice(sizes)
        rng.getrandbits(128)  # the former random MD5's draw: the rest of the stream is unchanged
        cover = demo_media.cover_path(side, ext)
        self.media.add(cover)
        out["release_images"].append(
            f"{rid}\t{cover}\t{demo_media.md5_of(cover)}\t{side}\t{side}\t{mime}\t{stamp}\n"
        )

        # Deals: two to four, each with its own territories and models; most
        # start on the release date, one in two hundred earlier (the builder
        # warns: a quick start shows the warning without a screenful of them).
        deals = out["deals"]
        picks = rng.sample(range(len(_DEAL_KINDS)), 2 + rng.randrange(3))
        for k in picks:
            model, uses = _DEAL_KINDS[k]
            territories = rng.choice(_TERRITORY_SETS)
            start = release_date - dt.timedelta(days=rng.randrange(30) if rng.random() < 0.005 else 0)
            end = (start + dt.timedelta(days=365 * (1 + rng.randrange(5)))).isoformat() if rng.random() < 0.15 else "\\N"
            deals.append(
                f"{self.next_deal}\t{rid}\t{_arr(territories)}\t{model}\t{_arr(uses)}\t{start.isoformat()}\t{end}\t{stamp}\t"
                f"{_price(self.next_deal, uses)}\n"
            )
            self.next_deal += 1
            self.deals += 1


# ---------------------------------------------------------------------------
# Loading


def _next_ids(cur: psycopg.Cursor[Any]) -> _Start:
    cur.execute(
        "SELECT (SELECT coalesce(max(release_id), 0) + 1 FROM releases),"
        " (SELECT coalesce(max(track_id), 0) + 1 FROM tracks),"
        " (SELECT coalesce(max(artist_id), 0) + 1 FROM artists),"
        " (SELECT coalesce(max(label_id), 0) + 1 FROM labels),"
        " (SELECT coalesce(max(deal_id), 0) + 1 FROM deals)"
    )
    row = cur.fetchone()
    assert row is not None
    return _Start(*row)


def _drop_keys_and_indexes(cur: psycopg.Cursor[Any]) -> list[str]:
    """Drop the catalog's keys and indexes; return the statements that recreate them.

    Loading millions of rows into bare tables and then building each index
    with one sort (and checking each foreign key with one join) is several
    times faster than maintaining them row by row. The definitions are read
    from the live catalog, so a column or index a user added survives.
    """
    tables = list(TABLES)
    # Foreign keys first (they depend on the primary keys), re-added last.
    cur.execute(
        "SELECT c.conrelid::regclass::text, quote_ident(c.conname), pg_get_constraintdef(c.oid), c.contype"
        " FROM pg_constraint c"
        " WHERE c.conrelid = ANY(SELECT to_regclass(quote_ident(t)) FROM unnest(%s::text[]) t)"
        "   AND c.contype IN ('f', 'p', 'u')"
        " ORDER BY c.contype = 'f' DESC, c.conname",
        (tables,),
    )
    constraints = cur.fetchall()
    cur.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " WHERE i.indrelid = ANY(SELECT to_regclass(quote_ident(t)) FROM unnest(%s::text[]) t)"
        "   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        " ORDER BY 1",
        (tables,),
    )
    indexes = cur.fetchall()
    for table, name, _definition, _kind in constraints:
        cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    for name, _definition in indexes:
        cur.execute(f"DROP INDEX {name}")
    keys = [f"ALTER TABLE {t} ADD CONSTRAINT {n} {d}" for t, n, d, kind in constraints if kind != "f"]
    fks = [f"ALTER TABLE {t} ADD CONSTRAINT {n} {d}" for t, n, d, kind in constraints if kind == "f"]
    return ["SET LOCAL maintenance_work_mem = '256MB'", *keys, *(d for _n, d in indexes), *fks]


def _copy(cur: psycopg.Cursor[Any], table: str, lines: list[str], freeze: bool = False) -> None:
    if not lines:
        return
    cols = ", ".join(COLUMNS[table])
    # FREEZE (allowed when the table was created or emptied in this
    # transaction) writes rows already frozen: the first reader does not pay
    # for setting hint bits on a million fresh rows (it halved the first
    # extract after a seed).
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN" + (" WITH (FREEZE)" if freeze else "")) as copy:
        # Large writes: one call per ~1 MB keeps Python overhead negligible.
        step = 8000
        for i in range(0, len(lines), step):
            copy.write("".join(lines[i:i + step]))


def seed_catalog(
    engine: sa.Engine,
    releases: int,
    seed: int = 1,
    reset: bool = False,
    progress: Callable[[int], None] | None = None,
    *,
    only_demo: bool = False,
    ignore_schemas: Sequence[str] = (),
    media_dir: str | Path | None = None,
) -> SeedReport:
    """Fill the reference catalog with ``releases`` realistic demo releases.

    Creates the catalog first if needed. ``reset=True`` empties it first;
    otherwise the new releases (and their own labels and artists) are appended
    after the highest existing ids. Same seed and same starting catalog: same
    rows, byte for byte. ``progress`` is called with the number of releases
    written so far. Commits its own transaction.

    ``only_demo=True`` (what `etl seed` does without ``--yes``) raises
    ``RefusedError`` and touches nothing when the database holds anything but
    the demo catalog (tables outside ``ignore_schemas``, the connector's own,
    or catalog rows that no seed wrote).

    ``media_dir``: write the demo audio and cover files the rows refer to
    there (``demo_media``; their MD5s are the catalog's), so a ``ddex-batch``
    run with that folder as its media root ships real resources.
    """
    if releases < 0:
        raise ValueError(f"releases must be 0 or more, got {releases}")
    started = time.perf_counter()
    try:
        raw = engine.raw_connection()
    except Exception as exc:  # bad credentials or options: a message naming the cause, not a traceback
        raise map_db_error(exc, "connecting to PostgreSQL to seed the demo catalog") from exc
    try:
        pg: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
        try:
            with pg.transaction():
                target = inspect_target(
                    pg, database=describe_database(engine.url), ignore_schemas=ignore_schemas, count=reset
                )
                if only_demo and not target.only_demo:
                    raise RefusedError(target.refusal(reset))
                # The mark says "only demo rows here": never stamp it on rows a seed did not write.
                mark = reset or target.demo or not target.has_rows
                report = _seed(pg, releases, seed, reset, progress, started, mark)
        except EtlError:
            raise
        except Exception as exc:
            raise map_db_error(exc, f"seeding {releases} demo releases (seed {seed})") from exc
    finally:
        raw.close()
    if media_dir is not None and report.media:
        written = demo_media.write_media(Path(media_dir), set(report.media))
        report = dataclasses.replace(report, media_written=written)
    return report


def _seed(
    pg: psycopg.Connection[Any],
    releases: int,
    seed: int,
    reset: bool,
    progress: Callable[[int], None] | None,
    started: float,
    mark: bool = True,
) -> SeedReport:
    with pg.cursor() as cur:
        cur.execute(
            "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(quote_ident(t)) IS NULL", (list(TABLES),)
        )
        created = {row[0] for row in cur.fetchall()}
        create_catalog(pg)
        if mark:
            cur.execute(f"COMMENT ON TABLE releases IS '{DEMO_MARK}'")
        if reset:
            cur.execute("TRUNCATE " + ", ".join(reversed(TABLES)))
        fresh = set(TABLES) if reset else created
        start = _next_ids(cur)
        if releases == 0:  # just the (empty or kept) catalog: no labels or artists without releases
            return SeedReport(0, 0, 0, 0, time.perf_counter() - started, start.release_id, start.release_id - 1)
        gen = _Generator(seed, start, releases)
        restore = _drop_keys_and_indexes(cur)
        _copy(cur, "labels", gen.label_lines, "labels" in fresh)
        _copy(cur, "artists", gen.artist_lines, "artists" in fresh)

        # One thread loads while this one generates the next batch; the
        # bounded queue keeps at most two batches in memory.
        batches: queue.Queue[dict[str, list[str]] | None] = queue.Queue(maxsize=2)
        failure: list[BaseException] = []

        def load() -> None:
            try:
                while (batch := batches.get()) is not None:
                    for table in ("releases", "release_artists", "tracks", "track_contributors", "deals", "release_images"):
                        _copy(cur, table, batch[table], table in fresh)
            except BaseException as exc:  # handed to the generating thread
                failure.append(exc)
                while batches.get() is not None:  # drain so the producer never blocks
                    pass

        loader = threading.Thread(target=load, name="seed-copy", daemon=True)
        loader.start()
        done = 0
        try:
            while done < releases and not failure:
                n = min(BATCH_RELEASES, releases - done)
                batches.put(gen.batch(n))
                done += n
                if progress is not None:
                    progress(done)
        finally:
            batches.put(None)
            loader.join()
        if failure:
            raise failure[0]
        for statement in restore:
            cur.execute(statement)
        cur.execute("ANALYZE " + ", ".join(TABLES))
    return SeedReport(
        releases=releases,
        tracks=gen.tracks,
        artists=gen.artists,
        deals=gen.deals,
        seconds=time.perf_counter() - started,
        first_release_id=start.release_id,
        last_release_id=start.release_id + releases - 1,
        media=frozenset(gen.media),
    )

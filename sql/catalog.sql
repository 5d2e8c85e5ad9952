-- Reference catalog: the schema `etl seed` fills and the default extract
-- queries (release_keys.sql, release_rows.sql) read.
--
-- Idempotent: every statement can run again on an existing catalog.
-- Tables live in the connection's default schema (public unless search_path
-- says otherwise).
--
-- Every table carries updated_at so an incremental sync can see a change to
-- a release or to anything it contains (a renamed artist, a new deal).
-- Foreign keys are named because `etl seed` drops and re-adds them around its
-- bulk COPY (one set-based check instead of one trigger call per row).

CREATE TABLE IF NOT EXISTS labels (
    label_id    bigint PRIMARY KEY,
    name        text NOT NULL,
    dpid        text,                       -- DDEX party id (PADPIDA...), when the label has one
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS artists (
    artist_id   bigint PRIMARY KEY,
    name        text NOT NULL,
    isni        text,                       -- 16 characters, no spaces
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS releases (
    release_id             bigint PRIMARY KEY,
    icpn                   text,            -- EAN-13 / UPC-A barcode
    grid                   text,            -- Global Release Identifier, 18 characters
    catalog_number         text,
    title                  text NOT NULL,
    version_title          text,
    release_type           text NOT NULL,   -- Album | Single | EP | Compilation | ...
    label_id               bigint,
    genre                  text,
    subgenre               text,
    release_date           date,
    original_release_date  date,
    p_line_year            integer,
    p_line_text            text,
    c_line_year            integer,
    c_line_text            text,
    parental_warning       text,            -- Explicit | NotExplicit | ...
    language               text,            -- ISO 639 code of the title
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz      -- set: the release is withdrawn (takedown)
);

CREATE TABLE IF NOT EXISTS release_artists (
    release_id  bigint NOT NULL,
    artist_id   bigint NOT NULL,
    role        text NOT NULL,              -- MainArtist | FeaturedArtist | ...
    sequence    integer NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (release_id, artist_id, role)
);

CREATE TABLE IF NOT EXISTS tracks (
    track_id          bigint PRIMARY KEY,
    release_id        bigint NOT NULL,
    disc_number       integer NOT NULL DEFAULT 1,
    track_number      integer NOT NULL,
    isrc              text,
    title             text NOT NULL,
    version_title     text,
    duration_seconds  integer,
    genre             text,
    parental_warning  text,
    p_line_year       integer,
    p_line_text       text,
    audio_file        text,
    audio_md5         text,                 -- 32 hex digits
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- Also serves "the tracks of these releases, in order" for the extract.
    CONSTRAINT tracks_position_key UNIQUE (release_id, disc_number, track_number)
);

CREATE TABLE IF NOT EXISTS track_contributors (
    track_id    bigint NOT NULL,
    artist_id   bigint NOT NULL,
    role        text NOT NULL,              -- MainArtist | FeaturedArtist | Composer | Lyricist | Producer | ...
    sequence    integer NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (track_id, artist_id, role)
);

CREATE TABLE IF NOT EXISTS deals (
    deal_id           bigint PRIMARY KEY,
    release_id        bigint NOT NULL,
    territories       text[] NOT NULL,      -- ISO 3166 codes, or 'Worldwide'
    commercial_model  text NOT NULL,        -- SubscriptionModel | AdvertisementSupportedModel | PayAsYouGoModel | ...
    use_types         text[] NOT NULL,      -- OnDemandStream | PermanentDownload | ...
    start_date        date,
    end_date          date,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- A download deal's price (optional; sent as PriceInformation): a price
    -- tier code the store's rate card knows, or a wholesale price per unit
    -- and its ISO 4217 currency.
    price_code        text,
    wholesale_price   numeric(13, 4),
    currency          text
);
-- Catalogs created before the price columns existed gain them.
ALTER TABLE deals ADD COLUMN IF NOT EXISTS price_code text;
ALTER TABLE deals ADD COLUMN IF NOT EXISTS wholesale_price numeric(13, 4);
ALTER TABLE deals ADD COLUMN IF NOT EXISTS currency text;

-- The release's front cover (DDEX's audio release profiles require exactly
-- one). One row per release; the file is delivered with the message.
CREATE TABLE IF NOT EXISTS release_images (
    release_id  bigint PRIMARY KEY,
    file        text NOT NULL,              -- file name or URI of the image
    md5         text NOT NULL,              -- 32 hex digits, of the file's bytes
    width       integer,                    -- pixels
    height      integer,                    -- pixels
    mime_type   text NOT NULL,              -- image/jpeg | image/png | ...
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Foreign keys, added only when missing (ALTER TABLE has no ADD CONSTRAINT IF NOT EXISTS).
DO $$
DECLARE
    fk record;
BEGIN
    FOR fk IN
        SELECT * FROM (VALUES
            ('releases', 'releases_label_fk', 'FOREIGN KEY (label_id) REFERENCES labels (label_id)'),
            ('release_artists', 'release_artists_release_fk', 'FOREIGN KEY (release_id) REFERENCES releases (release_id) ON DELETE CASCADE'),
            ('release_artists', 'release_artists_artist_fk', 'FOREIGN KEY (artist_id) REFERENCES artists (artist_id)'),
            ('tracks', 'tracks_release_fk', 'FOREIGN KEY (release_id) REFERENCES releases (release_id) ON DELETE CASCADE'),
            ('track_contributors', 'track_contributors_track_fk', 'FOREIGN KEY (track_id) REFERENCES tracks (track_id) ON DELETE CASCADE'),
            ('track_contributors', 'track_contributors_artist_fk', 'FOREIGN KEY (artist_id) REFERENCES artists (artist_id)'),
            ('deals', 'deals_release_fk', 'FOREIGN KEY (release_id) REFERENCES releases (release_id) ON DELETE CASCADE'),
            ('release_images', 'release_images_release_fk', 'FOREIGN KEY (release_id) REFERENCES releases (release_id) ON DELETE CASCADE')
        ) AS v (tbl, name, def)
    LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_constraint c
            WHERE c.conname = fk.name AND c.conrelid = to_regclass(quote_ident(fk.tbl))
        ) THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', fk.tbl, fk.name, fk.def);
        END IF;
    END LOOP;
END
$$;

-- Children by parent (the extract's joins). tracks(release_id) is covered by
-- tracks_position_key; track_contributors(track_id) and release_artists(release_id)
-- by their primary keys.
CREATE INDEX IF NOT EXISTS deals_release_idx ON deals (release_id);
CREATE INDEX IF NOT EXISTS releases_label_idx ON releases (label_id);
CREATE INDEX IF NOT EXISTS release_artists_artist_idx ON release_artists (artist_id);
CREATE INDEX IF NOT EXISTS track_contributors_artist_idx ON track_contributors (artist_id);

-- Incremental sync: "what changed since T".
CREATE INDEX IF NOT EXISTS labels_updated_idx ON labels (updated_at);
CREATE INDEX IF NOT EXISTS artists_updated_idx ON artists (updated_at);
CREATE INDEX IF NOT EXISTS releases_updated_idx ON releases (updated_at);
CREATE INDEX IF NOT EXISTS releases_deleted_idx ON releases (deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS release_artists_updated_idx ON release_artists (updated_at);
CREATE INDEX IF NOT EXISTS tracks_updated_idx ON tracks (updated_at);
CREATE INDEX IF NOT EXISTS track_contributors_updated_idx ON track_contributors (updated_at);
CREATE INDEX IF NOT EXISTS deals_updated_idx ON deals (updated_at);
CREATE INDEX IF NOT EXISTS release_images_updated_idx ON release_images (updated_at);
-- Deals whose last end date falls in the window become takedowns.
CREATE INDEX IF NOT EXISTS deals_end_idx ON deals (end_date) WHERE end_date IS NOT NULL;

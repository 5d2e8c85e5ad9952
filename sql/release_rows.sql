-- The rows of exactly the releases in :release_ids (a bigint array), in the
-- extract column contract (docs/column-contract.md): one row per track with
-- the release's columns repeated; a release without tracks gives one row
-- whose track columns are NULL. Ordered by release_id, disc_number,
-- track_number so each release's rows are contiguous.
--
-- The JSON columns (release_artists, deals, track_contributors) are built as
-- text holding a JSON array: string_agg over pre-escaped pieces measured
-- about twice as fast as json_agg(json_build_object(...)) here, and each
-- artist's JSON head is built once per chunk, not once per appearance.
-- Every child table is first narrowed to the chunk (index lookups by id
-- arrays), so the cost follows the chunk's size, never the catalog's.
-- Credits order by role in the "C" collation (code point order): the same
-- catalog gives the same bytes whatever the database's locale.
WITH chunk_tracks AS MATERIALIZED (
    SELECT t.*
    FROM tracks t
    WHERE t.release_id = ANY (CAST(:release_ids AS bigint[]))
),
chunk_contributors AS MATERIALIZED (
    SELECT c.track_id, c.artist_id, c.role, c.sequence, c.updated_at
    FROM track_contributors c
    WHERE c.track_id = ANY (ARRAY(SELECT track_id FROM chunk_tracks))
),
chunk_release_artists AS MATERIALIZED (
    SELECT ra.release_id, ra.artist_id, ra.role, ra.sequence, ra.updated_at
    FROM release_artists ra
    WHERE ra.release_id = ANY (CAST(:release_ids AS bigint[]))
),
chunk_artists AS MATERIALIZED (
    SELECT a.artist_id,
           '{"artist_id":' || a.artist_id || ',"name":' || to_json(a.name)
               || ',"isni":' || coalesce(to_json(a.isni)::text, 'null') AS head,
           a.updated_at
    FROM artists a
    WHERE a.artist_id = ANY (ARRAY(
        SELECT artist_id FROM chunk_contributors
        UNION
        SELECT artist_id FROM chunk_release_artists
    ))
),
contributors AS (
    SELECT c.track_id,
           '[' || string_agg(a.head || ',"role":' || to_json(c.role) || ',"sequence":' || c.sequence || '}', ','
                             ORDER BY c.sequence, c.role COLLATE "C", c.artist_id) || ']' AS track_contributors,
           max(GREATEST(c.updated_at, a.updated_at)) AS changed_at
    FROM chunk_contributors c
    JOIN chunk_artists a ON a.artist_id = c.artist_id
    GROUP BY c.track_id
),
release_artists_json AS (
    SELECT ra.release_id,
           '[' || string_agg(a.head || ',"role":' || to_json(ra.role) || ',"sequence":' || ra.sequence || '}', ','
                             ORDER BY ra.sequence, ra.role COLLATE "C", ra.artist_id) || ']' AS release_artists,
           max(GREATEST(ra.updated_at, a.updated_at)) AS changed_at
    FROM chunk_release_artists ra
    JOIN chunk_artists a ON a.artist_id = ra.artist_id
    GROUP BY ra.release_id
),
deals_json AS (
    SELECT d.release_id,
           '[' || string_agg(
               '{"deal_id":' || d.deal_id
               || ',"territories":' || to_json(d.territories)
               || ',"commercial_model":' || coalesce(to_json(d.commercial_model)::text, 'null')
               || ',"use_types":' || to_json(d.use_types)
               || ',"start_date":' || coalesce(to_json(d.start_date)::text, 'null')
               || ',"end_date":' || coalesce(to_json(d.end_date)::text, 'null')
               || ',"updated_at":' || to_json(d.updated_at)
               -- optional price columns, read through the row's JSON (absent columns read as no price)
               || coalesce(',"price_code":' || to_json(to_jsonb(d) ->> 'price_code'), '')
               || coalesce(',"wholesale_price":' || to_json(to_jsonb(d) ->> 'wholesale_price'), '')
               || coalesce(',"currency":' || to_json(to_jsonb(d) ->> 'currency'), '')
               || '}', ',' ORDER BY d.deal_id) || ']' AS deals,
           max(d.updated_at) AS changed_at
    FROM deals d
    WHERE d.release_id = ANY (CAST(:release_ids AS bigint[]))
    GROUP BY d.release_id
),
track_changes AS (
    SELECT t.release_id, max(GREATEST(t.updated_at, tc.changed_at)) AS changed_at
    FROM chunk_tracks t
    LEFT JOIN contributors tc ON tc.track_id = t.track_id
    GROUP BY t.release_id
)
SELECT
    r.release_id, r.icpn, r.grid, r.catalog_number, r.title, r.version_title, r.release_type, r.label_id,
    l.name AS label_name, l.dpid AS label_dpid, r.genre, r.subgenre, r.release_date, r.original_release_date,
    r.p_line_year, r.p_line_text, r.c_line_year, r.c_line_text, r.parental_warning, r.language,
    coalesce(ra.release_artists, '[]') AS release_artists,
    coalesce(dj.deals, '[]') AS deals,
    GREATEST(r.updated_at, l.updated_at, ra.changed_at, dj.changed_at, tch.changed_at, i.updated_at) AS changed_at,
    r.deleted_at,
    i.file AS cover_file, i.md5 AS cover_md5, i.width AS cover_width, i.height AS cover_height,
    i.mime_type AS cover_mime_type,
    t.track_id, t.disc_number, t.track_number, t.isrc, t.title AS track_title, t.version_title AS track_version_title,
    t.duration_seconds, t.genre AS track_genre, t.parental_warning AS track_parental_warning,
    t.p_line_year AS track_p_line_year, t.p_line_text AS track_p_line_text, t.audio_file, t.audio_md5,
    CASE WHEN t.track_id IS NOT NULL THEN coalesce(tc.track_contributors, '[]') END AS track_contributors
FROM releases r
LEFT JOIN labels l ON l.label_id = r.label_id
LEFT JOIN release_images i ON i.release_id = r.release_id
LEFT JOIN release_artists_json ra ON ra.release_id = r.release_id
LEFT JOIN deals_json dj ON dj.release_id = r.release_id
LEFT JOIN track_changes tch ON tch.release_id = r.release_id
LEFT JOIN chunk_tracks t ON t.release_id = r.release_id
LEFT JOIN contributors tc ON tc.track_id = t.track_id
WHERE r.release_id = ANY (CAST(:release_ids AS bigint[]))
ORDER BY r.release_id, t.disc_number, t.track_number, t.track_id

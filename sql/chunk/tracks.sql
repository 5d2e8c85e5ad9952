-- The tracks of one chunk's releases, in message order, each with its
-- credits folded into one text: 'artist_id sequence role' items joined by
-- ',', a '\' or ',' in a role escaped with '\'. Twelve short strings per
-- album decode far faster than fifty credit rows, and the server's cost
-- stays small: no JSON, no artist names (artists.sql reads each artist once
-- per chunk), and no sort inside the aggregate (it cost the server 40% of
-- this query): catalog_read puts each track's credits in credit order
-- (sequence, role in code point order, artist id) as release_rows.sql does.
WITH credits AS (
    SELECT c.track_id,
           string_agg(c.artist_id || ' ' || c.sequence || ' '
                          || replace(replace(c.role, '\', '\\'), ',', '\,'),
                      ',') AS credits,
           max(c.updated_at) AS changed_at
    FROM track_contributors c
    WHERE c.track_id = ANY (ARRAY(
        SELECT t.track_id FROM tracks t WHERE t.release_id = ANY (CAST(:release_ids AS bigint[]))
    ))
    GROUP BY c.track_id
)
SELECT t.release_id, t.track_id, t.disc_number, t.track_number, t.isrc, t.title, t.version_title,
       t.duration_seconds, t.genre, t.parental_warning, t.p_line_year, t.p_line_text, t.audio_file, t.audio_md5,
       GREATEST(t.updated_at, cr.changed_at) AS changed_at, cr.credits
FROM tracks t
LEFT JOIN credits cr ON cr.track_id = t.track_id
WHERE t.release_id = ANY (CAST(:release_ids AS bigint[]))
ORDER BY t.release_id, t.disc_number, t.track_number, t.track_id

-- The release-level artists of one chunk's releases, in credit order
-- (role in code point order, as release_rows.sql).
SELECT ra.release_id, ra.artist_id, ra.role, ra.sequence, ra.updated_at
FROM release_artists ra
WHERE ra.release_id = ANY (CAST(:release_ids AS bigint[]))
ORDER BY ra.release_id, ra.sequence, ra.role COLLATE "C", ra.artist_id

-- The artists credited in one chunk (:artist_ids, collected from the credit
-- rows), once each.
SELECT a.artist_id, a.name, a.isni, a.updated_at
FROM artists a
WHERE a.artist_id = ANY (CAST(:artist_ids AS bigint[]))

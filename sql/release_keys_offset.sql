-- Offset paging over releases (extract.mode = "offset").
-- Parameters: :offset (integer; releases already seen), :limit (integer).
-- Returns: release_id, ascending. Unlike keyset paging, a release inserted
-- below the current page shifts every later page by one; use keyset unless
-- your source only supports offsets.
SELECT r.release_id
FROM releases r
WHERE r.deleted_at IS NULL
ORDER BY r.release_id
OFFSET :offset
LIMIT :limit

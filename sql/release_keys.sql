-- Keyset paging over releases: the next :limit live release ids after :after.
-- Parameters: :after (bigint; the last id of the previous chunk, or the
-- smallest bigint to start), :limit (integer).
-- Returns: release_id, ascending. Row-value comparison on the key alone, so a
-- release inserted or deleted elsewhere cannot shift the pages.
SELECT r.release_id
FROM releases r
WHERE r.release_id > :after
  AND r.deleted_at IS NULL
ORDER BY r.release_id
LIMIT :limit

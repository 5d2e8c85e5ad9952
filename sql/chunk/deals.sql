-- The deals of one chunk's releases.
SELECT d.release_id, d.deal_id, d.territories, d.commercial_model, d.use_types, d.start_date, d.end_date,
       d.updated_at
FROM deals d
WHERE d.release_id = ANY (CAST(:release_ids AS bigint[]))
ORDER BY d.release_id, d.deal_id
